"""CUDA twin of ``pooling.py``: global average pooling on device arrays.

    y[n, c] = (1 / (H·W)) · Σ_{h,w} x[n, h, w, c]        dx[n, h, w, c] = dy[n, c] / (H·W)

Thread mapping (``x`` seen as ``(N, P, C)`` with ``P = H·W`` positions):

* forward: **one block per output value** ``(n, c)``, block index ``b = n·C + c``. The block's threads
  stride over the P positions and ``block_sum`` adds their partial sums in shared memory (a fixed
  order, float64, no atomics).
* backward: one thread per element of ``dx``; nothing to sum, each gradient is spread evenly.
"""

from numba import cuda

from .._checks import check_device_array
from ..pooling import _check_backward, _check_forward
from ._device import THREADS_PER_BLOCK, block_sum, blocks_for, split_index


@cuda.jit(cache=True)
def _mean_over_positions_kernel(x, y):
    """y[n, c] = mean over p of x[n, p, c] for x (N, P, C); block b computes (n, c) = divmod(b, C)."""
    positions, channels = x.shape[1], x.shape[2]
    n, c = cuda.blockIdx.x // channels, cuda.blockIdx.x % channels
    partial = 0.0
    for p in range(cuda.threadIdx.x, positions, THREADS_PER_BLOCK):
        partial += x[n, p, c]
    total = block_sum(partial)
    if cuda.threadIdx.x == 0:
        y[n, c] = total / positions


@cuda.jit(cache=True)
def _spread_over_positions_kernel(dy, dx):
    """dx[n, p, c] = dy[n, c] / P for dx (N, P, C); thread t computes flat element t of dx."""
    t = cuda.grid(1)
    _, positions, channels = dx.shape
    if t < dx.size:
        n, p, c = split_index(t, positions, channels)
        dx[n, p, c] = dy[n, c] / positions


def global_avg_pool_forward(x):
    """Mean over the spatial axes. x: (N, H, W, C) float32 device array -> y: (N, C)."""
    x = _check_forward(x, check_device_array)
    n, h, w, c = x.shape
    y = cuda.device_array((n, c), x.dtype)
    if y.size:
        _mean_over_positions_kernel[n * c, THREADS_PER_BLOCK](x.reshape(n, h * w, c), y)
    return y


def global_avg_pool_backward(dy, height, width):
    """dx = dy / (H·W) at every position. dy: (N, C) device array; height, width: the forward's H, W.

    Returns dx: (N, H, W, C)."""
    dy = _check_backward(dy, height, width, check_device_array)
    n, c = dy.shape
    dx = cuda.device_array((n, height, width, c), dy.dtype)
    _spread_over_positions_kernel[blocks_for(dx.size), THREADS_PER_BLOCK](dy, dx.reshape(n, height * width, c))
    return dx
