"""Batch norm fused with the activation after it: the fast path the network trains with.

``batchnorm.py`` and ``activations.py`` are the readable reference, one operation each. In EfficientNet
almost every batch norm is followed by swish (ReLU6 in the Lite models), and the pair is the largest cost
of a training step after the convolutions: both are cheap per element but each pass reads and writes the
whole activation. Fusing them computes, per channel ``c`` of x (M, C) with M = N·H·W,

    μ_c, σ²_c  as in batchnorm.py             scale_c = γ_c / sqrt(σ²_c + ε),  shift_c = β_c − μ_c · scale_c
    u = x · scale + shift                     (the batch norm's output, never stored)
    z = act(u)                                act ∈ {identity, swish u·σ(u), relu6 min(max(u, 0), 6)}

and backward, with dz = ∂L/∂z,

    g = dz · act'(u)                          swish'(u) = s · (1 + u · (1 − s)) with s = σ(u)
    then batch norm's backward with g in the place of dy (see batchnorm.py).

So the layer keeps only x (and μ, σ²) for the backward, which recomputes u and σ(u) from them: an
activation-sized array less held per layer, for one more exponential per element.

The activations are ``activations.py``'s own scalar rules, σ included, so the fused and the standalone
activations agree bitwise. σ's exponential, ``fastexp.exp``, is computed inside the loops: it is plain
arithmetic that LLVM vectorises (``math.exp`` would be a scalar C call per element, ``np.exp`` a
separate pass on one core). So the
training forward reads x twice (once for μ and σ² together, ``_moments``, once to write z), evaluation
once, the backward's first pass computes g and its sums in one, and σ costs a few vector instructions per
element, on every core. The arithmetic stays in x's dtype: float32 in, float32 throughout.

Loops run over rows (contiguous in memory, so the channel loop vectorises) instead of over channels.
The per-channel sums are made deterministic and independent of the thread count by splitting the rows
into ``ROW_BLOCKS`` fixed blocks, summing each block in float64, then adding the blocks in order.
"""

import numpy as np
from numba import njit, prange

from ._checks import check_array, check_like
from .activations import _relu6, _relu6_derivative, _swish, _swish_derivative
from .batchnorm import _check_inputs

IDENTITY, SWISH, RELU6 = 0, 1, 2
ACTIVATIONS = {None: IDENTITY, "swish": SWISH, "relu6": RELU6}
ROW_BLOCKS = 64


@njit(cache=True)
def _block(k, rows):
    """Rows [start, stop) of block k of ROW_BLOCKS."""
    size = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    return min(k * size, rows), min((k + 1) * size, rows)


@njit(parallel=True, cache=True)
def _shifted_sums(x, partial):
    """partial[k] = (Σ d, Σ d²) over block k of ROW_BLOCKS blocks of rows of x (M, C), per channel, with
    d = x − x[0]: in float64, one pass over x (see ``_moments``)."""
    rows, channels = x.shape
    for k in prange(ROW_BLOCKS):
        partial[k] = 0.0
        start, stop = _block(k, rows)
        for m in range(start, stop):
            for c in range(channels):
                d = np.float64(x[m, c]) - x[0, c]
                partial[k, 0, c] += d
                partial[k, 1, c] += d * d


def _moments(x):
    """(mean, biased var) (C,) of x (M, C) over M, in x's dtype, from one pass over x.

    The pass sums d = x − K and d² per channel, K = x[0] (the first row: the "shifted data" algorithm), in
    float64 over ROW_BLOCKS fixed blocks of rows added in order; then mean = K + Σd / M and
    var = Σd² / M − (Σd / M)². Without the shift that difference of two large sums would cancel when the mean
    is far from zero (batch norm's inputs often are); with it, only when the first row is far from the mean in
    units of σ: the relative error of var is about ε₆₄ · ((μ − K) / σ)², below float32's rounding unless x[0]
    lies thousands of σ away."""
    partial = np.empty((ROW_BLOCKS, 2, x.shape[1]))
    _shifted_sums(x, partial)
    total, squares = _add_blocks(partial) / len(x)
    return (x[0] + total).astype(x.dtype), np.maximum(squares - total * total, 0.0).astype(x.dtype)


