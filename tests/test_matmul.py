"""Matrix products split among threads (kernels/matmul.py) against the unsplit NumPy product, on both of its
ways: BLAS called from Numba's threads (kernels/blas.py) and, where NumPy's BLAS cannot be called so, Python's."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyeffnet.kernels import blas
from tinyeffnet.kernels import matmul as mm

# Every block is its own BLAS call, whose sums over K may be blocked differently from one call over the whole
# product: equal to the last bits of the sums' rounding, so the tolerance of a K-long float sum.
SPLIT = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
# The large product's aᵀ @ c sums 4099 unit-sized terms per element, where two blockings' float32 roundings
# differed by up to 3.6e-5 (measured against a one-thread OpenBLAS): ~√4099 times a short sum's.
LONG_SPLIT_F32 = dict(rtol=1e-5, atol=1e-4)


WAYS = ("compiled", "python threads")


@pytest.fixture(params=WAYS)
def way(request, monkeypatch):
    """Each test once per way of running the blocks (the compiled one only where NumPy's BLAS was found)."""
    if request.param == "compiled" and not blas.AVAILABLE:
        pytest.skip("NumPy's BLAS cannot be called from compiled code here (kernels/blas.py)")
    monkeypatch.setattr(blas, "AVAILABLE", request.param == "compiled")
    return request.param


def operands(m, k, n, dtype, seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape).astype(dtype) for shape in ((m, k), (k, n), (m, n)))


