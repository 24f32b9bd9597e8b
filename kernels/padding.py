"""The padding rules of a k×k window, and the geometry of the window sliding with one (shared by the
depthwise and the dense convolution, ``depthwise.py`` and ``conv2d.py``, and their CUDA twins).

For an input of ``size`` pixels, kernel ``k`` (odd) and stride ``s``, each rule gives ``(out, before, after)``:

``"same"``, TensorFlow's "SAME", the rule EfficientNet (V1) was trained with::

    out   = ceil(size / s)
    total = max((out − 1)·s + k − size, 0)
    before = total // 2          (the smaller half goes on top / left)
    after  = total − before

``"symmetric"``, PyTorch's ``padding=(k − 1)/2``, torchvision's EfficientNetV2::

    before = after = p = (k − 1) / 2
    out    = floor((size + 2p − k) / s) + 1

For an odd k both give the same ``out`` (ceil(size / s)), and they pad alike but for stride 2 on an even
size: a 3×3 window on 4 pixels pads 0 before and 1 after with SAME, 1 and 1 symmetrically (whose last
padded pixel no window reaches). So the rules differ in ``before`` only, which shifts every window.

Window ``i`` of the output reads input pixels ``i·s + p − before`` for its taps ``p = 0 … k−1``; the
ones outside ``[0, size)`` are padding (zeros), and ``tap_range`` gives the taps that are not.
"""

import numbers

import numba

from ._checks import check_array, check_shape

STRIDES = (1, 2)
SAME, SYMMETRIC = "same", "symmetric"


def _check_sizes(rule, size, kernel, stride):
    if size < 1 or kernel < 1 or stride < 1:
        raise ValueError(f"{rule} needs positive size, kernel and stride, got {size}, {kernel}, {stride}")


def same_padding(size, kernel, stride):
    """Return ``(out, before, after)`` for one spatial axis with TensorFlow's SAME rule."""
    _check_sizes("same_padding", size, kernel, stride)
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return out, before, total - before


def symmetric_padding(size, kernel, stride):
    """Return ``(out, before, after)`` for one spatial axis with (k − 1)/2 pixels on each side."""
    _check_sizes("symmetric_padding", size, kernel, stride)
    pad = (kernel - 1) // 2
    return (size + 2 * pad - kernel) // stride + 1, pad, pad


PADDINGS = {SAME: same_padding, SYMMETRIC: symmetric_padding}     # the rule's name → its function


def padding_rule(padding):
    """The function of the rule named ``padding`` (a key of ``PADDINGS``): the one place that picks."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(map(repr, PADDINGS))}, got {padding!r}")
    return PADDINGS[padding]


def check_window(w, stride, padding):
    """Check that ``w`` has a square, odd k×k window in its first two axes, that stride is 1 or 2 and that
    ``padding`` names a rule."""
    if w.shape[0] != w.shape[1] or w.shape[0] % 2 == 0:
        raise ValueError(f"kernel window must be square with odd size k, got {w.shape[0]}×{w.shape[1]}")
    if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride not in STRIDES:
        raise ValueError(f"stride must be 1 or 2, got {stride!r}")
    padding_rule(padding)


def window_geometry(x, k, stride, padding):
    """``(out_h, pad_top, out_w, pad_left)`` of a k×k window sliding over NHWC ``x`` with the rule ``padding``."""
    rule = padding_rule(padding)
    out_h, pad_top, _ = rule(x.shape[1], k, stride)
    out_w, pad_left, _ = rule(x.shape[2], k, stride)
    return out_h, pad_top, out_w, pad_left


def check_window_gradient(x, w, dy, stride, padding, check=check_array):
    """Check dy (N, Ho, Wo, C_out), the gradient of a window's output, for x (N, H, W, ·) and w (k, k, …, C_out)
    already checked; ``check`` is the array kind (``_checks.py``). Returns dy."""
    out_h, _, out_w, _ = window_geometry(x, w.shape[0], stride, padding)
    dy = check("dy", dy, ndim=4, dtype=x.dtype)
    check_shape("dy", dy, (x.shape[0], out_h, out_w, w.shape[w.ndim - 1]))
    return dy


@numba.njit(cache=True, inline="always")
def tap_range(out_index, stride, pad_before, k, size):
    """Taps ``lo <= p < hi`` for which input index ``out_index·stride + p − pad_before`` lies in ``[0, size)``."""
    start = out_index * stride - pad_before
    return max(0, -start), min(k, size - start)
