"""CUDA twin of ``batchnorm_act.py``: batch norm fused with the activation after it, on device arrays.

Same functions, arguments, checks and formulas as the CPU file (read it for the derivation). Per channel c of
x (M, C), with scale_c = γ_c / sqrt(σ²_c + ε) and shift_c = β_c − μ_c · scale_c:

    u = x · scale + shift        z = act(u)        act ∈ {identity, swish, relu6}
    backward: g = dz · act'(u), then batch norm's backward with g in the place of dy

As on the CPU, u is never stored: the backward recomputes it (and σ(u)) from x.

Thread mapping:

* statistics: ``cuda/batchnorm.py``'s kernel, one block per channel.
* forward: one thread per element of z, which computes its channel's scale and shift itself (two
  divisions are cheaper than a separate kernel and an array for them).
* backward: **one block per channel** ``c = blockIdx.x``; its threads stride over the M values, adding
  g and g · x̂ into partial sums that ``block_sum`` reduces in shared memory (float64, a fixed order, no
  atomics); then the same threads write dx for the channel, recomputing g rather than storing it.
"""

import math

from numba import cuda

from .._checks import check_device_array, check_like
from ..batchnorm_act import ACTIVATIONS, RELU6, SWISH, _check
from ._device import THREADS_PER_BLOCK, block_sum, blocks_for
from .activations import _relu6, _relu6_derivative, _swish, _swish_derivative
from .batchnorm import _moments_kernel


@cuda.jit(device=True, cache=True)
def _activate(u, activation):
    """act(u) for the activation code ``activation`` (IDENTITY, SWISH or RELU6 of ``batchnorm_act.py``)."""
    if activation == SWISH:
        return _swish(u)
    if activation == RELU6:
        return _relu6(u)
    return u


@cuda.jit(device=True, cache=True)
def _activation_derivative(u, activation):
    """act'(u) for the activation code ``activation``."""
    if activation == SWISH:
        return _swish_derivative(u)
    if activation == RELU6:
        return _relu6_derivative(u)
    return 1.0


@cuda.jit(cache=True)
def _forward_kernel(x, gamma, beta, mean, var, eps, activation, z):
    """z = act(x · scale + shift); thread t computes flat element t of z (M, C)."""
    t = cuda.grid(1)
    channels = x.shape[1]
    if t < x.size:
        m, c = t // channels, t % channels
        scale = gamma[c] / math.sqrt(var[c] + eps)
        z[m, c] = _activate(x[m, c] * scale + (beta[c] - mean[c] * scale), activation)


@cuda.jit(cache=True)
def _backward_kernel(x, gamma, beta, mean, var, eps, dz, activation, dx, dgamma, dbeta):
    """For the block's channel c: dbeta[c] = Σ g, dgamma[c] = Σ g · x̂, then dx[:, c]; g = dz · act'(u)."""
    c = cuda.blockIdx.x
    count = x.shape[0]
    inv_std = 1.0 / math.sqrt(var[c] + eps)
    scale = gamma[c] * inv_std
    shift = beta[c] - mean[c] * scale
    partial_g = 0.0
    partial_g_xhat = 0.0
    for m in range(cuda.threadIdx.x, count, THREADS_PER_BLOCK):
        g = dz[m, c] * _activation_derivative(x[m, c] * scale + shift, activation)
        partial_g += g
        partial_g_xhat += g * (x[m, c] - mean[c]) * inv_std
    sum_g = block_sum(partial_g)
    sum_g_xhat = block_sum(partial_g_xhat)
    if cuda.threadIdx.x == 0:
        dbeta[c] = sum_g
        dgamma[c] = sum_g_xhat
    for m in range(cuda.threadIdx.x, count, THREADS_PER_BLOCK):
        g = dz[m, c] * _activation_derivative(x[m, c] * scale + shift, activation)
        xhat = (x[m, c] - mean[c]) * inv_std
        dx[m, c] = scale * (g - sum_g / count - xhat * sum_g_xhat / count)


def _forward(x, x2, gamma, beta, mean, var, eps, activation):
    z = cuda.device_array_like(x)
    _forward_kernel[blocks_for(x.size), THREADS_PER_BLOCK](
        x2, gamma, beta, mean, var, eps, ACTIVATIONS[activation], z.reshape(x2.shape)
    )
    return z


def batchnorm_act_train_forward(x, gamma, beta, eps, activation):
    """Batch norm with this batch's statistics, then ``activation`` (None, "swish" or "relu6").

    x: (..., C) float32 device array; gamma, beta: (C,). Returns ``(z, mean, var)``: z like x; the batch
    mean and biased variance (C,), which the backward needs with x.
    """
    x, x2, (gamma, beta) = _check(x, eps, activation, check_device_array, gamma=gamma, beta=beta)
    channels = x2.shape[1]
    mean, var = cuda.device_array(channels, x.dtype), cuda.device_array(channels, x.dtype)
    _moments_kernel[channels, THREADS_PER_BLOCK](x2, mean, var)
    return _forward(x, x2, gamma, beta, mean, var, eps, activation), mean, var


def batchnorm_act_eval_forward(x, gamma, beta, mean, var, eps, activation):
    """Batch norm with given (running) statistics, then ``activation``. Shapes as the train forward; returns z."""
    x, x2, (gamma, beta, mean, var) = _check(x, eps, activation, check_device_array, gamma=gamma, beta=beta, mean=mean,
                                             var=var)
    return _forward(x, x2, gamma, beta, mean, var, eps, activation)


def batchnorm_act_train_backward(x, gamma, beta, mean, var, eps, dz, activation):
    """Training-mode backward (through the batch statistics) of ``batchnorm_act_train_forward``.

    x, dz: (..., C); gamma, beta, and the forward's mean, var: (C,). Returns ``(dx, dgamma, dbeta)``.
    """
    x, x2, (gamma, beta, mean, var) = _check(x, eps, activation, check_device_array, gamma=gamma, beta=beta, mean=mean,
                                             var=var)
    dz = check_like("dz", dz, x, check_device_array)
    channels = x2.shape[1]
    dx = cuda.device_array_like(x)
    dgamma, dbeta = cuda.device_array(channels, x.dtype), cuda.device_array(channels, x.dtype)
    _backward_kernel[channels, THREADS_PER_BLOCK](
        x2, gamma, beta, mean, var, eps, dz.reshape(x2.shape), ACTIVATIONS[activation], dx.reshape(x2.shape),
        dgamma, dbeta,
    )
    return dx, dgamma, dbeta
