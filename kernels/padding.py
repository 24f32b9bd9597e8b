"""TensorFlow "SAME" padding, the rule EfficientNet was trained with.

For an input of ``size`` pixels, kernel ``k`` and stride ``s``:

    out   = ceil(size / s)
    total = max((out − 1)·s + k − size, 0)
    before = total // 2          (the smaller half goes on top / left)
    after  = total − before
"""


def same_padding(size, kernel, stride):
    """Return ``(out, before, after)`` for one spatial axis."""
    if size < 1 or kernel < 1 or stride < 1:
        raise ValueError(f"same_padding needs positive size, kernel and stride, got {size}, {kernel}, {stride}")
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return out, before, total - before
