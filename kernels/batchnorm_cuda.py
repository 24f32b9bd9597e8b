"""CUDA twin of ``batchnorm.py``: batch normalisation over every axis but the channels, on device arrays.

Same functions, arguments and formulas as the CPU file (read it for the derivation). ``x`` (..., C) is
seen as ``(M, C)`` with ``M = N·H·W`` values per channel.

Thread mapping:

* statistics and the backward: **one block per channel** ``c = blockIdx.x``. The block's threads stride
  over the M values of the channel (thread t takes m = t, t + T, t + 2T, … for T = THREADS_PER_BLOCK)
  and ``block_sum`` adds their partial sums in shared memory (float64, a fixed order: no atomics, so
  the result is the same on every run). The backward needs two sums before it can write dx, and the
  whole block has them at once, so one kernel does both steps.
* normalising: one thread per element of ``y``.

Neighbouring threads of a block read values C floats apart (the channel is the fast axis), which is
not the fastest access pattern on a GPU; it keeps every channel's sum inside one block and the code short.
"""

import math

import numpy as np
from numba import cuda

from ._checks import check_shape
from ._device_cuda import THREADS_PER_BLOCK, block_sum, blocks_for, check_device_array
from .batchnorm import _check_eps


@cuda.jit(cache=True)
def _moments_kernel(x, mean, var):
    """mean[c], var[c] of x (M, C) over M for the block's channel c: mean first, then squared deviations."""
    c = cuda.blockIdx.x
    count = x.shape[0]
    total = 0.0
    for m in range(cuda.threadIdx.x, count, THREADS_PER_BLOCK):
        total += x[m, c]
    mu = block_sum(total) / count
    squares = 0.0
    for m in range(cuda.threadIdx.x, count, THREADS_PER_BLOCK):
        d = x[m, c] - mu
        squares += d * d
    sigma2 = block_sum(squares) / count
    if cuda.threadIdx.x == 0:
        mean[c] = mu
        var[c] = sigma2


@cuda.jit(cache=True)
def _normalize_kernel(x, gamma, beta, mean, var, eps, y):
    """y = γ · (x − μ) / sqrt(σ² + ε) + β; thread t computes flat element t of y (M, C)."""
    t = cuda.grid(1)
    channels = x.shape[1]
    if t < x.size:
        m, c = t // channels, t % channels
        y[m, c] = (x[m, c] - mean[c]) * (gamma[c] / math.sqrt(var[c] + eps)) + beta[c]


@cuda.jit(cache=True)
def _backward_kernel(x, gamma, mean, var, eps, dy, through_batch_stats, dx, dgamma, dbeta):
    """For the block's channel c: dbeta[c] = Σ dy, dgamma[c] = Σ dy·x̂, then dx[:, c]."""
    c = cuda.blockIdx.x
    count = x.shape[0]
    inv_std = 1.0 / math.sqrt(var[c] + eps)
    partial_dy = 0.0
    partial_dy_xhat = 0.0
    for m in range(cuda.threadIdx.x, count, THREADS_PER_BLOCK):
        partial_dy += dy[m, c]
        partial_dy_xhat += dy[m, c] * (x[m, c] - mean[c]) * inv_std
    sum_dy = block_sum(partial_dy)
    sum_dy_xhat = block_sum(partial_dy_xhat)
    if cuda.threadIdx.x == 0:
        dbeta[c] = sum_dy
        dgamma[c] = sum_dy_xhat
    mean_dy = sum_dy / count if through_batch_stats else 0.0
    mean_dy_xhat = sum_dy_xhat / count if through_batch_stats else 0.0
    for m in range(cuda.threadIdx.x, count, THREADS_PER_BLOCK):
        xhat = (x[m, c] - mean[c]) * inv_std
        dx[m, c] = gamma[c] * inv_std * (dy[m, c] - mean_dy - xhat * mean_dy_xhat)


@cuda.jit(cache=True)
def _running_stats_kernel(running_mean, running_var, mean, var, bessel, momentum, new_mean, new_var):
    """One thread per channel: the moving averages of ``update_running_stats``."""
    c = cuda.grid(1)
    if c < mean.size:
        new_mean[c] = momentum * running_mean[c] + (1.0 - momentum) * mean[c]
        new_var[c] = momentum * running_var[c] + (1.0 - momentum) * var[c] * bessel


