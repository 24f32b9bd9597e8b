"""Dense k×k convolution (EfficientNet's stem: 3×3, stride 2, 3 → 32 channels).

Shapes (NHWC)::

    x: (N, H, W, C_in)    w: (k, k, C_in, C_out)    y: (N, Ho, Wo, C_out)    Ho = ceil(H/s), Wo = ceil(W/s)

    y[n, i, j, d] = Σ_{p,q,c} x[n, i·s + p − pad_top, j·s + q − pad_left, c] · w[p, q, c, d]

with the rule ``padding`` (``padding.py``: TensorFlow's "same", the default, or "symmetric"; the output size
is ceil(H/s) either way, for an odd k), pixels outside the image counting as zero.

im2col: copy every k×k×C_in window into one row of ``cols`` (N, Ho, Wo, k·k·C_in),

    cols[n, i, j, (p, q, c)] = x[n, i·s + p − pad_top, j·s + q − pad_left, c]    (0 outside the image)

and the convolution becomes a 1×1 convolution of ``cols`` with ``w`` reshaped to (k·k·C_in, C_out):
one matrix product, done by ``pointwise.py``. Backward runs the same two steps in reverse: the
pointwise backward gives ``dw`` and ``dcols``, and col2im adds each window's ``dcols`` back onto the
pixels it was copied from (windows overlap, so a pixel collects from several) to give ``dx``.
"""

import numba
import numpy as np

from ._checks import check_array
from .padding import SAME, check_window, check_window_gradient, tap_range, window_geometry
from .pointwise import pointwise_conv_backward, pointwise_conv_forward


def _checked(x, w, stride, padding, check=check_array):
    """Check x (N, H, W, C_in), w (k, k, C_in, C_out) (arrays of the kind ``check``, one dtype), stride and padding."""
    x = check("x", x, ndim=4)
    w = check("w", w, ndim=4, dtype=x.dtype)
    check_window(w, stride, padding)
    if w.shape[2] != x.shape[3]:
        raise ValueError(f"w has {w.shape[2]} input channels but x has {x.shape[3]}; a conv2d w is (k, k, C_in, C_out)")
    return x, w


def _im2col(x, k, stride, padding):
    out_h, pad_top, out_w, pad_left = window_geometry(x, k, stride, padding)
    cols = np.empty((x.shape[0], out_h, out_w, k, k, x.shape[3]), dtype=x.dtype)
    _im2col_loops(x, int(stride), pad_top, pad_left, cols)
    return cols.reshape(x.shape[0], out_h, out_w, -1)


def conv2d_forward(x, w, stride, padding=SAME):
    """Dense convolution with the padding rule ``padding`` ("same" or "symmetric", ``padding.py``).

    x: (N, H, W, C_in) float32/float64, w: (k, k, C_in, C_out) same dtype, stride 1 or 2.
    Returns y: (N, ceil(H/s), ceil(W/s), C_out) in x's dtype."""
    x, w = _checked(x, w, stride, padding)
    return pointwise_conv_forward(_im2col(x, w.shape[0], stride, padding), w.reshape(-1, w.shape[3]))


def conv2d_backward(x, w, dy, stride, padding=SAME):
    """Gradients of ``L = Σ y·dy`` for ``y = conv2d_forward(x, w, stride, padding)``.

    dy: (N, ceil(H/s), ceil(W/s), C_out) in x's dtype. Returns ``(dx, dw)`` shaped like ``x`` and ``w``."""
    x, w = _checked(x, w, stride, padding)
    dy = check_window_gradient(x, w, dy, stride, padding)
    k = w.shape[0]
    _, pad_top, _, pad_left = window_geometry(x, k, stride, padding)
    dcols, dw = pointwise_conv_backward(_im2col(x, k, stride, padding), w.reshape(-1, w.shape[3]), dy)
    dx = np.empty_like(x)
    _col2im_loops(dcols.reshape(dy.shape[:3] + w.shape[:3]), int(stride), pad_top, pad_left, dx)
    return dx, dw.reshape(w.shape)


@numba.njit(cache=True, parallel=True)
def _im2col_loops(x, stride, pad_top, pad_left, cols):
    """Fill ``cols`` (N, Ho, Wo, k, k, C_in) with the windows of ``x``; images run in parallel."""
    _, height, width, channels = x.shape
    _, out_h, out_w, k, _, _ = cols.shape
    for n in numba.prange(x.shape[0]):
        for i in range(out_h):
            p_lo, p_hi = tap_range(i, stride, pad_top, k, height)
            for j in range(out_w):
                q_lo, q_hi = tap_range(j, stride, pad_left, k, width)
                cols[n, i, j] = 0
                for p in range(p_lo, p_hi):
                    h = i * stride + p - pad_top
                    for q in range(q_lo, q_hi):
                        v = j * stride + q - pad_left
                        for c in range(channels):
                            cols[n, i, j, p, q, c] = x[n, h, v, c]


@numba.njit(cache=True, parallel=True)
def _col2im_loops(dcols, stride, pad_top, pad_left, dx):
    """``dx[n, h, v, c] = Σ dcols[n, i, j, p, q, c]`` over the windows that copied pixel (h, v).

    Each image only touches its own ``dx[n]``, so images run in parallel and every sum has a fixed order."""
    _, height, width, channels = dx.shape
    _, out_h, out_w, k, _, _ = dcols.shape
    for n in numba.prange(dx.shape[0]):
        dx[n] = 0
        for i in range(out_h):
            p_lo, p_hi = tap_range(i, stride, pad_top, k, height)
            for j in range(out_w):
                q_lo, q_hi = tap_range(j, stride, pad_left, k, width)
                for p in range(p_lo, p_hi):
                    h = i * stride + p - pad_top
                    for q in range(q_lo, q_hi):
                        v = j * stride + q - pad_left
                        for c in range(channels):
                            dx[n, h, v, c] += dcols[n, i, j, p, q, c]
