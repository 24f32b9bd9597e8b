"""Argument checks at the Python boundary, so a wrong shape or dtype is a clear ``ValueError``
rather than a crash inside compiled code."""

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def check_array(name, a, ndim=None, dtype=None):
    """Check that ``a`` is a float32/float64 ndarray with ``ndim`` dimensions (and ``dtype`` if given).

    Returns ``a`` as a C-contiguous array (a copy only when it was not contiguous)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}; convert with .astype(np.float32)")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but the other inputs are {np.dtype(dtype)}; use one dtype")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return np.ascontiguousarray(a)


def check_shape(name, a, expected):
    """Raise if ``a.shape`` differs from ``expected`` (``None`` entries match anything)."""
    if len(a.shape) != len(expected) or any(e is not None and s != e for s, e in zip(a.shape, expected)):
        want = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} has shape {a.shape}, expected {want}")


def check_in_place(written, read):
    """Check the arrays of an update done in place, and return the read ones C-contiguous.

    ``written``: (name, array) pairs the kernel overwrites, float ndarrays of the first one's dtype and
    C-contiguous (a contiguous copy would receive the update and be thrown away). ``read``: (name, array)
    pairs it only reads, of the same dtype; they are copied only if they were not contiguous."""
    dtype = check_array(*written[0]).dtype
    for name, a in written:
        check_array(name, a, dtype=dtype)
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous: it is updated in place")
    return tuple(check_array(name, a, dtype=dtype) for name, a in read)
