"""CUDA twin of ``elementwise.py``: whole-tensor arithmetic on device arrays.

Same functions, arguments and results as the CPU file. Thread mapping: one thread per element of the
flattened array, except ``sum_of_squares``, which runs **one block** whose threads stride over the whole
array and add their partial sums with ``block_sum`` (float64, a fixed order); its total comes back to the
host as a Python float, as on the CPU.
"""

import numpy as np
from numba import cuda

from .._checks import check_device_array
from ..elementwise import _check_pair
from ._device import THREADS_PER_BLOCK, block_sum, blocks_for


@cuda.jit(cache=True)
def _add_kernel(a, b, out):
    t = cuda.grid(1)
    if t < a.size:
        out[t] = a[t] + b[t]


@cuda.jit(cache=True)
def _add_into_kernel(total, a):
    t = cuda.grid(1)
    if t < total.size:
        total[t] += a[t]


@cuda.jit(cache=True)
def _fill_kernel(a, value):
    t = cuda.grid(1)
    if t < a.size:
        a[t] = value


@cuda.jit(cache=True)
def _scale_into_kernel(a, factor):
    t = cuda.grid(1)
    if t < a.size:
        a[t] *= factor


@cuda.jit(cache=True)
def _sum_of_squares_kernel(a, out):
    """out[0] = Σ a[i]², by the single block launched."""
    partial = 0.0
    for i in range(cuda.threadIdx.x, a.size, THREADS_PER_BLOCK):
        partial += a[i] * a[i]
    total = block_sum(partial)
    if cuda.threadIdx.x == 0:
        out[0] = total


def _flat(name, a):
    """The checked device array ``a`` as a 1-D view."""
    a = check_device_array(name, a)
    return a.reshape(a.size)


def _flat_pair(a_name, a, b_name, b):
    """Check two device arrays of one shape; return their 1-D views."""
    _check_pair(a_name, a, b_name, b, check_device_array)
    return a.reshape(a.size), b.reshape(b.size)


def add(a, b):
    """a + b. a, b: float32 device arrays of one shape; returns a new device array of that shape."""
    flat_a, flat_b = _flat_pair("a", a, "b", b)
    out = cuda.device_array_like(a)
    _add_kernel[blocks_for(a.size), THREADS_PER_BLOCK](flat_a, flat_b, out.reshape(a.size))
    return out


def add_into(total, a):
    """total += a, in place. total, a: float32 device arrays of one shape."""
    flat_total, flat_a = _flat_pair("total", total, "a", a)
    _add_into_kernel[blocks_for(total.size), THREADS_PER_BLOCK](flat_total, flat_a)


def fill(a, value):
    """Set every element of the float32 device array ``a`` to ``value``, in place."""
    flat = _flat("a", a)
    _fill_kernel[blocks_for(a.size), THREADS_PER_BLOCK](flat, np.float32(value))


def sum_of_squares(a):
    """Σ a² over every element of the float32 device array ``a``, accumulated in float64; a Python float."""
    flat = _flat("a", a)
    out = cuda.device_array(1, np.float64)
    _sum_of_squares_kernel[1, THREADS_PER_BLOCK](flat, out)
    return float(out.copy_to_host()[0])


def scale_into(a, factor):
    """a *= factor, in place, for the float32 device array ``a``."""
    flat = _flat("a", a)
    _scale_into_kernel[blocks_for(a.size), THREADS_PER_BLOCK](flat, np.float32(factor))