@pytest.mark.parametrize("way", WAYS, indirect=True)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # `way` holds for all
@given(m=st.integers(1, 70), k=st.integers(1, 40), n=st.integers(1, 30), threads=st.integers(1, 5),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_split_products_equal_the_plain_ones(way, m, k, n, threads, dtype, seed):
    a, b, c = operands(m, k, n, dtype, seed)
    with mock.patch.multiple(mm, MIN_SPLIT_MACS=0, MIN_SPLIT_MACS_PYTHON_THREADS=0):   # split even small products
        np.testing.assert_allclose(mm.matmul(a, b, threads), a @ b, **SPLIT[dtype])
        np.testing.assert_allclose(mm.matmul(c, b.T, threads), c @ b.T, **SPLIT[dtype])   # a transposed view
        dx, dw = mm.matmul_backward(a, b, c, threads)         # x = a (M, K), w = b (K, N), dy = c (M, N)
        np.testing.assert_allclose(dx, c @ b.T, **SPLIT[dtype])
        np.testing.assert_allclose(dw, a.T @ c, **SPLIT[dtype])


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_a_large_product_is_split_and_equal(way, threads):
    a, b, c = operands(4099, 96, 48, np.float32, 0)         # 18.9 M multiply-adds: over both thresholds
    assert 4099 * 96 * 48 >= max(mm.MIN_SPLIT_MACS, mm.MIN_SPLIT_MACS_PYTHON_THREADS)
    assert len(mm._edges(4099 * 96 * 48, 4099, threads, way == "compiled")) == threads + 1
    np.testing.assert_allclose(mm.matmul(a, b, threads), a @ b, **SPLIT[np.float32])
    dx, dw = mm.matmul_backward(a, b, c, threads)
    np.testing.assert_allclose(dx, c @ b.T, **SPLIT[np.float32])
    np.testing.assert_allclose(dw, a.T @ c, **LONG_SPLIT_F32)


def test_on_two_threads_each_backward_product_is_one_whole_call(way, monkeypatch):
    """The two products of a backward each run whole on one of two threads: as the plain products, bit for bit
    (the same BLAS call on the same operands), both handed over together, by the way the fixture chose."""
    a, b, c = operands(4099, 96, 48, np.float32, 1)        # over MIN_SPLIT_MACS
    handed = []
    run, compiled = mm._run, mm._compiled_backward_blocks
    monkeypatch.setattr(mm, "_run", lambda calls: (handed.append(("python threads", len(calls))), run(calls)))
    monkeypatch.setattr(mm, "_compiled_backward_blocks", lambda *arguments: (
        handed.append(("compiled", len(arguments[-2]) - 1 + len(arguments[-1]) - 1)), compiled(*arguments)))
    dx, dw = mm.matmul_backward(a, b, c, threads=2)
    assert handed == [(way, 2)]
    np.testing.assert_array_equal(dx, c @ b.T)
    np.testing.assert_array_equal(dw, a.T @ c)


def test_a_split_product_takes_the_compiled_way_where_it_can(monkeypatch):
    """Found NumPy's BLAS, a split product's blocks run in the compiled loop, one block per thread; the Python
    threads stay unused."""
    if not blas.AVAILABLE:
        pytest.skip("NumPy's BLAS cannot be called from compiled code here (kernels/blas.py)")
    blocks, compiled = [], mm._compiled_row_blocks
    monkeypatch.setattr(mm, "_run", lambda calls: pytest.fail("the blocks went to Python's threads"))
    monkeypatch.setattr(mm, "_compiled_row_blocks",
                        lambda a, b, out, edges: (blocks.append(len(edges) - 1), compiled(a, b, out, edges)))
    a, b, _ = operands(8198, 96, 48, np.float32, 2)
    np.testing.assert_array_equal(mm.matmul(a, b, threads=1), a @ b)       # one block: NumPy itself
    assert blocks == []
    np.testing.assert_allclose(mm.matmul(a, b, threads=2), a @ b, **SPLIT[np.float32])
    np.testing.assert_allclose(mm.matmul(a[::2], b, threads=3), a[::2] @ b, **SPLIT[np.float32])   # rows strided
    assert blocks == [2, 3]


def test_an_operand_blas_cannot_read_as_it_is_takes_python_threads(monkeypatch):
    """A broadcast operand (every row the same memory) is not handed to the compiled BLAS call, which would read
    rows that are not there, but split on the Python threads, whose NumPy calls read it correctly."""
    monkeypatch.setattr(mm, "MIN_SPLIT_MACS_PYTHON_THREADS", 0)
    monkeypatch.setattr(mm, "_compiled_row_blocks", lambda *arguments: pytest.fail("compiled way taken"))
    rng = np.random.default_rng(3)
    a, b = np.broadcast_to(rng.standard_normal(64).astype(np.float32), (4096, 64)), operands(1, 64, 8, np.float32, 4)[1]
    np.testing.assert_allclose(mm.matmul(a, b, threads=2), np.ascontiguousarray(a) @ b, **SPLIT[np.float32])


def test_blocks_cover_the_axis_once():
    for length in (1, 2, 5, 17):
        for threads in (1, 2, 4, 8):
            edges = mm._edges(mm.MIN_SPLIT_MACS, length, threads, compiled=True)
            assert edges[0] == 0 and edges[-1] == length
            assert len(edges) - 1 == min(threads, length)
            assert all(j > i for i, j in zip(edges, edges[1:]))
    for compiled, threshold in ((True, mm.MIN_SPLIT_MACS), (False, mm.MIN_SPLIT_MACS_PYTHON_THREADS)):
        assert mm._edges(threshold - 1, 100, 4, compiled) == [0, 100]     # small products: one block
        assert mm._edges(threshold, 100, 4, compiled) == [0, 25, 50, 75, 100]


def test_mismatched_inner_sizes_are_a_value_error_before_any_block(way, monkeypatch):
    monkeypatch.setattr(mm, "MIN_SPLIT_MACS", 0)
    monkeypatch.setattr(mm, "MIN_SPLIT_MACS_PYTHON_THREADS", 0)
    a, b, c = operands(8, 3, 2, np.float64, 0)
    with pytest.raises(ValueError, match="inner sizes differ"):
        mm.matmul(a, b[:2], threads=2)
    with pytest.raises(ValueError, match="inner sizes differ"):
        mm.matmul_backward(a, b, c[:, :1], threads=2)        # dy's columns are not w's
    with pytest.raises(ValueError, match="inner sizes differ"):
        mm.matmul_backward(a, b, c[:5], threads=2)           # dy's rows are not x's


def test_an_error_in_a_python_threads_block_reaches_the_caller():
    def fail():
        raise RuntimeError("a block failed")
    with pytest.raises(RuntimeError, match="a block failed"):
        mm._run([lambda: None, fail])                       # the second block runs on the pool
