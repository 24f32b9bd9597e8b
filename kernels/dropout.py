"""Inverted dropout and drop connect (stochastic depth), with the randomness passed in explicitly.

Inverted dropout keeps each value with probability 1 − rate and scales the kept ones by 1 / (1 − rate),
so the expected output equals the input and evaluation needs no rescaling:

    mask = 1 / (1 − rate) with probability 1 − rate, else 0        y = x · mask        dx = dy · mask

Drop connect is the same idea applied to whole samples of an MBConv block's residual branch: one mask
value per sample, ``keep`` of shape (N,), multiplies all of that sample's (H, W, C) values.

The masks are drawn from a ``numpy.random.Generator`` handed in by the caller, so a fixed seed gives a
fixed mask and a test can reproduce it; applying a mask is a Numba loop.
"""

import numpy as np
from numba import njit

from ._checks import FLOAT_DTYPES, check_array, check_like, check_shape
from .scale import scale_rows


@njit(cache=True)
def _multiply(a, b, out):
    """out[i] = a[i] · b[i] over flat arrays. One thread: dropout acts on the pooled features (N, F), where a
    parallel loop's start would cost about what it saves."""
    for i in range(a.size):
        out[i] = a[i] * b[i]


def dropout_mask(rng, shape, rate, dtype=np.float32):
    """A mask of ``shape`` with entries 0 (probability ``rate``) or 1 / (1 − rate).

    rng: numpy Generator; rate: in [0, 1) (0 gives all ones); dtype: float32 or float64."""
    if not isinstance(rng, np.random.Generator):
        got = type(rng).__name__
        raise TypeError(f"rng must be a numpy.random.Generator, e.g. np.random.default_rng(seed), got {got}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    if np.dtype(dtype) not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    kept = rng.random(shape) < 1.0 - rate
    return np.where(kept, 1.0 / (1.0 - rate), 0.0).astype(dtype)


def _check_mask(a, a_name, mask, check=check_array):
    """Check that ``a`` and ``mask`` are arrays (of the kind ``check``) of one shape and dtype; return both."""
    a = check(a_name, a)
    return a, check_like("mask", mask, a, check)


def _apply_mask(a, a_name, mask):
    """a · mask elementwise, after checking that both have one shape and dtype."""
    a, mask = _check_mask(a, a_name, mask)
    out = np.empty_like(a)
    _multiply(a.reshape(-1), mask.reshape(-1), out.reshape(-1))
    return out


def dropout_forward(x, mask):
    """y = x · mask. x, mask: the same shape and dtype (mask from ``dropout_mask``)."""
    return _apply_mask(x, "x", mask)


def dropout_backward(mask, dy):
    """dx = dy · mask: dropped values get no gradient, kept ones are scaled like the forward."""
    return _apply_mask(dy, "dy", mask)


def drop_connect_mask(rng, batch, rate, dtype=np.float32):
    """keep: (batch,), one dropout-mask value per sample: 0 or 1 / (1 − rate)."""
    if not (isinstance(batch, (int, np.integer)) and batch >= 1):
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    return dropout_mask(rng, (batch,), rate, dtype)


def _check_keep(a, a_name, keep, check=check_array):
    """Check ``a`` (N, H, W, C) and ``keep`` (N,), arrays of the kind ``check`` and one dtype; return both."""
    a = check(a_name, a, ndim=4)
    keep = check("keep", keep, ndim=1, dtype=a.dtype)
    check_shape("keep", keep, (a.shape[0],))
    return a, keep


def _apply_keep(a, a_name, keep):
    """a[n] · keep[n] for a (N, H, W, C): the excite multiply of ``scale.py`` with a single channel."""
    a, keep = _check_keep(a, a_name, keep)
    batch = a.shape[0]
    return scale_rows(a.reshape(batch, -1, 1), keep.reshape(batch, 1)).reshape(a.shape)


def drop_connect_forward(x, keep):
    """y = x · keep[:, None, None, None]. x: (N, H, W, C); keep: (N,) from ``drop_connect_mask``."""
    return _apply_keep(x, "x", keep)


def drop_connect_backward(keep, dy):
    """dx = dy · keep[:, None, None, None]. dy: (N, H, W, C); keep: (N,)."""
    return _apply_keep(dy, "dy", keep)
