"""Elementwise activations: swish (EfficientNet's activation), sigmoid (the squeeze-and-excitation gate), ReLU6.

Every function takes an array of any shape and works element by element:

    swish(x)   = x · σ(x)                  swish'(x) = σ(x) · (1 + x · (1 − σ(x)))
    σ(x)       = 1 / (1 + e^(−x))          σ'(x)     = y · (1 − y)        with y = σ(x)
    relu6(x)   = min(max(x, 0), 6)         relu6'(x) = 1 if 0 < x < 6 else 0

A backward pass is the chain rule for an elementwise map: ``dx = dy · f'(·)``.

The scalar functions (``_sigmoid``, ``_swish``, ``_relu6`` and their derivatives) are the ones the fused
``batchnorm_act.py`` calls, so the standalone activations equal the fused kernel's bitwise. σ's
exponential is ``fastexp.exp``, which vectorises and is within 1 ulp of ``math.exp`` (measured over
dense grids); the σ it gives is within 2 ulp of a ``math.exp``-based σ in float64 and 3 ulp in float32,
where the arithmetic stays in float32.

Each rule is a small scalar function with its own three-line loop over the flattened array. (A single loop
taking the scalar function as an argument or closure would be shorter, but Numba cannot cache such a loop on
disk, so it would recompile in every process.) The loops run on one thread: in the network the standalone
activations only see squeeze-and-excitation's pooled vectors (N, C), a few thousand values, where starting a
parallel loop costs about what it saves, and compiling one costs three times a plain loop (a third of a
second, each, of a fresh install's first step; ``tinyeffnet.warmup``). The feature maps' activations run
fused into the batch norm before them (``batchnorm_act.py``), in parallel.
"""

import numpy as np
from numba import njit

from ._checks import check_array, check_like
from .fastexp import exp

RELU6_CAP = 6.0


# The scalar rules, shared with the fused batch norm + activation (``batchnorm_act.py``): one σ, one
# swish, one ReLU6 in the whole CPU path, in the argument's dtype (float32 in, float32 throughout).
# Numba caches a kernel keyed on its own file: after editing them, delete kernels/__pycache__.

@njit(cache=True, error_model="numpy")
def _sigmoid(u):
    """σ(u) = 1 / (1 + e^(−u)) for u ≥ 0 and e^u / (1 + e^u) for u < 0: with e = e^(−|u|) ≤ 1 it never
    overflows, and large negative u keep their tiny σ to full relative precision.

    e is ``fastexp.exp``, within 0.9 ulp of the exact e^x and 1 ulp of ``math.exp``, which, unlike
    ``math.exp``, vectorises inside a loop; the branch is a select between two numerators, which does not
    stop it. ``error_model="numpy"``: Python's rules would test the divisor for zero (to raise
    ZeroDivisionError), a branch that stops LLVM vectorising the loop; 1 + e ≥ 1 is never zero."""
    one = type(u)(1.0)
    e = exp(-abs(u))
    return (one if u >= 0 else e) / (one + e)


@njit(cache=True)
def _swish(u):
    """u · σ(u)."""
    return u * _sigmoid(u)


@njit(cache=True)
def _swish_derivative(u):
    """σ(u) · (1 + u · (1 − σ(u)))."""
    real = type(u)
    s = _sigmoid(u)
    return s * (real(1.0) + u * (real(1.0) - s))


@njit(cache=True)
def _relu6(u):
    """min(max(u, 0), 6)."""
    real = type(u)
    return min(max(u, real(0.0)), real(RELU6_CAP))


@njit(cache=True)
def _relu6_derivative(u):
    """1 for 0 < u < 6, else 0 (the kinks get 0)."""
    real = type(u)
    return real(1.0) if real(0.0) < u < real(RELU6_CAP) else real(0.0)


@njit(cache=True)
def _sigmoid_derivative_from_output(y):
    return y * (1.0 - y)


@njit(cache=True)
def _swish_loop(x, y):
    for i in range(x.size):
        y[i] = _swish(x[i])


@njit(cache=True)
def _swish_backward_loop(x, dy, dx):
    for i in range(x.size):
        dx[i] = dy[i] * _swish_derivative(x[i])


@njit(cache=True)
def _sigmoid_loop(x, y):
    for i in range(x.size):
        y[i] = _sigmoid(x[i])


@njit(cache=True)
def _sigmoid_backward_loop(y, dy, dx):
    for i in range(y.size):
        dx[i] = dy[i] * _sigmoid_derivative_from_output(y[i])


@njit(cache=True)
def _relu6_loop(x, y):
    for i in range(x.size):
        y[i] = _relu6(x[i])


@njit(cache=True)
def _relu6_backward_loop(x, dy, dx):
    for i in range(x.size):
        dx[i] = dy[i] * _relu6_derivative(x[i])


def _forward(loop, name, a):
    a = check_array(name, a)
    out = np.empty_like(a)
    loop(a.reshape(-1), out.reshape(-1))
    return out


def _backward(loop, name, a, dy):
    a = check_array(name, a)
    dy = check_like("dy", dy, a)
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
