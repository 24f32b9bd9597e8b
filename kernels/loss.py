"""Softmax cross-entropy with label smoothing, averaged over the batch.

For logits ``z`` (N, K) and integer labels ``y`` (N,), with smoothing ε (0 = plain one-hot):

    target[n, k]  = (1 − ε) · [k == y_n] + ε / K
    log p[n, k]   = z[n, k] − m_n − log Σ_j exp(z[n, j] − m_n)     with m_n = max_j z[n, j]
    loss          = −(1/N) · Σ_n Σ_k target[n, k] · log p[n, k]

Subtracting the row maximum m_n changes nothing mathematically but keeps every exp(·) ≤ 1, so logits
of ±1e4 give a finite loss. The gradient of the mean loss with respect to the logits is

    ∂loss/∂z[n, k] = (p[n, k] − target[n, k]) / N

The loops are sequential: a batch of logits is tiny next to the feature maps.
"""

import math

import numpy as np
from numba import njit

from ._checks import check_array


@njit(cache=True)
def _target(k, label, smoothing, classes):
    """The smoothed one-hot target for class k of a sample whose label is ``label``."""
    on_label = 1.0 - smoothing if k == label else 0.0
    return on_label + smoothing / classes


@njit(cache=True)
def _cross_entropy(logits, labels, smoothing, probs):
    """Fill probs (N, K) with the softmax of logits and return the mean smoothed cross-entropy."""
    batch, classes = logits.shape
    total = 0.0
    for n in range(batch):
        row_max = logits[n, 0]
        for k in range(1, classes):
            row_max = max(row_max, logits[n, k])
        sum_exp = 0.0
        for k in range(classes):
            sum_exp += math.exp(logits[n, k] - row_max)
        log_sum_exp = math.log(sum_exp)
        for k in range(classes):
            log_p = logits[n, k] - row_max - log_sum_exp
            probs[n, k] = math.exp(log_p)
            total -= _target(k, labels[n], smoothing, classes) * log_p
    return total / batch


@njit(cache=True)
def _cross_entropy_grad(probs, labels, smoothing, dlogits):
    """dlogits[n, k] = (probs[n, k] − target[n, k]) / N."""
    batch, classes = probs.shape
    for n in range(batch):
        for k in range(classes):
            dlogits[n, k] = (probs[n, k] - _target(k, labels[n], smoothing, classes)) / batch


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


def _check_forward(logits, labels, smoothing, check=check_array, check_labels=_check_labels):
    """Check the forward's arguments for arrays of the kind ``check`` (labels by ``check_labels``); return them."""
    logits = check("logits", logits, ndim=2)
    batch, classes = logits.shape
    if batch == 0 or classes == 0:
        raise ValueError(f"logits must have at least one row and one class, got shape {logits.shape}")
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
    loss = _cross_entropy(logits, labels, smoothing, probs)
    return float(loss), probs


def cross_entropy_backward(probs, labels, smoothing=0.0):
    """∂loss/∂logits = (probs − target) / N. probs: (N, K) from the forward; labels, smoothing as there.

    Returns dlogits: (N, K) of probs' dtype."""
    probs, labels, smoothing = _check_backward(probs, labels, smoothing)
    dlogits = np.empty_like(probs)
    _cross_entropy_grad(probs, labels, smoothing, dlogits)
    return dlogits
