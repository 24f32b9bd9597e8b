"""Softmax cross-entropy with label smoothing, averaged over the batch: against integer labels, and
against soft targets (Mixup's).

For logits ``z`` (N, K) and a target distribution t[n, :] per row, with smoothing ε (0 = none):

    target[n, k]  = (1 − ε) · t[n, k] + ε / K
    log p[n, k]   = z[n, k] − m_n − log Σ_j exp(z[n, j] − m_n)     with m_n = max_j z[n, j]
    loss          = −(1/N) · Σ_n Σ_k target[n, k] · log p[n, k]

``soft_cross_entropy_*`` take t itself (N, K), e.g. Mixup's λ·onehot(y_i) + (1 − λ)·onehot(y_j);
``cross_entropy_*`` take integer labels y (N,) and run the same loops on t[n, k] = [k == y_n] (``one_hot``). Subtracting the row maximum m_n changes nothing
mathematically but keeps every exp(·) ≤ 1, so logits of ±1e4 give a finite loss. The gradient of the mean
loss with respect to the logits is

    ∂loss/∂z[n, k] = (p[n, k] − target[n, k]) / N

which holds because every row of the target sums to 1 (∂/∂z[n, k] of Σ_j target[n, j] · log p[n, j] is
target[n, k] − p[n, k] · Σ_j target[n, j]); that is why soft targets must be distributions: entries ≥ 0
summing to 1 (within ``TARGET_SUM_TOLERANCE``).

The loops are sequential: a batch of logits is tiny next to the feature maps.
"""

import math

import numpy as np
from numba import njit

from ._checks import check_array, check_like

# How far a soft target's row may sum from 1: float32 rounding of a few terms, far below a real mistake.
TARGET_SUM_TOLERANCE = 1e-4


@njit(cache=True)
def _smoothed(t, smoothing, classes):
    """(1 − ε) · t + ε / K: the smoothed target of one class whose unsmoothed target is t."""
    return (1.0 - smoothing) * t + smoothing / classes


@njit(cache=True)
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


@njit(cache=True)
def _cross_entropy(logits, targets, smoothing, probs):
    """Fill probs (N, K) with the softmax of logits and return the mean smoothed cross-entropy against the
    targets (N, K)."""
    batch, classes = logits.shape
    total = 0.0
    for n in range(batch):
        row_max, log_sum_exp = _log_normaliser(logits, n)
        for k in range(classes):
            log_p = logits[n, k] - row_max - log_sum_exp
            probs[n, k] = math.exp(log_p)
            total -= _smoothed(targets[n, k], smoothing, classes) * log_p
    return total / batch


@njit(cache=True)
def _cross_entropy_grad(probs, targets, smoothing, dlogits):
    """dlogits[n, k] = (probs[n, k] − target[n, k]) / N, target smoothed from targets (N, K)."""
    batch, classes = probs.shape
    for n in range(batch):
        for k in range(classes):
            dlogits[n, k] = (probs[n, k] - _smoothed(targets[n, k], smoothing, classes)) / batch


def one_hot(labels, classes, dtype):
    """t[n, k] = [k == y_n]: the integer labels (N,) as target rows (N, K) of ``dtype``."""
    return (labels[:, None] == np.arange(classes)).astype(dtype)


def _check_labels(labels, batch, classes):
    """labels as an int64 (N,) array with every entry in [0, K)."""
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        got = labels.dtype if isinstance(labels, np.ndarray) else type(labels).__name__
        raise TypeError(f"labels must be a numpy array of integers, got {got}")
    if labels.shape != (batch,):
        raise ValueError(f"labels has shape {labels.shape}, expected ({batch},): one label per row of logits")
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        i = bad[0]
        raise ValueError(f"label {labels[i]} at index {i} is out of range for K={classes} classes (0..{classes - 1})")
    return np.ascontiguousarray(labels, dtype=np.int64)


def _check_smoothing(smoothing):
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    return float(smoothing)


def _check_rows(name, a, check):
    """``a`` (N, K) checked by ``check``, with at least one row and one class."""
    a = check(name, a, ndim=2)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one class, got shape {a.shape}")
    return a


