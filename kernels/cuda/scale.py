"""CUDA twin of ``scale.py``: the excite multiply of squeeze-and-excitation, on device arrays.

    y[n, h, w, c]  = x[n, h, w, c] · s[n, c]
    dx[n, h, w, c] = dy[n, h, w, c] · s[n, c]          ds[n, c] = Σ_{h,w} dy[n, h, w, c] · x[n, h, w, c]

Thread mapping (images seen as ``(N, P, C)`` with ``P = H·W``):

* ``y`` and ``dx``: one thread per element (the same kernel, ``scale_rows``, also serves drop connect
  in ``cuda/dropout.py``).
* ``ds``: **one block per output value** ``(n, c)``, block index ``b = n·C + c``; the block's threads
  stride over the P positions and ``block_sum`` adds their partial sums in shared memory (a fixed
  order, float64, no atomics).
"""

from numba import cuda

from .._checks import check_device_array, check_like
from ..scale import _check_inputs
from ._device import THREADS_PER_BLOCK, block_sum, blocks_for, split_index


@cuda.jit(cache=True)
def _scale_rows_kernel(x, s, y):
    """y[n, p, c] = x[n, p, c] · s[n, c] for x, y (N, P, C); thread t computes flat element t of y."""
    t = cuda.grid(1)
    _, positions, channels = x.shape
    if t < x.size:
        n, p, c = split_index(t, positions, channels)
        y[n, p, c] = x[n, p, c] * s[n, c]


@cuda.jit(cache=True)
def _sum_positions_of_product_kernel(a, b, out):
    """out[n, c] = Σ_p a[n, p, c] · b[n, p, c]; block index = n·C + c."""
    positions, channels = a.shape[1], a.shape[2]
    n, c = cuda.blockIdx.x // channels, cuda.blockIdx.x % channels
    partial = 0.0
    for p in range(cuda.threadIdx.x, positions, THREADS_PER_BLOCK):
        partial += a[n, p, c] * b[n, p, c]
    total = block_sum(partial)
    if cuda.threadIdx.x == 0:
        out[n, c] = total


def scale_rows(x, s):
    """x (N, P, C) times s (N, C) broadcast over P; unchecked, shared with drop connect in ``cuda/dropout.py``."""
    y = cuda.device_array_like(x)
    _scale_rows_kernel[blocks_for(x.size), THREADS_PER_BLOCK](x, s, y)
    return y


def channel_scale_forward(x, s):
    """y = x · s[:, None, None, :]. x: (N, H, W, C) float32 device array; s: (N, C). y like x."""
    x, s = _check_inputs(x, s, check_device_array)
    n, h, w, c = x.shape
    return scale_rows(x.reshape(n, h * w, c), s).reshape(x.shape)


def channel_scale_backward(x, s, dy):
    """Gradients of y = x · s[:, None, None, :]. x, dy: (N, H, W, C); s: (N, C) device arrays.

    Returns ``(dx, ds)``: dx = dy · s (N, H, W, C) and ds = Σ_{h,w} dy · x (N, C)."""
    x, s = _check_inputs(x, s, check_device_array)
    dy = check_like("dy", dy, x, check_device_array)
    n, h, w, c = x.shape
    x3, dy3 = x.reshape(n, h * w, c), dy.reshape(n, h * w, c)
    ds = cuda.device_array_like(s)
    if ds.size:
        _sum_positions_of_product_kernel[n * c, THREADS_PER_BLOCK](dy3, x3, ds)
    return scale_rows(dy3, s).reshape(x.shape), ds
