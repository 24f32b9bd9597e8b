"""NumPy's own BLAS, called from compiled loops: ``gemm(a, b, c)`` computes c = a @ b inside ``numba.njit`` code.

Why: ``matmul.py`` splits a matrix product among the threads, one block of the output each. Handed to Python
threads (``concurrent.futures``), a block costs a wake-up, Python's lock and a thread beside OpenMP's: on the
2-core Intel Xeon, the 33 products of one 224×224 image through B0 took 7.7 ms split in two that way against
5.7 ms whole on one thread. Called from a Numba parallel loop, the blocks run on the threads that run every
other kernel, already awake: 3.6 ms (medians of 30 calls per product, 2026-12-07; ``matmul.py`` has the
whole-network figures).

NumPy's wheels bundle OpenBLAS (``scipy-openblas`` since NumPy 2, ``openblas64_`` before) with 64-bit
integers and a suffix on every name: ``scipy_cblas_sgemm64_`` and its double twin. ``threadpoolctl``, which
``tinyeffnet/runtime.py`` already uses to keep that BLAS on one thread, says which file NumPy loaded; the
functions' addresses are registered with LLVM under names of our own (``BLAS_NAMES``), so the compiled code,
and Numba's cache of it, refers to those names whichever file and suffix this NumPy has. Where no such
function is found (NumPy built with MKL or Apple's Accelerate; an OpenBLAS with 32-bit integers),
``AVAILABLE`` is False and ``matmul.py`` keeps to Python threads.

The call is CBLAS's ``?gemm``, row-major (``ROW_MAJOR``), c = 1·op(a) @ op(b) + 0·c: a matrix whose rows are not
contiguous but whose columns are (a transposed view such as ``w.T``) is passed as the transpose of a row-major
one, so no operand is copied. Pointers and sizes go as 64-bit integers (``ILP64``). BLAS trusts the sizes and
strides it is given, so ``accepts`` says which arrays ``gemm`` may be handed (no broadcast or overlapping rows,
no odd strides), and ``gemm`` may be called only where ``AVAILABLE``: an unregistered name crashes the process.
Several threads may call it at once (OpenBLAS's calls are thread-safe; ``tinyeffnet/runtime.py`` keeps it to one
thread of its own, so the calls do not each start more).

Numba caches the loops that call ``gemm`` (``matmul.py``) with ``gemm`` compiled into them, keyed on their own
source file only: after editing this file, delete ``kernels/__pycache__`` so they recompile.
"""

import ctypes

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types

ROW_MAJOR, NO_TRANSPOSE, TRANSPOSE = 101, 111, 112          # CBLAS's enum values
BLAS_NAMES = {np.float32: "tinyeffnet_cblas_sgemm", np.float64: "tinyeffnet_cblas_dgemm"}
SYMBOLS = {np.float32: ("scipy_cblas_sgemm64_", "cblas_sgemm64_"),    # NumPy ≥ 2, then NumPy 1.x wheels
           np.float64: ("scipy_cblas_dgemm64_", "cblas_dgemm64_")}


def _gemm_type(real):
    """CBLAS ?gemm(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) with 64-bit integers and
    pointers passed as 64-bit integers (the same registers on every 64-bit ABI)."""
    i32, i64 = types.int32, types.int64
    return types.void(i32, i32, i32, i64, i64, i64, real, i64, i64, i64, i64, real, i64, i64)


_sgemm = types.ExternalFunction(BLAS_NAMES[np.float32], _gemm_type(types.float32))
_dgemm = types.ExternalFunction(BLAS_NAMES[np.float64], _gemm_type(types.float64))


def _numpys_blas_files():
    """The OpenBLAS files this process has loaded (NumPy's among them), by threadpoolctl."""
    import threadpoolctl
    return [info["filepath"] for info in threadpoolctl.threadpool_info() if info.get("internal_api") == "openblas"]


def _register():
    """Find both gemm functions in NumPy's OpenBLAS and register their addresses with LLVM; whether it could."""
    for path in _numpys_blas_files():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        found = {}
        for real, names in SYMBOLS.items():
            for name in names:
                if hasattr(library, name):
                    found[real] = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
                    break
        if len(found) == len(SYMBOLS):
            for real, address in found.items():
                llvm.add_symbol(BLAS_NAMES[real], address)
            return True
    return False


AVAILABLE = _register()


def accepts(a):
    """Whether ``gemm`` may take the 2-D float array ``a`` as it is: non-empty, aligned, every stride a multiple
    of the item size, and laid out as a row-major matrix (unit steps along a row, rows at least a row apart) or
    as the transpose of one. A broadcast or overlapping view (rows fewer than a row apart) is not."""
    if a.ndim != 2 or a.size == 0 or not a.flags.aligned or any(s % a.itemsize for s in a.strides):
        return False
    (rows, columns), (row_step, column_step), item = a.shape, a.strides, a.itemsize
    row_major = (column_step == item or columns == 1) and (rows == 1 or row_step >= columns * item)
    transposed = (row_step == item or rows == 1) and (columns == 1 or column_step >= rows * item)
    return row_major or transposed


@njit(cache=True, inline="always")
def _layout(a):
    """(CBLAS transpose flag, leading dimension) of a 2-D array that ``accepts``: row-major as it is, or the
    transpose of a row-major array (a transposed view). Along an axis of length 1 the stride is arbitrary, so the
    leading dimension is at least the other axis's length, as BLAS requires."""
    rows, columns = a.shape
    if a.strides[1] == a.itemsize or columns == 1:
        return NO_TRANSPOSE, max(a.strides[0] // a.itemsize, columns)
    return TRANSPOSE, max(a.strides[1] // a.itemsize, rows)


@njit(cache=True)
def gemm(a, b, c):
    """c = a @ b for a (M, K), b (K, N) and c (M, N), float32 or float64 alike, each one that ``accepts`` (c
    row-major: c[i, j] and c[i, j + 1] adjacent); M, N, K ≥ 1. Writes c, returns nothing. Only where AVAILABLE."""
    m, k = a.shape
    n = b.shape[1]
    transpose_a, lda = _layout(a)
    transpose_b, ldb = _layout(b)
    ldc = max(c.strides[0] // c.itemsize, n)
    if c.itemsize == 4:
        _sgemm(ROW_MAJOR, transpose_a, transpose_b, m, n, k, np.float32(1.0), a.ctypes.data, lda,
               b.ctypes.data, ldb, np.float32(0.0), c.ctypes.data, ldc)
    else:
        _dgemm(ROW_MAJOR, transpose_a, transpose_b, m, n, k, 1.0, a.ctypes.data, lda,
               b.ctypes.data, ldb, 0.0, c.ctypes.data, ldc)