@njit(cache=True)
def _add_blocks(partial):
    """Σ_k partial[k], the blocks added in order (the same sums for any thread count). A loop compiled here:
    NumPy's 63 small additions cost ~45 µs of one core per call (a fifth of a small layer's whole pass)."""
    total = partial[0].copy()
    for k in range(1, partial.shape[0]):
        total += partial[k]
    return total


@njit(cache=True, inline="always")
def _activate(u, activation):
    """act(u) for the activation code ``activation`` (IDENTITY, SWISH or RELU6), in u's dtype."""
    if activation == SWISH:
        return _swish(u)
    if activation == RELU6:
        return _relu6(u)
    return u


@njit(cache=True, inline="always")
def _activation_derivative(u, activation):
    """act'(u) for the activation code ``activation``, in u's dtype."""
    if activation == SWISH:
        return _swish_derivative(u)
    if activation == RELU6:
        return _relu6_derivative(u)
    return type(u)(1.0)


# The row loops below test the activation per element (in _activate), but the kernels call them with the
# activation as a constant, once per activation, and Numba inlines them (``inline="always"``): each call
# becomes a loop for one activation, without the test, which LLVM vectorises. With the test on a variable
# left in the loop, LLVM kept it scalar (or, all inlined, vectorised the backward worse: 1.5–2× slower).

@njit(cache=True, inline="always")
def _forward_row(x, m, scale, shift, activation, z):
    """Row m of z = act(x · scale + shift), for x, z (M, C) and per-channel scale, shift (C,)."""
    for c in range(x.shape[1]):
        z[m, c] = _activate(x[m, c] * scale[c] + shift[c], activation)


@njit(cache=True, inline="always")
def _gradient_row(x, m, scale, shift, dz, activation, g):
    """Row m of g = dz · act'(x · scale + shift), the gradient with respect to the batch norm's output."""
    for c in range(x.shape[1]):
        g[m, c] = dz[m, c] * _activation_derivative(x[m, c] * scale[c] + shift[c], activation)


@njit(parallel=True, cache=True)
def _forward(x, scale, shift, activation, z):
    """z = act(x · scale + shift) for x, z (M, C) and per-channel scale, shift (C,)."""
    for m in prange(x.shape[0]):
        if activation == SWISH:
            _forward_row(x, m, scale, shift, SWISH, z)
        elif activation == RELU6:
            _forward_row(x, m, scale, shift, RELU6, z)
        else:
            _forward_row(x, m, scale, shift, IDENTITY, z)


@njit(parallel=True, cache=True)
def _gradient_sums(x, scale, shift, mean, inv_std, dz, activation, g, partial):
    """g = dz · act'(u) (M, C) and partial[k] = (Σ g, Σ g · x̂) over block k of the rows, per channel (float64)."""
    rows, channels = x.shape
    for k in prange(ROW_BLOCKS):
        partial[k] = 0.0
        start, stop = _block(k, rows)
        for m in range(start, stop):
            if activation == SWISH:
                _gradient_row(x, m, scale, shift, dz, SWISH, g)
            elif activation == RELU6:
                _gradient_row(x, m, scale, shift, dz, RELU6, g)
            else:
                _gradient_row(x, m, scale, shift, dz, IDENTITY, g)
            for c in range(channels):
                partial[k, 0, c] += g[m, c]
                partial[k, 1, c] += g[m, c] * ((x[m, c] - mean[c]) * inv_std[c])


