"""Whole-tensor arithmetic between the kernels: the residual sum of an MBConv block, gradients accumulated into
a layer's ``grads``, and gradients zeroed, measured and scaled (for clipping).

    add(a, b)             returns a + b                                    (a new array)
    add_into(total, a)    total ← total + a                                (in place)
    fill(a, value)        a ← value everywhere                             (in place)
    sum_of_squares(a)     returns Σ a², accumulated in float64, as a Python float
    scale_into(a, factor) a ← factor · a                                   (in place)

On the CPU each is one NumPy expression, except two Numba loops. ``add_into``: NumPy's loop runs on one core,
and a training step adds activation-sized arrays (a residual's gradient, the two paths into a
squeeze-and-excitation input), where a parallel loop is 1.4–1.7× faster from memory (measured on the 2-core
Intel Xeon, 0.8–4.7 M elements); below ``_threads.MIN_PARALLEL_SIZE`` (a small layer's gradient added into
``grads``) it stays NumPy's one-thread loop. ``sum_of_squares``: a float64 sum of a float32 array in NumPy
needs a float64 copy first (``np.dot`` of mixed dtypes makes two), which cost more than the sum itself (6.9 ms
per B0 training step for the global gradient norm; the loop below reads each gradient once). The functions
exist so that a layer writes ``self.backend.elementwise.add(h, x)`` and the same line runs on the GPU
(``cuda/elementwise.py``), where device arrays have no arithmetic operators.
"""

import numpy as np
from numba import njit, prange

from . import _threads
from ._checks import check_array, check_in_place, check_like, check_shape


def _check_pair(a_name, a, b_name, b, check=check_array):
    """Check two float arrays (of the kind ``check``) of one shape and dtype (the in-place functions then work
    on ``a`` itself)."""
    check_like(b_name, b, check(a_name, a), check)


def add(a, b):
    """a + b. a, b: float arrays of one shape and dtype; returns a new array of that shape."""
    _check_pair("a", a, "b", b)
    return a + b


@njit(parallel=True, cache=True)
def _add_into(total, a):
    """total[i] += a[i] over flat arrays, in parallel."""
    for i in prange(total.size):
        total[i] += a[i]


def add_into(total, a):
    """total += a, in place. total: a C-contiguous float array; a: a float array of its shape and dtype."""
    (a,) = check_in_place([("total", total)], [("a", a)])
    check_shape("a", a, total.shape)
    if total.size < _threads.MIN_PARALLEL_SIZE:
        total += a                      # NumPy's loop: for a small array, less than a Numba call costs to start
    else:
        _add_into(total.reshape(-1), a.reshape(-1))


def fill(a, value):
    """Set every element of the float array ``a`` to ``value``, in place."""
    check_array("a", a)
    a.fill(value)


@njit(cache=True, fastmath={"reassoc", "contract"})
def _sum_of_squares(flat):
    """Σ flat[i]², each square and the sum in float64. ``reassoc`` lets LLVM split the sum into SIMD lanes
    (partial sums added at the end; ``contract``: each square added in one FMA); the order then depends only on
    the length, so the result is the same on every call. One thread: the gradients are many small tensors,
    where a parallel loop's start costs more."""
    total = 0.0
    for i in range(flat.size):
        value = np.float64(flat[i])
        total += value * value
    return total


def sum_of_squares(a):
    """Σ a² over every element of the float array ``a``, accumulated in float64; a Python float."""
    return float(_sum_of_squares(check_array("a", a).ravel()))


def scale_into(a, factor):
    """a *= factor, in place, for the float array ``a``."""
    check_array("a", a)
    a *= factor
