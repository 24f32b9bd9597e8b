"""Batch normalisation over every axis but the last (the channels).

For ``x`` of shape ``(..., C)`` each channel ``c`` is normalised over its ``M = N·H·W`` values:

    μ_c  = mean(x[:, c])              σ²_c = mean((x[:, c] − μ_c)²)      (biased variance)
    x̂    = (x − μ_c) / σ_c            with σ_c = sqrt(σ²_c + ε)
    y    = γ_c · x̂ + β_c

Backward, with ``dy = ∂L/∂y``, sums and means over the ``M`` values of a channel:

    ∂L/∂β = Σ dy                       ∂L/∂γ = Σ dy · x̂
    training (μ, σ² are functions of x):  dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy · x̂))
    evaluation (μ, σ² are constants):     dx = γ/σ · dy

The two extra terms in training are the gradient flowing back through the batch mean and variance:
every x of a channel moves μ and σ², and so moves every other y of that channel.

The loops run in parallel over channels with the sums inside, so each channel is summed by one thread
in a fixed order and the results do not depend on the thread count. The sums accumulate in float64
even for float32 input, which keeps the statistics of a large batch (N·H·W of a million) accurate.
"""

import math

import numpy as np
from numba import njit, prange

from ._checks import check_array, check_like, check_shape


@njit(parallel=True, cache=True)
def _batch_moments(x, mean, var):
    """mean[c], var[c] of x (M, C) over M, in two passes (mean first, then squared deviations)."""
    count, channels = x.shape
    for c in prange(channels):
        total = 0.0
        for m in range(count):
            total += x[m, c]
        mu = total / count
        squares = 0.0
        for m in range(count):
            d = x[m, c] - mu
            squares += d * d
        mean[c] = mu
        var[c] = squares / count


@njit(parallel=True, cache=True)
def _normalize(x, gamma, beta, mean, var, eps, y):
    """y = γ · (x − μ) / sqrt(σ² + ε) + β for x, y (M, C) and per-channel γ, β, μ, σ² (C,)."""
    count, channels = x.shape
    for c in prange(channels):
        scale = gamma[c] / math.sqrt(var[c] + eps)
        for m in range(count):
            y[m, c] = (x[m, c] - mean[c]) * scale + beta[c]


@njit(parallel=True, cache=True)
def _backward(x, gamma, mean, var, eps, dy, through_batch_stats, dx, dgamma, dbeta):
    """Fill dx (M, C), dgamma, dbeta (C,); ``through_batch_stats`` adds the training-mode terms."""
    count, channels = x.shape
    for c in prange(channels):
        inv_std = 1.0 / math.sqrt(var[c] + eps)
        sum_dy = 0.0
        sum_dy_xhat = 0.0
        for m in range(count):
            xhat = (x[m, c] - mean[c]) * inv_std
            sum_dy += dy[m, c]
            sum_dy_xhat += dy[m, c] * xhat
        dbeta[c] = sum_dy
        dgamma[c] = sum_dy_xhat
        mean_dy = sum_dy / count if through_batch_stats else 0.0
        mean_dy_xhat = sum_dy_xhat / count if through_batch_stats else 0.0
        for m in range(count):
            xhat = (x[m, c] - mean[c]) * inv_std
            dx[m, c] = gamma[c] * inv_std * (dy[m, c] - mean_dy - xhat * mean_dy_xhat)


def _check_eps(eps):
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")


def _check_channel_vectors(dtype, channels, check=check_array, **vectors):
    """Check that every keyword argument is a (C,) array of ``dtype``; return them in order."""
    checked = []
    for name, v in vectors.items():
        v = check(name, v, ndim=1, dtype=dtype)
        check_shape(name, v, (channels,))
        checked.append(v)
    return checked


