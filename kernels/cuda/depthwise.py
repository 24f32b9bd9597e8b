"""CUDA twin of ``depthwise.py``: the depthwise k×k convolution on device arrays.

Same functions, arguments, shapes and padding rules as the CPU file (read it for the formulas)::

    y[n, i, j, c]  = Σ_{p,q} x[n, i·s + p − pad_top, j·s + q − pad_left, c] · w[p, q, c]
    dx[n, h, v, c] = Σ_{p,q} dy[n, i, j, c] · w[p, q, c]     over the windows (i, j) whose tap (p, q) is (h, v)
    dw[p, q, c]    = Σ_{n,i,j} dy[n, i, j, c] · x[n, i·s + p − pad_top, j·s + q − pad_left, c]

Thread mapping:

* ``y``: one thread per output element (n, i, j, c), summing its k×k taps (taps in the padding skipped).
* ``dx``: one thread per input element (n, h, v, c). The CPU backward *scatters* each dy into the
  pixels its window covered; on a GPU many threads would then add into one pixel and need atomics, so
  each thread instead *gathers*: for every tap (p, q) it finds the window (i, j) that put that tap on
  its pixel (``window_index``), if there is one. No atomics, a fixed order, and the result is exact.
* ``dw``: **one block per weight** (p, q, c); the block's threads stride over the N·Ho·Wo windows and
  ``block_sum`` adds their partial sums in shared memory (float64, a fixed order, no atomics).

``source_index`` and ``window_index`` are shared with ``cuda/conv2d.py``, which slides the same windows.
"""

from numba import cuda

from .._checks import check_device_array
from ..depthwise import _checked
from ..padding import SAME, check_window_gradient, window_geometry
from ._device import THREADS_PER_BLOCK, block_sum, blocks_for, split_index


@cuda.jit(device=True, cache=True)
def source_index(out_index, tap, stride, pad_before, size):
    """Input index ``out_index·stride + tap − pad_before`` read by a window's tap, or −1 if it is padding."""
    index = out_index * stride + tap - pad_before
    return index if 0 <= index < size else -1


@cuda.jit(device=True, cache=True)
def window_index(in_index, tap, stride, pad_before, out_size):
    """The output index ``o`` with ``o·stride + tap − pad_before = in_index``, or −1 if no window has one."""
    shifted = in_index + pad_before - tap
    if shifted < 0 or shifted % stride != 0 or shifted // stride >= out_size:
        return -1
    return shifted // stride


@cuda.jit(cache=True)
def _forward_kernel(x, w, stride, pad_top, pad_left, y):
    """Thread t computes flat element t = (n, i, j, c) of y (N, Ho, Wo, C)."""
    t = cuda.grid(1)
    _, height, width, channels = x.shape
    _, out_h, out_w, _ = y.shape
    k = w.shape[0]
    if t < y.size:
        n, i, j = split_index(t // channels, out_h, out_w)
        c = t % channels
        acc = 0.0
        for p in range(k):
            h = source_index(i, p, stride, pad_top, height)
            for q in range(k):
                v = source_index(j, q, stride, pad_left, width)
                if h >= 0 and v >= 0:
                    acc += x[n, h, v, c] * w[p, q, c]
        y[n, i, j, c] = acc


@cuda.jit(cache=True)
def _input_gradient_kernel(w, dy, stride, pad_top, pad_left, dx):
    """Thread t gathers flat element t = (n, h, v, c) of dx (N, H, W, C) from the windows that read it."""
    t = cuda.grid(1)
    _, height, width, channels = dx.shape
    _, out_h, out_w, _ = dy.shape
    k = w.shape[0]
    if t < dx.size:
        n, h, v = split_index(t // channels, height, width)
        c = t % channels
        acc = 0.0
        for p in range(k):
            i = window_index(h, p, stride, pad_top, out_h)
            for q in range(k):
                j = window_index(v, q, stride, pad_left, out_w)
                if i >= 0 and j >= 0:
                    acc += dy[n, i, j, c] * w[p, q, c]
        dx[n, h, v, c] = acc


@cuda.jit(cache=True)
def _weight_gradient_kernel(x, dy, stride, pad_top, pad_left, dw):
    """Block b computes dw[p, q, c] for (p, q, c) = flat index b of dw (k, k, C)."""
    batch, height, width, channels = x.shape
    _, out_h, out_w, _ = dy.shape
    p, q, c = split_index(cuda.blockIdx.x, dw.shape[1], channels)
    partial = 0.0
    for window in range(cuda.threadIdx.x, batch * out_h * out_w, THREADS_PER_BLOCK):
        n, i, j = split_index(window, out_h, out_w)
        h = source_index(i, p, stride, pad_top, height)
        v = source_index(j, q, stride, pad_left, width)
        if h >= 0 and v >= 0:
            partial += dy[n, i, j, c] * x[n, h, v, c]
    total = block_sum(partial)
    if cuda.threadIdx.x == 0:
        dw[p, q, c] = total


def depthwise_conv_forward(x, w, stride, padding=SAME):
    """Depthwise convolution ``y = x ⊛ w`` with the padding rule ``padding`` ("same" or "symmetric").

    x: (N, H, W, C) float32 device array, w: (k, k, C) device array, stride 1 or 2.
    Returns y: (N, ceil(H/s), ceil(W/s), C)."""
    x, w = _checked(x, w, stride, padding, check_device_array)
    out_h, pad_top, out_w, pad_left = window_geometry(x, w.shape[0], stride, padding)
    y = cuda.device_array((x.shape[0], out_h, out_w, x.shape[3]), x.dtype)
    _forward_kernel[blocks_for(y.size), THREADS_PER_BLOCK](x, w, int(stride), pad_top, pad_left, y)
    return y


def depthwise_conv_backward(x, w, dy, stride, padding=SAME):
    """Gradients of ``L = Σ y·dy`` for ``y = depthwise_conv_forward(x, w, stride, padding)``.

    dy: the forward output's shape. Returns ``(dx, dw)`` shaped like ``x`` and ``w``."""
    x, w = _checked(x, w, stride, padding, check_device_array)
    dy = check_window_gradient(x, w, dy, stride, padding, check_device_array)
    _, pad_top, _, pad_left = window_geometry(x, w.shape[0], stride, padding)
    dx = cuda.device_array_like(x)
    dw = cuda.device_array_like(w)
    _input_gradient_kernel[blocks_for(dx.size), THREADS_PER_BLOCK](w, dy, int(stride), pad_top, pad_left, dx)
    if dw.size:
        _weight_gradient_kernel[dw.size, THREADS_PER_BLOCK](x, dy, int(stride), pad_top, pad_left, dw)
    return dx, dw
