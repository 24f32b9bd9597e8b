"""CUDA twin of ``pointwise.py``: the 1×1 convolution as one matrix product, on device arrays.

    x: (N, H, W, C_in)    w: (C_in, C_out)    y: (N, H, W, C_out)
    Y = X @ w        dX = dY @ wᵀ        dw = Xᵀ @ dY        with X = x as (N·H·W, C_in)

On the CPU the product goes to BLAS; here it is ``matmul``, a tiled matrix product, which
``cuda/linear.py`` and ``cuda/conv2d.py`` (after im2col) use as well.

``matmul`` thread mapping: 2-D blocks of TILE × TILE threads; thread (ty, tx) of block (by, bx)
computes ``out[by·TILE + ty, bx·TILE + tx]``. The inner dimension is walked one TILE at a time: the
block copies a TILE × TILE tile of each operand into shared memory (every thread one element of each),
waits for the whole block, and every thread then reads a row and a column of the tiles. Each element of
the operands is read from global memory once per tile instead of once per output: TILE times fewer
reads. Transposed operands (for the backward) are read through swapped indices rather than copied.
Accumulation is float32, like BLAS's sgemm.
"""

import math

import numba
from numba import cuda

from .._checks import check_device_array
from ..pointwise import _checked, _checked_backward

TILE = 16


@cuda.jit(device=True, cache=True)
def _element(m, i, j, transposed, rows, cols):
    """op(m)[i, j] with op = transpose if ``transposed``, or 0 outside the rows × cols matrix op(m)."""
    if i >= rows or j >= cols:
        return 0.0
    return m[j, i] if transposed else m[i, j]


@cuda.jit(cache=True)
def _matmul_kernel(a, b, transpose_a, transpose_b, out):
    """out (R, K) = op(a) (R, I) @ op(b) (I, K); thread (ty, tx) of block (by, bx) computes one element."""
    a_tile = cuda.shared.array((TILE, TILE), numba.float32)
    b_tile = cuda.shared.array((TILE, TILE), numba.float32)
    ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    rows, cols = out.shape
    inner = a.shape[0] if transpose_a else a.shape[1]
    acc = numba.float32(0.0)
    for start in range(0, inner, TILE):
        a_tile[ty, tx] = _element(a, row, start + tx, transpose_a, rows, inner)
        b_tile[ty, tx] = _element(b, start + ty, col, transpose_b, inner, cols)
        cuda.syncthreads()
        for k in range(TILE):
            acc += a_tile[ty, k] * b_tile[k, tx]
        cuda.syncthreads()
    if row < rows and col < cols:
        out[row, col] = acc


def matmul(a, b, transpose_a=False, transpose_b=False):
    """op(a) @ op(b) for 2-D float32 device arrays, op = transpose where asked. Unchecked (callers check)."""
    rows = a.shape[1] if transpose_a else a.shape[0]
    cols = b.shape[0] if transpose_b else b.shape[1]
    out = cuda.device_array((rows, cols), a.dtype)
    blocks = (max(1, math.ceil(cols / TILE)), max(1, math.ceil(rows / TILE)))  # (x: columns, y: rows)
    _matmul_kernel[blocks, (TILE, TILE)](a, b, transpose_a, transpose_b, out)
    return out


def pointwise_conv_forward(x, w):
    """1×1 convolution ``y = x @ w`` over the channel axis.

    x: (N, H, W, C_in) float32 device array, w: (C_in, C_out). Returns y: (N, H, W, C_out)."""
    x, w = _checked(x, w, check_device_array)
    return matmul(x.reshape(-1, x.shape[3]), w).reshape(x.shape[:3] + (w.shape[1],))


def pointwise_conv_backward(x, w, dy):
    """Gradients of ``L = Σ y·dy`` for ``y = pointwise_conv_forward(x, w)``.

    dy: (N, H, W, C_out) device array. Returns ``(dx, dw)`` shaped like ``x`` and ``w``."""
    x, w, dy = _checked_backward(x, w, dy, check_device_array)
    x_rows, dy_rows = x.reshape(-1, x.shape[3]), dy.reshape(-1, w.shape[1])
    return matmul(dy_rows, w, transpose_b=True).reshape(x.shape), matmul(x_rows, dy_rows, transpose_a=True)