def _check_x(x):
    """Check x (..., C) has at least two axes and no empty one; return x and its (M, C) view."""
    x = check_device_array("x", x)
    if x.ndim < 2 or x.size == 0:
        raise ValueError(f"x must have shape (..., C) with at least two axes and no empty axis, got {x.shape}")
    channels = x.shape[x.ndim - 1]  # the simulator's device arrays do not accept shape[-1]
    return x, x.reshape(x.size // channels, channels)


def _check_channel_vectors(channels, **vectors):
    """Check that every keyword argument is a (C,) float32 device array; return them in order."""
    checked = []
    for name, v in vectors.items():
        v = check_device_array(name, v, ndim=1)
        check_shape(name, v, (channels,))
        checked.append(v)
    return checked


def _normalize(x, x2, gamma, beta, mean, var, eps):
    y = cuda.device_array_like(x)
    _normalize_kernel[blocks_for(x.size), THREADS_PER_BLOCK](x2, gamma, beta, mean, var, eps, y.reshape(x2.shape))
    return y


def _checked_backward(x, gamma, mean, var, eps, dy, through_batch_stats):
    """Check the backward's arguments, then run ``_backward_kernel``, one block per channel."""
    _check_eps(eps)
    x, x2 = _check_x(x)
    channels = x2.shape[1]
    gamma, mean, var = _check_channel_vectors(channels, gamma=gamma, mean=mean, var=var)
    dy = check_device_array("dy", dy)
    check_shape("dy", dy, x.shape)
    dx = cuda.device_array_like(x)
    dgamma = cuda.device_array(channels, x.dtype)
    dbeta = cuda.device_array(channels, x.dtype)
    _backward_kernel[channels, THREADS_PER_BLOCK](
        x2, gamma, mean, var, eps, dy.reshape(x2.shape), through_batch_stats, dx.reshape(x2.shape), dgamma, dbeta
    )
    return dx, dgamma, dbeta


def batchnorm_train_forward(x, gamma, beta, eps):
    """Normalise with the statistics of this batch.

    x: (..., C) float32 device array; gamma, beta: (C,); eps: small positive float.
    Returns ``(y, mean, var)``: y like x; mean and the biased var (C,) of x over all axes but the last.
    """
    _check_eps(eps)
    x, x2 = _check_x(x)
    channels = x2.shape[1]
    gamma, beta = _check_channel_vectors(channels, gamma=gamma, beta=beta)
    mean = cuda.device_array(channels, x.dtype)
    var = cuda.device_array(channels, x.dtype)
    _moments_kernel[channels, THREADS_PER_BLOCK](x2, mean, var)
    return _normalize(x, x2, gamma, beta, mean, var, eps), mean, var


def batchnorm_train_backward(x, gamma, mean, var, eps, dy):
    """Training-mode backward: the gradient also flows through the batch mean and variance.

    x, dy: (..., C); gamma, mean, var: (C,) as returned by ``batchnorm_train_forward``.
    Returns ``(dx, dgamma, dbeta)`` with dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy · x̂)).
    """
    return _checked_backward(x, gamma, mean, var, eps, dy, through_batch_stats=True)


def batchnorm_eval_forward(x, gamma, beta, mean, var, eps):
    """Normalise with given (running) statistics: y = γ · (x − mean) / sqrt(var + ε) + β.

    x: (..., C); gamma, beta, mean, var: (C,) float32 device arrays. Returns y like x.
    """
    _check_eps(eps)
    x, x2 = _check_x(x)
    gamma, beta, mean, var = _check_channel_vectors(x2.shape[1], gamma=gamma, beta=beta, mean=mean, var=var)
    return _normalize(x, x2, gamma, beta, mean, var, eps)


def batchnorm_eval_backward(x, gamma, mean, var, eps, dy):
    """Evaluation-mode backward: mean and var are constants, so dx = γ/σ · dy.

    x, dy: (..., C); gamma, mean, var: (C,). Returns ``(dx, dgamma, dbeta)``.
    """
    return _checked_backward(x, gamma, mean, var, eps, dy, through_batch_stats=False)


def update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """Exponential moving averages of the batch statistics, as in ``batchnorm.update_running_stats``:

        new_mean = momentum · running_mean + (1 − momentum) · mean
        new_var  = momentum · running_var  + (1 − momentum) · var · count / (count − 1)

    (the biased variance for ``count == 1``). All four arrays are (C,) float32 device arrays;
    returns new device arrays and leaves the inputs unchanged.
    """
    running_mean = check_device_array("running_mean", running_mean, ndim=1)
    running_var, mean, var = _check_channel_vectors(
        running_mean.shape[0], running_var=running_var, mean=mean, var=var
    )
    if not (isinstance(count, (int, np.integer)) and count >= 1):
        raise ValueError(f"count must be a positive integer (values per channel), got {count!r}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    bessel = count / (count - 1) if count > 1 else 1.0
    new_mean = cuda.device_array_like(running_mean)
    new_var = cuda.device_array_like(running_var)
    channels = running_mean.shape[0]
    _running_stats_kernel[blocks_for(channels), THREADS_PER_BLOCK](
        running_mean, running_var, mean, var, bessel, momentum, new_mean, new_var
    )
    return new_mean, new_var
