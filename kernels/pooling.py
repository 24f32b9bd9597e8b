"""Global average pooling: the "squeeze" of squeeze-and-excitation and the head before the classifier.

    y[n, c] = (1 / (H·W)) · Σ_{h,w} x[n, h, w, c]

Every position contributes equally, so the backward spreads each gradient evenly:

    dx[n, h, w, c] = dy[n, c] / (H·W)
"""

import numpy as np
from numba import njit, prange

from ._checks import check_array


@njit(parallel=True, cache=True)
def _sum_over_positions(x, total):
    """total[n, c] += Σ_p x[n, p, c] for x (N, P, C) and total (N, C) float64, in parallel over N."""
    batch, positions, channels = x.shape
    for n in prange(batch):
        for p in range(positions):
            for c in range(channels):
                total[n, c] += x[n, p, c]


@njit(parallel=True, cache=True)
def _spread_over_positions(dy, dx):
    """dx[n, p, c] = dy[n, c] / P for dx (N, P, C), in parallel over the N·P rows."""
    batch, positions, channels = dx.shape
    for row in prange(batch * positions):
        n = row // positions
        p = row % positions
        for c in range(channels):
            dx[n, p, c] = dy[n, c] / positions


def _check_spatial(height, width):
    if not (height >= 1 and width >= 1):
        raise ValueError(f"height and width must be positive, got {height} and {width}")


def _check_forward(x, check=check_array):
    """Check x (N, H, W, C), an array of the kind ``check`` with at least one position; return it."""
    x = check("x", x, ndim=4)
    _check_spatial(x.shape[1], x.shape[2])
    return x


def _check_backward(dy, height, width, check=check_array):
    """Check dy (N, C), an array of the kind ``check``, and the forward's positive height and width."""
    dy = check("dy", dy, ndim=2)
    _check_spatial(height, width)
    return dy


def global_avg_pool_forward(x):
    """Mean over the spatial axes. x: (N, H, W, C) float32/float64 -> y: (N, C) same dtype."""
    x = _check_forward(x)
    n, h, w, c = x.shape
    total = np.zeros((n, c))                # float64, the sums accumulated there
    _sum_over_positions(x.reshape(n, h * w, c), total)
    return (total / (h * w)).astype(x.dtype)


def global_avg_pool_backward(dy, height, width):
    """dx = dy / (H·W) at every position. dy: (N, C); height, width: the forward's H, W.

    Returns dx: (N, H, W, C) of dy's dtype."""
    dy = _check_backward(dy, height, width)
    n, c = dy.shape
    dx = np.empty((n, height, width, c), dy.dtype)
    _spread_over_positions(dy, dx.reshape(n, height * width, c))
    return dx