def _check_distributions(targets):
    """Raise unless every row of the host array targets (N, K) is a distribution: entries ≥ 0 summing to 1."""
    negative = np.argwhere(targets < 0)
    if negative.size:
        n, k = negative[0]
        raise ValueError(f"targets[{n}, {k}] is {targets[n, k]}: soft targets must be ≥ 0 (a distribution per row)")
    sums = targets.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(~(np.abs(sums - 1.0) <= TARGET_SUM_TOLERANCE))      # NaN sums too
    if bad.size:
        n = bad[0]
        raise ValueError(f"row {n} of targets sums to {sums[n]:.6g}, not 1: each row must be a distribution over "
                         f"the K classes (divide it by its sum, or give integer labels to cross_entropy_forward)")


def _check_soft(name, a, targets, smoothing, check=check_array, to_host=np.asarray):
    """Check a soft pair's arguments for arrays of the kind ``check``: ``a`` (the logits or probs, (N, K)),
    targets of its dtype and shape whose rows (read through ``to_host``) are distributions; return them."""
    a = _check_rows(name, a, check)
    targets = check_like("targets", targets, a, check)
    _check_distributions(to_host(targets))
    return a, targets, _check_smoothing(smoothing)


def _check_forward(logits, labels, smoothing, check=check_array, check_labels=_check_labels):
    """Check the forward's arguments for arrays of the kind ``check`` (labels by ``check_labels``); return them."""
    logits = _check_rows("logits", logits, check)
    batch, classes = logits.shape
    return logits, check_labels(labels, batch, classes), _check_smoothing(smoothing)


def _check_backward(probs, labels, smoothing, check=check_array, check_labels=_check_labels):
    """Check the backward's arguments for arrays of the kind ``check`` (labels by ``check_labels``); return them."""
    probs = check("probs", probs, ndim=2)
    batch, classes = probs.shape
    return probs, check_labels(labels, batch, classes), _check_smoothing(smoothing)


def cross_entropy_forward(logits, labels, smoothing=0.0):
    """Mean softmax cross-entropy against label-smoothed targets.

    logits: (N, K) float32/float64; labels: (N,) integers in [0, K); smoothing: ε in [0, 1).
    Returns ``(loss, probs)``: loss a Python float, probs = softmax(logits) (N, K) of logits' dtype.
    """
    logits, labels, smoothing = _check_forward(logits, labels, smoothing)
    probs = np.empty_like(logits)
    loss = _cross_entropy(logits, one_hot(labels, logits.shape[1], logits.dtype), smoothing, probs)
    return float(loss), probs


def cross_entropy_backward(probs, labels, smoothing=0.0):
    """∂loss/∂logits = (probs − target) / N. probs: (N, K) from the forward; labels, smoothing as there.

    Returns dlogits: (N, K) of probs' dtype."""
    probs, labels, smoothing = _check_backward(probs, labels, smoothing)
    dlogits = np.empty_like(probs)
    _cross_entropy_grad(probs, one_hot(labels, probs.shape[1], probs.dtype), smoothing, dlogits)
    return dlogits


def soft_cross_entropy_forward(logits, targets, smoothing=0.0):
    """Mean softmax cross-entropy against soft targets, smoothed: target = (1 − ε) · targets + ε / K.

    logits: (N, K) float32/float64; targets: (N, K) of logits' dtype, every row a distribution (entries ≥ 0
    summing to 1); smoothing: ε in [0, 1). Returns ``(loss, probs)`` as ``cross_entropy_forward``."""
    logits, targets, smoothing = _check_soft("logits", logits, targets, smoothing)
    probs = np.empty_like(logits)
    loss = _cross_entropy(logits, targets, smoothing, probs)
    return float(loss), probs


def soft_cross_entropy_backward(probs, targets, smoothing=0.0):
    """∂loss/∂logits = (probs − target) / N. probs: (N, K) from the forward; targets, smoothing as there.

    Returns dlogits: (N, K) of probs' dtype."""
    probs, targets, smoothing = _check_soft("probs", probs, targets, smoothing)
    dlogits = np.empty_like(probs)
    _cross_entropy_grad(probs, targets, smoothing, dlogits)
    return dlogits
