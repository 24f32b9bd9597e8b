"""Elementwise activations: swish (EfficientNet's activation), sigmoid (the squeeze-and-excitation gate), ReLU6.

Every function takes an array of any shape and works element by element:

    swish(x)   = x · σ(x)                  swish'(x) = σ(x) · (1 + x · (1 − σ(x)))
    σ(x)       = 1 / (1 + e^(−x))          σ'(x)     = y · (1 − y)        with y = σ(x)
    relu6(x)   = min(max(x, 0), 6)         relu6'(x) = 1 if 0 < x < 6 else 0

A backward pass is the chain rule for an elementwise map: ``dx = dy · f'(·)``.

Each rule is a small scalar function with its own three-line parallel loop over the flattened array.
(A single loop taking the scalar function as an argument or closure would be shorter, but Numba cannot
cache such a loop on disk, so it would recompile in every process.)
"""

import math

import numpy as np
from numba import njit, prange

from ._checks import check_array, check_shape

RELU6_CAP = 6.0


@njit(cache=True)
def _sigmoid(v):
    """σ(v) without overflow: for v < 0 use e^v / (1 + e^v), where e^v ≤ 1."""
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@njit(cache=True)
def _swish(v):
    return v * _sigmoid(v)


@njit(cache=True)
def _swish_derivative(v):
    s = _sigmoid(v)
    return s * (1.0 + v * (1.0 - s))


@njit(cache=True)
def _sigmoid_derivative_from_output(y):
    return y * (1.0 - y)


@njit(cache=True)
def _relu6(v):
    return min(max(v, 0.0), RELU6_CAP)


@njit(cache=True)
def _relu6_derivative(v):
    return 1.0 if 0.0 < v < RELU6_CAP else 0.0


@njit(parallel=True, cache=True)
def _swish_loop(x, y):
    for i in prange(x.size):
        y[i] = _swish(x[i])


@njit(parallel=True, cache=True)
def _swish_backward_loop(x, dy, dx):
    for i in prange(x.size):
        dx[i] = dy[i] * _swish_derivative(x[i])


@njit(parallel=True, cache=True)
def _sigmoid_loop(x, y):
    for i in prange(x.size):
        y[i] = _sigmoid(x[i])


@njit(parallel=True, cache=True)
def _sigmoid_backward_loop(y, dy, dx):
    for i in prange(y.size):
        dx[i] = dy[i] * _sigmoid_derivative_from_output(y[i])


@njit(parallel=True, cache=True)
def _relu6_loop(x, y):
    for i in prange(x.size):
        y[i] = _relu6(x[i])


@njit(parallel=True, cache=True)
def _relu6_backward_loop(x, dy, dx):
    for i in prange(x.size):
        dx[i] = dy[i] * _relu6_derivative(x[i])


def _forward(loop, name, a):
    a = check_array(name, a)
    out = np.empty_like(a)
    loop(a.reshape(-1), out.reshape(-1))
    return out


def _backward(loop, name, a, dy):
    a = check_array(name, a)
    dy = check_array("dy", dy, dtype=a.dtype)
    check_shape("dy", dy, a.shape)
    dx = np.empty_like(a)
    loop(a.reshape(-1), dy.reshape(-1), dx.reshape(-1))
    return dx


def swish_forward(x):
    """y = x · σ(x), elementwise. x: any shape, float32/float64; y: same shape and dtype."""
    return _forward(_swish_loop, "x", x)


def swish_backward(x, dy):
    """dx = dy · σ(x) · (1 + x · (1 − σ(x))). x, dy: same shape; dx: that shape."""
    return _backward(_swish_backward_loop, "x", x, dy)


def sigmoid_forward(x):
    """y = σ(x) = 1 / (1 + e^(−x)), elementwise and stable for large |x|. x: any shape."""
    return _forward(_sigmoid_loop, "x", x)


def sigmoid_backward(y, dy):
    """dx = dy · y · (1 − y), from the forward's *output* y = σ(x). y, dy: same shape."""
    return _backward(_sigmoid_backward_loop, "y", y, dy)


def relu6_forward(x):
    """y = min(max(x, 0), 6), elementwise. x: any shape."""
    return _forward(_relu6_loop, "x", x)


def relu6_backward(x, dy):
    """dx = dy where 0 < x < 6, else 0 (the kinks at 0 and 6 get gradient 0). x, dy: same shape."""
    return _backward(_relu6_backward_loop, "x", x, dy)
