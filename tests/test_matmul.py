"""Matrix products split among threads (kernels/matmul.py) against the unsplit NumPy product."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyeffnet.kernels import matmul as mm

# Every block is its own BLAS call, whose sums over K may be blocked differently from one call over the whole
# product: equal to the last bits of the sums' rounding, so the tolerance of a K-long float sum.
SPLIT = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
# The large product's aᵀ @ c sums 4099 unit-sized terms per element, where two blockings' float32 roundings
# differed by up to 3.6e-5 (measured against a one-thread OpenBLAS): ~√4099 times a short sum's.
LONG_SPLIT_F32 = dict(rtol=1e-5, atol=1e-4)


def operands(m, k, n, dtype, seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape).astype(dtype) for shape in ((m, k), (k, n), (m, n)))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 70), k=st.integers(1, 40), n=st.integers(1, 30), threads=st.integers(1, 5),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_split_products_equal_the_plain_ones(m, k, n, threads, dtype, seed):
    a, b, c = operands(m, k, n, dtype, seed)
    with mock.patch.object(mm, "MIN_SPLIT_MACS", 0):        # split even these small products
        np.testing.assert_allclose(mm.matmul(a, b, threads), a @ b, **SPLIT[dtype])
        np.testing.assert_allclose(mm.matmul(c, b.T, threads), c @ b.T, **SPLIT[dtype])   # a transposed view
        dx, dw = mm.matmul_backward(a, b, c, threads)         # x = a (M, K), w = b (K, N), dy = c (M, N)
        np.testing.assert_allclose(dx, c @ b.T, **SPLIT[dtype])
        np.testing.assert_allclose(dw, a.T @ c, **SPLIT[dtype])


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_a_large_product_is_split_and_equal(threads):
    a, b, c = operands(4099, 96, 48, np.float32, 0)         # 18.9 M multiply-adds: over MIN_SPLIT_MACS
    assert 4099 * 96 * 48 >= mm.MIN_SPLIT_MACS
    assert len(mm._edges(4099 * 96 * 48, 4099, threads)) == threads + 1
    np.testing.assert_allclose(mm.matmul(a, b, threads), a @ b, **SPLIT[np.float32])
    dx, dw = mm.matmul_backward(a, b, c, threads)
    np.testing.assert_allclose(dx, c @ b.T, **SPLIT[np.float32])
    np.testing.assert_allclose(dw, a.T @ c, **LONG_SPLIT_F32)


def test_on_two_threads_each_backward_product_is_one_whole_call(monkeypatch):
    """The two products of a backward each run whole on one of two threads: as the plain products, bit for bit
    (the same BLAS call on the same operands), both handed over together."""
    a, b, c = operands(4099, 96, 48, np.float32, 1)        # over MIN_SPLIT_MACS
    handed = []
    monkeypatch.setattr(mm, "_run", lambda calls: (handed.append(len(calls)), [call() for call in calls]))
    dx, dw = mm.matmul_backward(a, b, c, threads=2)
    assert handed == [2]
    np.testing.assert_array_equal(dx, c @ b.T)
    np.testing.assert_array_equal(dw, a.T @ c)


def test_blocks_cover_the_axis_once():
    for length in (1, 2, 5, 17):
        for threads in (1, 2, 4, 8):
            edges = mm._edges(mm.MIN_SPLIT_MACS, length, threads)
            assert edges[0] == 0 and edges[-1] == length
            assert len(edges) - 1 == min(threads, length)
            assert all(j > i for i, j in zip(edges, edges[1:]))
    assert mm._edges(mm.MIN_SPLIT_MACS - 1, 100, 4) == [0, 100]      # small products: one block


def test_an_error_in_a_block_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(mm, "MIN_SPLIT_MACS", 0)
    a, b, _ = operands(8, 3, 2, np.float64, 0)
    with pytest.raises(ValueError):
        mm.matmul(a, b[:2], threads=2)                       # K mismatch: raised inside the blocks