def _check_inputs(x, eps, check=check_array, **vectors):
    """Check eps, x (..., C) (at least two axes, none empty) and the (C,) vectors given by keyword, all
    arrays of one kind (``check``, see ``_checks.py``) and dtype. Returns x, its (M, C) view and the vectors."""
    _check_eps(eps)
    x = check("x", x)
    if x.ndim < 2 or x.size == 0:
        raise ValueError(f"x must have shape (..., C) with at least two axes and no empty axis, got {x.shape}")
    channels = x.shape[x.ndim - 1]  # (a device array's shape takes no negative index)
    return x, x.reshape(x.size // channels, channels), _check_channel_vectors(x.dtype, channels, check, **vectors)


def _check_running_stats(running_mean, running_var, mean, var, count, momentum, check=check_array):
    """Check ``update_running_stats``'s arguments; return the four (C,) arrays."""
    running_mean = check("running_mean", running_mean, ndim=1)
    running_var, mean, var = _check_channel_vectors(
        running_mean.dtype, running_mean.shape[0], check, running_var=running_var, mean=mean, var=var
    )
    if not (isinstance(count, (int, np.integer)) and count >= 1):
        raise ValueError(f"count must be a positive integer (values per channel), got {count!r}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    return running_mean, running_var, mean, var


def _checked_backward(x, gamma, mean, var, eps, dy, through_batch_stats):
    """Check the backward's arguments, then run ``_backward``."""
    x, x2, (gamma, mean, var) = _check_inputs(x, eps, gamma=gamma, mean=mean, var=var)
    dy = check_like("dy", dy, x)
    channels = x2.shape[1]
    dx = np.empty_like(x)
    dgamma = np.empty(channels, x.dtype)
    dbeta = np.empty(channels, x.dtype)
    dy2, dx2 = dy.reshape(x2.shape), dx.reshape(x2.shape)
    _backward(x2, gamma, mean, var, eps, dy2, through_batch_stats, dx2, dgamma, dbeta)
    return dx, dgamma, dbeta


def batchnorm_train_forward(x, gamma, beta, eps):
    """Normalise with the statistics of this batch.

    x: (..., C) float32/float64; gamma, beta: (C,) same dtype; eps: small positive float.
    Returns ``(y, mean, var)``: y like x; mean and the biased var (C,) of x over all axes but the last.
    """
    x, x2, (gamma, beta) = _check_inputs(x, eps, gamma=gamma, beta=beta)
    channels = x2.shape[1]
    mean = np.empty(channels, x.dtype)
    var = np.empty(channels, x.dtype)
    _batch_moments(x2, mean, var)
    y = np.empty_like(x)
    _normalize(x2, gamma, beta, mean, var, eps, y.reshape(x2.shape))
    return y, mean, var


def batchnorm_train_backward(x, gamma, mean, var, eps, dy):
    """Training-mode backward: the gradient also flows through the batch mean and variance.

    x, dy: (..., C); gamma, mean, var: (C,) as returned by ``batchnorm_train_forward``.
    Returns ``(dx, dgamma, dbeta)`` with dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy · x̂)).
    """
    return _checked_backward(x, gamma, mean, var, eps, dy, through_batch_stats=True)


def batchnorm_eval_forward(x, gamma, beta, mean, var, eps):
    """Normalise with given (running) statistics: y = γ · (x − mean) / sqrt(var + ε) + β.

    x: (..., C); gamma, beta, mean, var: (C,) of x's dtype. Returns y like x.
    """
    x, x2, (gamma, beta, mean, var) = _check_inputs(x, eps, gamma=gamma, beta=beta, mean=mean, var=var)
    y = np.empty_like(x)
    _normalize(x2, gamma, beta, mean, var, eps, y.reshape(x2.shape))
    return y


def batchnorm_eval_backward(x, gamma, mean, var, eps, dy):
    """Evaluation-mode backward: mean and var are constants, so dx = γ/σ · dy.

    x, dy: (..., C); gamma, mean, var: (C,). Returns ``(dx, dgamma, dbeta)``.
    """
    return _checked_backward(x, gamma, mean, var, eps, dy, through_batch_stats=False)


def update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """Exponential moving averages of the batch statistics, in TensorFlow's sense of momentum:

        new_mean = momentum · running_mean + (1 − momentum) · mean
        new_var  = momentum · running_var  + (1 − momentum) · var · count / (count − 1)

    ``count`` is the number of values per channel (N·H·W); the batch variance is made unbiased
    (Bessel's correction) before averaging, except for ``count == 1`` where the biased one is used.
    All four arrays are (C,) of one dtype; returns new arrays and leaves the inputs unchanged.
    (Plain NumPy: one line of arithmetic on (C,) vectors, nothing to loop over.)
    """
    running_mean, running_var, mean, var = _check_running_stats(running_mean, running_var, mean, var, count,
                                                                 momentum)
    unbiased_var = var * (count / (count - 1)) if count > 1 else var
    new_mean = momentum * running_mean + (1.0 - momentum) * mean
    new_var = momentum * running_var + (1.0 - momentum) * unbiased_var
    return new_mean.astype(running_mean.dtype), new_var.astype(running_mean.dtype)
