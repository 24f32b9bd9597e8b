"""TensorFlow "SAME" padding, the rule EfficientNet was trained with, and the geometry of a k×k window
sliding with it (shared by the depthwise and the dense convolution, ``depthwise.py`` and ``conv2d.py``).

For an input of ``size`` pixels, kernel ``k`` and stride ``s``:

    out   = ceil(size / s)
    total = max((out − 1)·s + k − size, 0)
    before = total // 2          (the smaller half goes on top / left)
    after  = total − before

Window ``i`` of the output reads input pixels ``i·s + p − before`` for its taps ``p = 0 … k−1``; the
ones outside ``[0, size)`` are padding (zeros), and ``tap_range`` gives the taps that are not.
"""

import numbers

import numba

from ._checks import check_array, check_shape

STRIDES = (1, 2)


def same_padding(size, kernel, stride):
    """Return ``(out, before, after)`` for one spatial axis."""
    if size < 1 or kernel < 1 or stride < 1:
        raise ValueError(f"same_padding needs positive size, kernel and stride, got {size}, {kernel}, {stride}")
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return out, before, total - before


def check_window(w, stride):
    """Check that ``w`` has a square, odd k×k window in its first two axes and that stride is 1 or 2."""
    if w.shape[0] != w.shape[1] or w.shape[0] % 2 == 0:
        raise ValueError(f"kernel window must be square with odd size k, got {w.shape[0]}×{w.shape[1]}")
    if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride not in STRIDES:
        raise ValueError(f"stride must be 1 or 2, got {stride!r}")


def same_geometry(x, k, stride):
    """``(out_h, pad_top, out_w, pad_left)`` of a k×k window sliding over NHWC ``x`` with SAME padding."""
    out_h, pad_top, _ = same_padding(x.shape[1], k, stride)
    out_w, pad_left, _ = same_padding(x.shape[2], k, stride)
    return out_h, pad_top, out_w, pad_left


def check_window_gradient(x, w, dy, stride, check=check_array):
    """Check dy (N, Ho, Wo, C_out), the gradient of a window's output, for x (N, H, W, ·) and w (k, k, …, C_out)
    already checked; ``check`` is the array kind (``_checks.py``). Returns dy."""
    out_h, _, out_w, _ = same_geometry(x, w.shape[0], stride)
    dy = check("dy", dy, ndim=4, dtype=x.dtype)
    check_shape("dy", dy, (x.shape[0], out_h, out_w, w.shape[w.ndim - 1]))
    return dy


@numba.njit(cache=True, inline="always")
def tap_range(out_index, stride, pad_before, k, size):
    """Taps ``lo <= p < hi`` for which input index ``out_index·stride + p − pad_before`` lies in ``[0, size)``."""
    start = out_index * stride - pad_before
    return max(0, -start), min(k, size - start)
