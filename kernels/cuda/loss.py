"""CUDA twin of ``loss.py``: softmax cross-entropy with label smoothing, against integer labels or soft
targets, on device arrays.

Same functions, arguments and formulas as the CPU file (read it for the derivation)::

    target[n, k]   = (1 − ε) · t[n, k] + ε / K        t = onehot(y), or the soft targets
    loss           = −(1/N) · Σ_n Σ_k target[n, k] · log p[n, k]
    ∂loss/∂z[n, k] = (p[n, k] − target[n, k]) / N

Thread mapping:

* forward: one thread per row n (a sample's K logits are few): the row maximum, the log-sum-exp, the
  row of ``probs`` and the row's loss. The N row losses are then added by a single block with
  ``block_sum`` (a fixed order, no atomics) and the total comes back to the host as a Python float,
  as on the CPU.
* backward: one thread per element (n, k) of ``dlogits``.

``labels`` is an integer device array; its range check copies the N labels to the host once, and they go back
as one-hot target rows (N×K, as small as the logits) for the same kernels the soft ``targets`` use (whose
check that each row is a distribution copies the N×K targets to the host).
"""

import math

import numpy as np
from numba import cuda

from .._checks import check_device_array
from ..loss import _check_backward, _check_forward, _check_labels, _check_soft, one_hot
from ._device import THREADS_PER_BLOCK, block_sum, blocks_for


@cuda.jit(device=True, cache=True)
def _smoothed(t, smoothing, classes):
    """(1 − ε) · t + ε / K: the smoothed target of one class whose unsmoothed target is t."""
    return (1.0 - smoothing) * t + smoothing / classes


@cuda.jit(device=True, cache=True)
def _log_normaliser(logits, n):
    """Row n's (m_n, log Σ_j exp(z[n, j] − m_n)), so that log p[n, k] = z[n, k] − m_n − log Σ_j exp(…)."""
    classes = logits.shape[1]
    row_max = logits[n, 0]
    for k in range(1, classes):
        row_max = max(row_max, logits[n, k])
    sum_exp = 0.0
    for k in range(classes):
        sum_exp += math.exp(logits[n, k] - row_max)
    return row_max, math.log(sum_exp)


@cuda.jit(cache=True)
def _softmax_rows_kernel(logits, targets, smoothing, probs, row_loss):
    """Thread n fills probs[n, :] (N, K) with the softmax of logits[n, :] and row_loss[n] with its loss against
    targets[n, :]."""
    n = cuda.grid(1)
    batch, classes = logits.shape
    if n < batch:
        row_max, log_sum_exp = _log_normaliser(logits, n)
        loss = 0.0
        for k in range(classes):
            log_p = logits[n, k] - row_max - log_sum_exp
            probs[n, k] = math.exp(log_p)
            loss -= _smoothed(targets[n, k], smoothing, classes) * log_p
        row_loss[n] = loss


@cuda.jit(cache=True)
def _mean_kernel(values, out):
    """out[0] = mean of values (N,), by the single block launched."""
    partial = 0.0
    for n in range(cuda.threadIdx.x, values.size, THREADS_PER_BLOCK):
        partial += values[n]
    total = block_sum(partial)
    if cuda.threadIdx.x == 0:
        out[0] = total / values.size


@cuda.jit(cache=True)
def _cross_entropy_grad_kernel(probs, targets, smoothing, dlogits):
    """Thread t computes flat element t = (n, k) of dlogits: (probs − target) / N, target smoothed from targets."""
    t = cuda.grid(1)
    batch, classes = probs.shape
    if t < probs.size:
        n, k = t // classes, t % classes
        dlogits[n, k] = (probs[n, k] - _smoothed(targets[n, k], smoothing, classes)) / batch


def _mean_loss(logits, targets, smoothing):
    """One thread per row (its probs and its loss against ``targets``), then the mean: ``(loss, probs)``."""
    batch = logits.shape[0]
    probs = cuda.device_array_like(logits)
    row_loss = cuda.device_array(batch, np.float64)  # the losses add up in float64, as on the CPU
    _softmax_rows_kernel[blocks_for(batch), THREADS_PER_BLOCK](logits, targets, smoothing, probs, row_loss)
    loss = cuda.device_array(1, np.float64)
    _mean_kernel[1, THREADS_PER_BLOCK](row_loss, loss)
    return float(loss.copy_to_host()[0]), probs


def _gradient(probs, targets, smoothing):
    dlogits = cuda.device_array_like(probs)
    _cross_entropy_grad_kernel[blocks_for(probs.size), THREADS_PER_BLOCK](probs, targets, smoothing, dlogits)
    return dlogits


def _checked_labels(labels, batch, classes):
    """Check the device array of labels on the host (``loss._check_labels``); return the host copy."""
    if not hasattr(labels, "copy_to_host"):
        raise TypeError(f"labels must be a numba.cuda device array of integers, got {type(labels).__name__}")
    return _check_labels(labels.copy_to_host(), batch, classes)


def _one_hot(labels, like):
    """The checked host labels as one-hot target rows on the device, of ``like``'s shape and dtype."""
    return cuda.to_device(one_hot(labels, like.shape[1], like.dtype))


def _host(targets):
    """The soft targets on the host, for ``loss._check_soft`` to check that every row is a distribution."""
    return targets.copy_to_host()


def cross_entropy_forward(logits, labels, smoothing=0.0):
    """Mean softmax cross-entropy against label-smoothed targets.

    logits: (N, K) float32 device array; labels: (N,) integer device array in [0, K); smoothing: ε in [0, 1).
    Returns ``(loss, probs)``: loss a Python float, probs = softmax(logits) (N, K) device array.
    """
    logits, labels, smoothing = _check_forward(logits, labels, smoothing, check_device_array, _checked_labels)
    return _mean_loss(logits, _one_hot(labels, logits), smoothing)


def cross_entropy_backward(probs, labels, smoothing=0.0):
    """∂loss/∂logits = (probs − target) / N. probs: (N, K) from the forward; labels, smoothing as there.

    Returns dlogits: (N, K) device array."""
    probs, labels, smoothing = _check_backward(probs, labels, smoothing, check_device_array, _checked_labels)
    return _gradient(probs, _one_hot(labels, probs), smoothing)


def soft_cross_entropy_forward(logits, targets, smoothing=0.0):
    """Mean softmax cross-entropy against soft targets, smoothed: target = (1 − ε) · targets + ε / K.

    logits: (N, K) float32 device array; targets: (N, K) float32 device array, every row a distribution;
    smoothing: ε in [0, 1). Returns ``(loss, probs)`` as ``cross_entropy_forward``."""
    logits, targets, smoothing = _check_soft("logits", logits, targets, smoothing, check_device_array, _host)
    return _mean_loss(logits, targets, smoothing)


def soft_cross_entropy_backward(probs, targets, smoothing=0.0):
    """∂loss/∂logits = (probs − target) / N. probs: (N, K) from the forward; targets, smoothing as there.

    Returns dlogits: (N, K) device array."""
    probs, targets, smoothing = _check_soft("probs", probs, targets, smoothing, check_device_array, _host)
    return _gradient(probs, targets, smoothing)
