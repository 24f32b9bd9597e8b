"""Whole-tensor arithmetic between the kernels: the residual sum of an MBConv block, gradients accumulated into
a layer's ``grads``, and gradients zeroed, measured and scaled (for clipping).

    add(a, b)             returns a + b                                    (a new array)
    add_into(total, a)    total ← total + a                                (in place)
    fill(a, value)        a ← value everywhere                             (in place)
    sum_of_squares(a)     returns Σ a², accumulated in float64, as a Python float
    scale_into(a, factor) a ← factor · a                                   (in place)

On the CPU each is one NumPy expression: NumPy's vectorised loops are as fast as a Numba loop here. The
functions exist so that a layer writes ``self.backend.elementwise.add(h, x)`` and the same line runs on the
GPU (``cuda/elementwise.py``), where device arrays have no arithmetic operators.
"""

import numpy as np

from ._checks import check_array, check_like


def _check_pair(a_name, a, b_name, b, check=check_array):
    """Check two float arrays (of the kind ``check``) of one shape and dtype (the in-place functions then work
    on ``a`` itself)."""
    check_like(b_name, b, check(a_name, a), check)


def add(a, b):
    """a + b. a, b: float arrays of one shape and dtype; returns a new array of that shape."""
    _check_pair("a", a, "b", b)
    return a + b


def add_into(total, a):
    """total += a, in place. total, a: float arrays of one shape and dtype."""
    _check_pair("total", total, "a", a)
    total += a


def fill(a, value):
    """Set every element of the float array ``a`` to ``value``, in place."""
    check_array("a", a)
    a.fill(value)


def sum_of_squares(a):
    """Σ a² over every element of the float array ``a``, accumulated in float64; a Python float."""
    flat = check_array("a", a).ravel()
    return float(np.dot(flat.astype(np.float64), flat))


def scale_into(a, factor):
    """a *= factor, in place, for the float array ``a``."""
    check_array("a", a)
    a *= factor
