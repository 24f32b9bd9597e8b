"""CUDA twin of ``linear.py``: the fully connected classifier layer, on device arrays.

    x: (N, F_in)   w: (F_in, F_out)   b: (F_out,)   y = x @ w + b: (N, F_out)
    dx = dy @ wᵀ        dw = xᵀ @ dy        db = Σ_n dy[n]

The products are ``cuda/pointwise.py``'s ``matmul`` (a tiled matrix product). Adding the bias runs one thread
per element of ``y``; ``db`` runs **one block per output feature** f: the block's threads stride over
the N rows and ``block_sum`` adds their partial sums in shared memory (a fixed order, no atomics).
"""

from numba import cuda

from .._checks import check_device_array
from ..linear import _check_backward, _check_forward
from ._device import THREADS_PER_BLOCK, block_sum, blocks_for
from .pointwise import matmul


@cuda.jit(cache=True)
def _add_bias_kernel(y, b):
    """y[n, f] += b[f]; thread t updates flat element t of y (N, F)."""
    t = cuda.grid(1)
    if t < y.size:
        features = y.shape[1]
        y[t // features, t % features] += b[t % features]


@cuda.jit(cache=True)
def _sum_rows_kernel(dy, db):
    """db[f] = Σ_n dy[n, f]; block f sums column f."""
    f = cuda.blockIdx.x
    partial = 0.0
    for n in range(cuda.threadIdx.x, dy.shape[0], THREADS_PER_BLOCK):
        partial += dy[n, f]
    total = block_sum(partial)
    if cuda.threadIdx.x == 0:
        db[f] = total


def linear_forward(x, w, b):
    """y = x @ w + b. x: (N, F_in), w: (F_in, F_out), b: (F_out,) float32 device arrays. Returns (N, F_out)."""
    x, w, b = _check_forward(x, w, b, check_device_array)
    y = matmul(x, w)
    _add_bias_kernel[blocks_for(y.size), THREADS_PER_BLOCK](y, b)
    return y


def linear_backward(x, w, dy):
    """Gradients of y = x @ w + b. x: (N, F_in), w: (F_in, F_out), dy: (N, F_out) device arrays.

    Returns ``(dx, dw, db)`` = (dy @ wᵀ, xᵀ @ dy, Σ_n dy), shaped like x, w and b."""
    x, w, dy = _check_backward(x, w, dy, check_device_array)
    db = cuda.device_array(w.shape[1], dy.dtype)
    if db.size:
        _sum_rows_kernel[db.size, THREADS_PER_BLOCK](dy, db)
    return matmul(dy, w, transpose_b=True), matmul(x, dy, transpose_a=True), db
