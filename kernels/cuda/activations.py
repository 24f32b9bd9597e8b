"""CUDA twin of ``activations.py``: swish, sigmoid and ReLU6 on ``numba.cuda`` device arrays.

Same functions, arguments and formulas as the CPU file (read it for the derivatives). Every kernel runs
one thread per element of the flattened array: thread ``t = cuda.grid(1)`` computes element ``t``.
The scalar rules are CUDA device functions here, because a GPU kernel cannot call the CPU's
``numba.njit`` functions.
"""

import math

from numba import cuda

from .._checks import check_device_array, check_like
from ..activations import RELU6_CAP
from ._device import THREADS_PER_BLOCK, blocks_for


@cuda.jit(device=True, cache=True)
def _sigmoid(v):
    """σ(v) without overflow: for v < 0 use e^v / (1 + e^v), where e^v ≤ 1."""
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@cuda.jit(device=True, cache=True)
def _swish(v):
    return v * _sigmoid(v)


@cuda.jit(device=True, cache=True)
def _swish_derivative(v):
    s = _sigmoid(v)
    return s * (1.0 + v * (1.0 - s))


@cuda.jit(device=True, cache=True)
def _sigmoid_derivative_from_output(y):
    return y * (1.0 - y)


@cuda.jit(device=True, cache=True)
def _relu6(v):
    return min(max(v, 0.0), RELU6_CAP)


@cuda.jit(device=True, cache=True)
def _relu6_derivative(v):
    return 1.0 if 0.0 < v < RELU6_CAP else 0.0


@cuda.jit(cache=True)
def _swish_kernel(x, y):
    t = cuda.grid(1)
    if t < x.size:
        y[t] = _swish(x[t])


@cuda.jit(cache=True)
def _swish_backward_kernel(x, dy, dx):
    t = cuda.grid(1)
    if t < x.size:
        dx[t] = dy[t] * _swish_derivative(x[t])


@cuda.jit(cache=True)
def _sigmoid_kernel(x, y):
    t = cuda.grid(1)
    if t < x.size:
        y[t] = _sigmoid(x[t])


@cuda.jit(cache=True)
def _sigmoid_backward_kernel(y, dy, dx):
    t = cuda.grid(1)
    if t < y.size:
        dx[t] = dy[t] * _sigmoid_derivative_from_output(y[t])


@cuda.jit(cache=True)
def _relu6_kernel(x, y):
    t = cuda.grid(1)
    if t < x.size:
        y[t] = _relu6(x[t])


@cuda.jit(cache=True)
def _relu6_backward_kernel(x, dy, dx):
    t = cuda.grid(1)
    if t < x.size:
        dx[t] = dy[t] * _relu6_derivative(x[t])


def _forward(kernel, name, a):
    a = check_device_array(name, a)
    out = cuda.device_array_like(a)
    kernel[blocks_for(a.size), THREADS_PER_BLOCK](a.reshape(a.size), out.reshape(a.size))
    return out


def _backward(kernel, name, a, dy):
    a = check_device_array(name, a)
    dy = check_like("dy", dy, a, check_device_array)
    dx = cuda.device_array_like(a)
    kernel[blocks_for(a.size), THREADS_PER_BLOCK](a.reshape(a.size), dy.reshape(a.size), dx.reshape(a.size))
    return dx


def swish_forward(x):
    """y = x · σ(x), elementwise. x: any shape, float32 device array; y: same shape."""
    return _forward(_swish_kernel, "x", x)


def swish_backward(x, dy):
    """dx = dy · σ(x) · (1 + x · (1 − σ(x))). x, dy: same shape; dx: that shape."""
    return _backward(_swish_backward_kernel, "x", x, dy)


def sigmoid_forward(x):
    """y = σ(x) = 1 / (1 + e^(−x)), elementwise and stable for large |x|. x: any shape."""
    return _forward(_sigmoid_kernel, "x", x)


def sigmoid_backward(y, dy):
    """dx = dy · y · (1 − y), from the forward's *output* y = σ(x). y, dy: same shape."""
    return _backward(_sigmoid_backward_kernel, "y", y, dy)


def relu6_forward(x):
    """y = min(max(x, 0), 6), elementwise. x: any shape."""
    return _forward(_relu6_kernel, "x", x)


def relu6_backward(x, dy):
    """dx = dy where 0 < x < 6, else 0 (the kinks at 0 and 6 get gradient 0). x, dy: same shape."""
    return _backward(_relu6_backward_kernel, "x", x, dy)
