"""Depthwise k×k convolution: every channel is filtered by its own k×k kernel (MBConv's spatial step).

Shapes (NHWC, see ``kernels/__init__.py``)::

    x: (N, H, W, C)    w: (k, k, C)    y: (N, Ho, Wo, C)    Ho = ceil(H / s), Wo = ceil(W / s)

    y[n, i, j, c] = Σ_{p,q} x[n, i·s + p − pad_top, j·s + q − pad_left, c] · w[p, q, c]

with the rule ``padding`` (``padding.py``: TensorFlow's "same", the default, or "symmetric"): pixels
outside the image count as zero. Rather than copying ``x`` into a zero-padded array, every loop visits
only the taps ``(p, q)`` that land inside the image (``tap_range``). Measured on B0 shapes, a padded
copy plus unbounded loops made the forward 1.5–2× slower: the copy is a whole extra pass over memory.

Backward, with ``dy = ∂L/∂y``::

    dx[n, h, v, c] = Σ_{i,j,p,q : i·s+p−pad_top = h, j·s+q−pad_left = v} dy[n, i, j, c] · w[p, q, c]
    dw[p, q, c]    = Σ_{n,i,j} dy[n, i, j, c] · x[n, i·s + p − pad_top, j·s + q − pad_left, c]

Both come from one pass over the same (n, i, j, p, q) loop as the forward: each product of the forward
sends ``dy`` back to the ``x`` and the ``w`` it multiplied. The innermost loops always run over the
contiguous channel axis, so they compile to SIMD instructions (two separate channel loops for dx and
dw vectorise better than one loop updating both; measured).

The window geometry (``check_window``, ``window_geometry``, ``tap_range``) is ``padding.py``'s, shared
with the dense convolution (``conv2d.py``), which slides the same windows.
"""

import numba
import numpy as np

from ._checks import check_array
from .padding import SAME, check_window, check_window_gradient, tap_range, window_geometry

# dw is a sum over the whole batch. Each of BATCH_CHUNKS chunks of images gets its own partial sum,
# added in a fixed order afterwards: the result does not depend on how many threads ran the chunks.
BATCH_CHUNKS = 16


def _checked(x, w, stride, padding, check=check_array):
    """Check x (N, H, W, C), w (k, k, C) (arrays of the kind ``check`` and one dtype), stride and padding;
    return x, w."""
    x = check("x", x, ndim=4)
    w = check("w", w, ndim=3, dtype=x.dtype)
    check_window(w, stride, padding)
    if w.shape[2] != x.shape[3]:
        raise ValueError(f"w has {w.shape[2]} channels but x has {x.shape[3]}; a depthwise w is (k, k, C)")
    return x, w


def depthwise_conv_forward(x, w, stride, padding=SAME):
    """Depthwise convolution ``y = x ⊛ w`` with the padding rule ``padding`` ("same" or "symmetric").

    x: (N, H, W, C) float32/float64, w: (k, k, C) same dtype, stride 1 or 2.
    Returns y: (N, ceil(H/s), ceil(W/s), C) in x's dtype."""
    x, w = _checked(x, w, stride, padding)
    out_h, pad_top, out_w, pad_left = window_geometry(x, w.shape[0], stride, padding)
    y = np.empty((x.shape[0], out_h, out_w, x.shape[3]), dtype=x.dtype)
    _forward_loops(x, w, int(stride), pad_top, pad_left, y)
    return y


def depthwise_conv_backward(x, w, dy, stride, padding=SAME):
    """Gradients of ``L = Σ y·dy`` for ``y = depthwise_conv_forward(x, w, stride, padding)``.

    dy: the forward output's shape and dtype. Returns ``(dx, dw)`` shaped like ``x`` and ``w``."""
    x, w = _checked(x, w, stride, padding)
    dy = check_window_gradient(x, w, dy, stride, padding)
    _, pad_top, _, pad_left = window_geometry(x, w.shape[0], stride, padding)
    dx = np.empty_like(x)
    dw_parts = np.empty((BATCH_CHUNKS,) + w.shape, dtype=x.dtype)
    _backward_loops(x, w, dy, int(stride), pad_top, pad_left, dx, dw_parts)
    return dx, dw_parts.sum(axis=0)


@numba.njit(cache=True, parallel=True)
def _forward_loops(x, w, stride, pad_top, pad_left, y):
    """Fill ``y`` (N, Ho, Wo, C); its N·Ho output rows are independent and run in parallel (rows, not images,
    so that a single image, as in inference, still uses every core)."""
    _, height, width, channels = x.shape
    k = w.shape[0]
    _, out_h, out_w, _ = y.shape
    for row in numba.prange(y.shape[0] * out_h):
        n, i = row // out_h, row % out_h
        p_lo, p_hi = tap_range(i, stride, pad_top, k, height)
        for j in range(out_w):
            q_lo, q_hi = tap_range(j, stride, pad_left, k, width)
            for c in range(channels):
                y[n, i, j, c] = 0
            for p in range(p_lo, p_hi):
                h = i * stride + p - pad_top
                for q in range(q_lo, q_hi):
                    v = j * stride + q - pad_left
                    for c in range(channels):
                        y[n, i, j, c] += x[n, h, v, c] * w[p, q, c]


@numba.njit(cache=True, parallel=True)
def _backward_loops(x, w, dy, stride, pad_top, pad_left, dx, dw_parts):
    """Fill ``dx`` and the per-chunk partial sums ``dw_parts`` (BATCH_CHUNKS, k, k, C) in parallel over chunks."""
    batch, height, width, channels = x.shape
    k = w.shape[0]
    _, out_h, out_w, _ = dy.shape
    n_chunks = dw_parts.shape[0]
    for chunk in numba.prange(n_chunks):
        dw = dw_parts[chunk]
        dw[:] = 0
        for n in range(chunk * batch // n_chunks, (chunk + 1) * batch // n_chunks):
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
                                dx[n, h, v, c] += dy[n, i, j, c] * w[p, q, c]
                            for c in range(channels):
                                dw[p, q, c] += dy[n, i, j, c] * x[n, h, v, c]