@njit(parallel=True, cache=True)
def _input_gradient(x, scale, mean, inv_std, mean_g, mean_gx, g):
    """g (M, C) ← dx = γ/σ · (g − mean(g) − x̂ · mean(g · x̂)), in place."""
    for m in prange(x.shape[0]):
        for c in range(x.shape[1]):
            xhat = (x[m, c] - mean[c]) * inv_std[c]
            g[m, c] = scale[c] * (g[m, c] - mean_g[c] - xhat * mean_gx[c])


def _check(x, eps, activation, check=check_array, **vectors):
    """Check the common arguments (batch norm's own checks, plus the activation's name) for arrays of the kind
    ``check``; return x, its (M, C) view and the (C,) vectors in order."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    return _check_inputs(x, eps, check, **vectors)


def _scale_shift(gamma, beta, mean, var, eps):
    """scale = γ / sqrt(σ² + ε), shift = β − μ · scale, in x's dtype; also 1 / sqrt(σ² + ε)."""
    inv_std = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    scale = gamma * inv_std
    return scale.astype(gamma.dtype), (beta - mean * scale).astype(gamma.dtype), inv_std.astype(gamma.dtype)


def batchnorm_act_train_forward(x, gamma, beta, eps, activation):
    """Batch norm with this batch's statistics, then ``activation`` (None, "swish" or "relu6").

    x: (..., C); gamma, beta: (C,) of x's dtype. Returns ``(z, mean, var)``: z like x; the batch mean and
    biased variance (C,), which the backward needs with x.
    """
    x, x2, (gamma, beta) = _check(x, eps, activation, gamma=gamma, beta=beta)
    mean, var = _moments(x2)
    scale, shift, _ = _scale_shift(gamma, beta, mean, var, eps)
    z = np.empty_like(x)
    _forward(x2, scale, shift, ACTIVATIONS[activation], z.reshape(x2.shape))
    return z, mean, var


def batchnorm_act_eval_forward(x, gamma, beta, mean, var, eps, activation):
    """Batch norm with given (running) statistics, then ``activation``. Shapes as the train forward; returns z."""
    x, x2, (gamma, beta, mean, var) = _check(x, eps, activation, gamma=gamma, beta=beta, mean=mean, var=var)
    scale, shift, _ = _scale_shift(gamma, beta, mean, var, eps)
    z = np.empty_like(x)
    _forward(x2, scale, shift, ACTIVATIONS[activation], z.reshape(x2.shape))
    return z


def batchnorm_act_train_backward(x, gamma, beta, mean, var, eps, dz, activation):
    """Training-mode backward (through the batch statistics) of ``batchnorm_act_train_forward``.

    x, dz: (..., C); gamma, beta, and the forward's mean, var: (C,). Returns ``(dx, dgamma, dbeta)``.
    For swish, σ(u) is recomputed here rather than kept from the forward: one more exponential per
    element, one activation-sized array less held between the passes.
    """
    x, x2, (gamma, beta, mean, var) = _check(x, eps, activation, gamma=gamma, beta=beta, mean=mean, var=var)
    dz = check_like("dz", dz, x)
    scale, shift, inv_std = _scale_shift(gamma, beta, mean, var, eps)
    dx = np.empty_like(x)
    dx2, partial = dx.reshape(x2.shape), np.empty((ROW_BLOCKS, 2, x2.shape[1]))
    # pass 1: g = dz · act'(u) into dx, and its sums; pass 2: dx from g, in place
    _gradient_sums(x2, scale, shift, mean, inv_std, dz.reshape(x2.shape), ACTIVATIONS[activation], dx2, partial)
    sums = _add_blocks(partial)                       # (Σ g, Σ g · x̂) = (∂L/∂β, ∂L/∂γ)
    mean_g, mean_gx = (sums / len(x2)).astype(x.dtype)
    _input_gradient(x2, scale, mean, inv_std, mean_g, mean_gx, dx2)
    return dx, sums[1].astype(x.dtype), sums[0].astype(x.dtype)
