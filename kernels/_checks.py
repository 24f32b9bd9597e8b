"""Argument checks at the Python boundary, so a wrong shape or dtype is a clear ``ValueError`` or
``TypeError`` rather than a crash inside compiled code.

A kernel takes one of two kinds of array, and each kind has its check:

    check_array          NumPy arrays (the CPU kernels): float32 or float64
    check_device_array   numba.cuda device arrays (the twins in ``cuda/``): float32, C-contiguous

Both have the signature ``check(name, a, ndim=None, dtype=None)`` and return the array to use. A
kernel file's own checks (``_check_inputs`` and the like) take the kind as their argument ``check``,
``check_array`` by default, so the CPU function and its CUDA twin run the very same checks, written
once. Nothing here imports ``numba.cuda``: a device array is recognised by its ``copy_to_host``.
"""

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def _check_ndim(name, a, ndim):
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")


def check_array(name, a, ndim=None, dtype=None):
    """Check that ``a`` is a float32/float64 ndarray with ``ndim`` dimensions (and ``dtype`` if given).

    Returns ``a`` as a C-contiguous array (a copy only when it was not contiguous)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}; convert with .astype(np.float32)")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but the other inputs are {np.dtype(dtype)}; use one dtype")
    _check_ndim(name, a, ndim)
    return np.ascontiguousarray(a)


def check_device_array(name, a, ndim=None, dtype=None):
    """Check that ``a`` is a C-contiguous float32 ``numba.cuda`` device array with ``ndim`` dimensions.

    ``dtype`` (the other inputs' dtype) is there for ``check_array``'s signature: on the device every
    array is float32, so the float32 check covers it. Returns ``a`` itself."""
    if not hasattr(a, "copy_to_host"):
        raise TypeError(f"{name} must be a numba.cuda device array (cuda.to_device(a)), got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {a.dtype}; convert before cuda.to_device")
    _check_ndim(name, a, ndim)
    if not a.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous; copy it with cuda.to_device(np.ascontiguousarray(...))")
    return a


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


def check_like(name, b, a, check=check_array):
    """Check that ``b`` is an array of ``a``'s kind, dtype and shape (``a`` already checked); return it."""
    b = check(name, b, dtype=a.dtype)
    check_shape(name, b, a.shape)
    return b
