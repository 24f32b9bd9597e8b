"""CUDA twin of ``dropout.py``: applying inverted-dropout and drop-connect masks to device arrays.

    dropout:       y = x · mask        dx = dy · mask        (mask: x's shape)
    drop connect:  y = x · keep[:, None, None, None]          (keep: (N,), one value per sample)

The masks themselves are drawn on the host by ``dropout.dropout_mask`` / ``dropout.drop_connect_mask``
from a seeded ``numpy.random.Generator`` and copied with ``cuda.to_device``: one seed gives the same
mask on the CPU and on the GPU, so the two backends can be compared step by step.

Thread mapping: one thread per element of the output. Drop connect is the excite multiply of
``cuda/scale.py`` with a single channel, as on the CPU.
"""

from numba import cuda

from .._checks import check_device_array
from ..dropout import _check_keep, _check_mask
from ._device import THREADS_PER_BLOCK, blocks_for
from .scale import scale_rows


@cuda.jit(cache=True)
def _multiply_kernel(a, b, out):
    """out[t] = a[t] · b[t] over flat arrays; thread t computes element t."""
    t = cuda.grid(1)
    if t < a.size:
        out[t] = a[t] * b[t]


def _apply_mask(a, a_name, mask):
    """a · mask elementwise, after checking that both are float32 device arrays of one shape."""
    a, mask = _check_mask(a, a_name, mask, check_device_array)
    out = cuda.device_array_like(a)
    flat = a.size
    _multiply_kernel[blocks_for(flat), THREADS_PER_BLOCK](a.reshape(flat), mask.reshape(flat), out.reshape(flat))
    return out


def dropout_forward(x, mask):
    """y = x · mask. x, mask: device arrays of one shape (mask from ``dropout.dropout_mask``, copied over)."""
    return _apply_mask(x, "x", mask)


def dropout_backward(mask, dy):
    """dx = dy · mask: dropped values get no gradient, kept ones are scaled like the forward."""
    return _apply_mask(dy, "dy", mask)


def _apply_keep(a, a_name, keep):
    """a[n] · keep[n] for a (N, H, W, C): the excite multiply of ``cuda/scale.py`` with a single channel."""
    a, keep = _check_keep(a, a_name, keep, check_device_array)
    batch = a.shape[0]
    return scale_rows(a.reshape(batch, -1, 1), keep.reshape(batch, 1)).reshape(a.shape)


def drop_connect_forward(x, keep):
    """y = x · keep[:, None, None, None]. x: (N, H, W, C); keep: (N,) from ``dropout.drop_connect_mask``."""
    return _apply_keep(x, "x", keep)


def drop_connect_backward(keep, dy):
    """dx = dy · keep[:, None, None, None]. dy: (N, H, W, C); keep: (N,)."""
    return _apply_keep(dy, "dy", keep)
