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
activation-sized array less held per layer, for one more exponential per element (computed by NumPy:
see ``_sigmoid``).

Loops run over rows (contiguous in memory, so the channel loop vectorises) instead of over channels.
The per-channel sums are made deterministic and independent of the thread count by splitting the rows
into ``ROW_BLOCKS`` fixed blocks, summing each block in float64, then adding the blocks in order.
"""

import math

import numpy as np
from numba import njit, prange

from ._checks import check_array, check_shape
from .batchnorm import _check_channel_vectors, _check_eps, _check_x
from .activations import RELU6_CAP

IDENTITY, SWISH, RELU6 = 0, 1, 2
ACTIVATIONS = {None: IDENTITY, "swish": SWISH, "relu6": RELU6}
ROW_BLOCKS = 64


@njit(cache=True)
def _block(k, rows):
    """Rows [start, stop) of block k of ROW_BLOCKS."""
    size = (rows + ROW_BLOCKS - 1) // ROW_BLOCKS
    return min(k * size, rows), min((k + 1) * size, rows)


@njit(parallel=True, cache=True)
def _moments(x, mean, var):
    """mean[c] and biased var[c] of x (M, C) over M: two passes, float64 block sums."""
    rows, channels = x.shape
    partial = np.zeros((ROW_BLOCKS, channels))
    for k in prange(ROW_BLOCKS):
        start, stop = _block(k, rows)
        for m in range(start, stop):
            for c in range(channels):
                partial[k, c] += x[m, c]
    mu = partial.sum(axis=0) / rows
    partial[:] = 0.0
    for k in prange(ROW_BLOCKS):
        start, stop = _block(k, rows)
        for m in range(start, stop):
            for c in range(channels):
                d = x[m, c] - mu[c]
                partial[k, c] += d * d
    sq = partial.sum(axis=0)
    for c in range(channels):
        mean[c] = mu[c]
        var[c] = sq[c] / rows


@njit(parallel=True, cache=True)
def _affine(x, scale, shift, u):
    """u = x · scale + shift for x, u (M, C) and per-channel scale, shift (C,)."""
    rows, channels = x.shape
    for m in prange(rows):
        for c in range(channels):
            u[m, c] = x[m, c] * scale[c] + shift[c]


def _sigmoid(u, out):
    """out = σ(u) = 1 / (1 + e^(−u)), elementwise; ``out`` may be ``u`` itself.

    Plain NumPy on purpose: NumPy's exp is vectorised (SIMD), while a Numba loop calls the scalar
    libm exp per element (Numba vectorises it only with Intel's SVML library); measured on B0's largest
    activation (128×16×16×96 float32) NumPy's exp took about a third of the time of a 2-thread Numba loop."""
    np.negative(u, out=out)
    with np.errstate(over="ignore"):                # e^(−u) = inf for u < −88 (float32): σ = 0, no NaN
        np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def _activate(u, activation):
    """Apply the activation to u in place."""
    if activation == "relu6":
        np.clip(u, 0.0, RELU6_CAP, out=u)
    elif activation == "swish":
        u *= _sigmoid(u, np.empty_like(u))


@njit(parallel=True, cache=True)
def _backward(x, scale, shift, mean, inv_std, dz, activation, dx, sums):
    """dx (M, C) from dz, and sums[0] = Σ g, sums[1] = Σ g · x̂ per channel (float64).

    For swish, dx must hold σ(u) on entry: pass 1 reads it before writing g over it."""
    rows, channels = x.shape
    one, zero = x.dtype.type(1.0), x.dtype.type(0.0)
    partial = np.zeros((ROW_BLOCKS, 2, channels))
    for k in prange(ROW_BLOCKS):                        # pass 1: g = dz · act'(u) into dx, and the sums
        start, stop = _block(k, rows)
        for m in range(start, stop):
            for c in range(channels):
                g = dz[m, c]
                if activation == SWISH:
                    u = x[m, c] * scale[c] + shift[c]
                    s = dx[m, c]
                    g *= s * (one + u * (one - s))
                elif activation == RELU6:
                    u = x[m, c] * scale[c] + shift[c]
                    g = g if zero < u < RELU6_CAP else zero
                dx[m, c] = g
                partial[k, 0, c] += g
                partial[k, 1, c] += g * ((x[m, c] - mean[c]) * inv_std[c])
    total = partial.sum(axis=0)
    sums[:] = total
    mean_g = (total[0] / rows).astype(x.dtype)
    mean_gx = (total[1] / rows).astype(x.dtype)
    for m in prange(rows):                              # pass 2: dx = γ/σ · (g − mean(g) − x̂ · mean(g·x̂))
        for c in range(channels):
            xhat = (x[m, c] - mean[c]) * inv_std[c]
            dx[m, c] = scale[c] * (dx[m, c] - mean_g[c] - xhat * mean_gx[c])


def _check(x, eps, activation, **vectors):
    """Check the common arguments (batch norm's own checks, plus the activation's name); return x, its
    (M, C) view and the (C,) vectors in order."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    _check_eps(eps)
    x, x2 = _check_x(x)
    return x, x2, _check_channel_vectors(x.dtype, x.shape[-1], **vectors)


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
    channels = x.shape[-1]
    mean, var = np.empty(channels, x.dtype), np.empty(channels, x.dtype)
    _moments(x2, mean, var)
    scale, shift, _ = _scale_shift(gamma, beta, mean, var, eps)
    z = np.empty_like(x)
    _affine(x2, scale, shift, z.reshape(x2.shape))
    _activate(z, activation)
    return z, mean, var


def batchnorm_act_eval_forward(x, gamma, beta, mean, var, eps, activation):
    """Batch norm with given (running) statistics, then ``activation``. Shapes as the train forward; returns z."""
    x, x2, (gamma, beta, mean, var) = _check(x, eps, activation, gamma=gamma, beta=beta, mean=mean, var=var)
    scale, shift, _ = _scale_shift(gamma, beta, mean, var, eps)
    z = np.empty_like(x)
    _affine(x2, scale, shift, z.reshape(x2.shape))
    _activate(z, activation)
    return z


def batchnorm_act_train_backward(x, gamma, beta, mean, var, eps, dz, activation):
    """Training-mode backward (through the batch statistics) of ``batchnorm_act_train_forward``.

    x, dz: (..., C); gamma, beta, and the forward's mean, var: (C,). Returns ``(dx, dgamma, dbeta)``.
    For swish, σ(u) is recomputed here (into dx, which pass 1 then overwrites) rather than kept from the
    forward: one more exponential per element, one activation-sized array less held between the passes.
    """
    x, x2, (gamma, beta, mean, var) = _check(x, eps, activation, gamma=gamma, beta=beta, mean=mean, var=var)
    dz = check_array("dz", dz, dtype=x.dtype)
    check_shape("dz", dz, x.shape)
    scale, shift, inv_std = _scale_shift(gamma, beta, mean, var, eps)
    dx = np.empty_like(x)
    dx2 = dx.reshape(x2.shape)
    if activation == "swish":
        _affine(x2, scale, shift, dx2)
        _sigmoid(dx2, out=dx2)
    sums = np.empty((2, x.shape[-1]))
    _backward(x2, scale, shift, mean, inv_std, dz.reshape(x2.shape), ACTIVATIONS[activation], dx2, sums)
    return dx, sums[1].astype(x.dtype), sums[0].astype(x.dtype)
