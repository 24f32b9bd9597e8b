"""kernels/blas.py: NumPy's BLAS called from compiled code, against NumPy's own product, over the layouts the
matrix products hand it (row-major, transposed views, row and column blocks, strided rows, axes of length 1),
which arrays it refuses, and finding it or not."""

import ctypes.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from tinyeffnet.kernels import blas

needs_blas = pytest.mark.skipif(not blas.AVAILABLE, reason="NumPy's BLAS cannot be called from compiled code here")

# The same BLAS, called on the same operands: equal up to how it blocks the K-long sums for a view's layout.
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
LAYOUTS = ["row-major", "transposed view", "column block", "strided rows", "length-1 axes broadcast"]


def _laid_out(matrix, layout, rng):
    """``matrix`` (a copy) as a row-major array, a transposed view of a column-major one, a view of a wider array
    (rows not adjacent: a column block), every other row of a taller one, or, along any axis of length 1, with
    stride 0 (as NumPy gives ``v[None]`` and ``v[:, None]``)."""
    if layout == "row-major":
        return matrix.copy()
    if layout == "transposed view":
        return np.ascontiguousarray(matrix.T).T
    if layout == "column block":
        wider = rng.standard_normal((matrix.shape[0], matrix.shape[1] + 3)).astype(matrix.dtype)
        wider[:, 2:2 + matrix.shape[1]] = matrix
        return wider[:, 2:2 + matrix.shape[1]]
    if layout == "strided rows":
        taller = rng.standard_normal((2 * matrix.shape[0], matrix.shape[1])).astype(matrix.dtype)
        taller[::2] = matrix
        return taller[::2]
    copy = matrix.copy()
    strides = tuple(0 if length == 1 else stride for length, stride in zip(copy.shape, copy.strides))
    return as_strided(copy, copy.shape, strides)


@needs_blas
@settings(max_examples=80, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 30), n=st.integers(1, 25), a_layout=st.sampled_from(LAYOUTS),
       b_layout=st.sampled_from(LAYOUTS), c_block=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_gemm_equals_numpys_product_for_every_layout(m, k, n, a_layout, b_layout, c_block, dtype, seed):
    rng = np.random.default_rng(seed)
    a = _laid_out(rng.standard_normal((m, k)).astype(dtype), a_layout, rng)
    b = _laid_out(rng.standard_normal((k, n)).astype(dtype), b_layout, rng)
    assert blas.accepts(a) and blas.accepts(b)
    wide = np.full((m, n + 4), 7.0, dtype)
    c = wide[:, 1:1 + n] if c_block else np.full((m, n), 7.0, dtype)
    blas.gemm(a, b, c)
    np.testing.assert_allclose(c, a @ b, **TOLERANCE[dtype])
    if c_block:                                          # nothing written outside the block
        assert (wide[:, 0] == 7.0).all() and (wide[:, 1 + n:] == 7.0).all()


@needs_blas
def test_gemm_on_a_row_block_writes_only_those_rows():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((9, 4)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    c = np.zeros((9, 5), np.float32)
    blas.gemm(a[3:7], b, c[3:7])
    np.testing.assert_allclose(c[3:7], a[3:7] @ b, **TOLERANCE[np.float32])
    assert not c[:3].any() and not c[7:].any()


def test_accepts_the_layouts_gemm_reads_and_nothing_else():
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    for good in (x, x.T, x[1:3], x[:, 2:5], x[::2], x[:1], x[:, :1],
                 np.ones(6, np.float32)[None], np.ones(6, np.float32)[:, None]):
        assert blas.accepts(good), (good.shape, good.strides)
    bad = {
        "broadcast rows": np.broadcast_to(np.ones(64, np.float32), (40, 64)),
        "overlapping rows": sliding_window_view(np.ones(80, np.float32), 64)[:16],
        "reversed columns": x[:, ::-1],
        "reversed rows": x[::-1],
        "every other column": x[:, ::2],
        "odd stride": np.zeros(4, dtype=[("a", "u1"), ("b", "<f4")])["b"].reshape(2, 2),
        "empty": np.zeros((0, 3), np.float32),
        "three dimensions": np.zeros((2, 2, 2), np.float32),
    }
    for name, array in bad.items():
        assert not blas.accepts(array), name


def test_without_numpys_openblas_nothing_is_registered(monkeypatch):
    """No OpenBLAS loaded, or a library without the functions (here the C library): not available."""
    monkeypatch.setattr(blas, "_numpys_blas_files", lambda: [])
    assert blas._register() is False
    libc = ctypes.util.find_library("c")
    monkeypatch.setattr(blas, "_numpys_blas_files", lambda: [libc, "/no/such/library.so"])
    assert blas._register() is False
