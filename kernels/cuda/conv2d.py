"""CUDA twin of ``conv2d.py``: the dense k×k convolution (the stem) as im2col + a matrix product, on
device arrays.

Same functions, arguments, shapes and padding rules as the CPU file (read it for the formulas).
im2col copies every k×k×C_in window into one row of ``cols`` (N·Ho·Wo, k·k·C_in) and the convolution
becomes the 1×1 convolution ``cuda/pointwise.py`` of ``cols`` with ``w`` as (k·k·C_in, C_out). Backward:
the pointwise backward gives ``dw`` and ``dcols``; col2im adds each window's ``dcols`` back onto the
pixels it was copied from.

Thread mapping:

* im2col: one thread per element of ``cols``: row (n, i, j) is the window, column (p, q, c) the tap;
  taps in the padding get 0.
* col2im: one thread per element (n, h, v, c) of ``dx``, which *gathers* ``dcols`` from every window
  that copied its pixel (``cuda/depthwise.py``'s ``window_index``): no two threads write one element, so no
  atomics are needed, and every sum has a fixed order.
"""

from numba import cuda

from .._checks import check_device_array
from ..conv2d import _checked
from ..padding import SAME, check_window_gradient, window_geometry
from ._device import THREADS_PER_BLOCK, blocks_for, split_index
from .depthwise import source_index, window_index
from .pointwise import pointwise_conv_backward, pointwise_conv_forward


@cuda.jit(cache=True)
def _im2col_kernel(x, k, stride, pad_top, pad_left, out_h, out_w, cols):
    """Thread t fills flat element t of cols (N·Ho·Wo, k·k·C_in) from x (N, H, W, C_in)."""
    t = cuda.grid(1)
    _, height, width, channels = x.shape
    if t < cols.size:
        row, col = t // cols.shape[1], t % cols.shape[1]
        n, i, j = split_index(row, out_h, out_w)
        p, q, c = split_index(col, k, channels)
        h = source_index(i, p, stride, pad_top, height)
        v = source_index(j, q, stride, pad_left, width)
        cols[row, col] = x[n, h, v, c] if h >= 0 and v >= 0 else 0.0


@cuda.jit(cache=True)
def _col2im_kernel(dcols, k, stride, pad_top, pad_left, out_h, out_w, dx):
    """Thread t computes flat element t = (n, h, v, c) of dx: Σ dcols over the windows that copied (h, v)."""
    t = cuda.grid(1)
    _, height, width, channels = dx.shape
    if t < dx.size:
        n, h, v = split_index(t // channels, height, width)
        c = t % channels
        acc = 0.0
        for p in range(k):
            i = window_index(h, p, stride, pad_top, out_h)
            for q in range(k):
                j = window_index(v, q, stride, pad_left, out_w)
                if i >= 0 and j >= 0:
                    acc += dcols[(n * out_h + i) * out_w + j, (p * k + q) * channels + c]
        dx[n, h, v, c] = acc


def _im2col(x, k, stride, padding):
    """cols (N, Ho, Wo, k·k·C_in): the windows of x, ready for ``cuda/pointwise.py``."""
    out_h, pad_top, out_w, pad_left = window_geometry(x, k, stride, padding)
    cols = cuda.device_array((x.shape[0] * out_h * out_w, k * k * x.shape[3]), x.dtype)
    _im2col_kernel[blocks_for(cols.size), THREADS_PER_BLOCK](x, k, int(stride), pad_top, pad_left, out_h, out_w, cols)
    return cols.reshape(x.shape[0], out_h, out_w, k * k * x.shape[3])


def _as_matrix(w):
    """w (k, k, C_in, C_out) as the (k·k·C_in, C_out) matrix that multiplies a row of cols."""
    return w.reshape(w.shape[0] * w.shape[1] * w.shape[2], w.shape[3])


def conv2d_forward(x, w, stride, padding=SAME):
    """Dense convolution with the padding rule ``padding`` ("same" or "symmetric").

    x: (N, H, W, C_in) float32 device array, w: (k, k, C_in, C_out), stride 1 or 2.
    Returns y: (N, ceil(H/s), ceil(W/s), C_out)."""
    x, w = _checked(x, w, stride, padding, check_device_array)
    return pointwise_conv_forward(_im2col(x, w.shape[0], stride, padding), _as_matrix(w))


def conv2d_backward(x, w, dy, stride, padding=SAME):
    """Gradients of ``L = Σ y·dy`` for ``y = conv2d_forward(x, w, stride, padding)``.

    dy: (N, ceil(H/s), ceil(W/s), C_out) device array. Returns ``(dx, dw)`` shaped like ``x`` and ``w``."""
    x, w = _checked(x, w, stride, padding, check_device_array)
    dy = check_window_gradient(x, w, dy, stride, padding, check_device_array)
    k = w.shape[0]
    out_h, pad_top, out_w, pad_left = window_geometry(x, k, stride, padding)
    dcols, dw = pointwise_conv_backward(_im2col(x, k, stride, padding), _as_matrix(w), dy)
    dx = cuda.device_array_like(x)
    dcols = dcols.reshape(-1, k * k * x.shape[3])
    _col2im_kernel[blocks_for(dx.size), THREADS_PER_BLOCK](dcols, k, int(stride), pad_top, pad_left, out_h, out_w, dx)
    return dx, dw.reshape(w.shape)
