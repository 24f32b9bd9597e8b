"""The "excite" multiply of squeeze-and-excitation: each channel of each image scaled by its own gate.

    y[n, h, w, c] = x[n, h, w, c] · s[n, c]

Backward, with ``dy = ∂L/∂y``:

    dx[n, h, w, c] = dy[n, h, w, c] · s[n, c]          (the same multiply, applied to dy)
    ds[n, c]       = Σ_{h,w} dy[n, h, w, c] · x[n, h, w, c]

The loops see the image as ``(N, P, C)`` with ``P = H·W`` positions.
"""

import numpy as np
from numba import njit, prange

from ._checks import check_array, check_like, check_shape


@njit(parallel=True, cache=True)
def _scale_rows(x, s, y):
    """y[n, p, c] = x[n, p, c] · s[n, c] for x, y (N, P, C) and s (N, C), in parallel over N·P rows."""
    batch, positions, channels = x.shape
    for row in prange(batch * positions):
        n = row // positions
        p = row % positions
        for c in range(channels):
            y[n, p, c] = x[n, p, c] * s[n, c]


@njit(parallel=True, cache=True)
def _sum_positions_of_product(a, b, total):
    """total[n, c] += Σ_p a[n, p, c] · b[n, p, c], for total (N, C) float64, in parallel over images."""
    batch, positions, channels = a.shape
    for n in prange(batch):
        for p in range(positions):
            for c in range(channels):
                total[n, c] += a[n, p, c] * b[n, p, c]


def scale_rows(x, s):
    """x (N, P, C) times s (N, C) broadcast over P; unchecked, shared with drop connect in ``dropout.py``."""
    y = np.empty_like(x)
    _scale_rows(x, s, y)
    return y


def _check_inputs(x, s, check=check_array):
    """Check x (N, H, W, C) and s (N, C), arrays of the kind ``check`` and one dtype; return both."""
    x = check("x", x, ndim=4)
    s = check("s", s, ndim=2, dtype=x.dtype)
    check_shape("s", s, (x.shape[0], x.shape[3]))
    return x, s


def channel_scale_forward(x, s):
    """y = x · s[:, None, None, :]. x: (N, H, W, C) float32/float64; s: (N, C) same dtype. y like x."""
    x, s = _check_inputs(x, s)
    n, h, w, c = x.shape
    return scale_rows(x.reshape(n, h * w, c), s).reshape(x.shape)


def channel_scale_backward(x, s, dy):
    """Gradients of y = x · s[:, None, None, :]. x, dy: (N, H, W, C); s: (N, C).

    Returns ``(dx, ds)``: dx = dy · s (N, H, W, C) and ds = Σ_{h,w} dy · x (N, C)."""
    x, s = _check_inputs(x, s)
    dy = check_like("dy", dy, x)
    n, h, w, c = x.shape
    x3, dy3 = x.reshape(n, h * w, c), dy.reshape(n, h * w, c)
    ds = np.zeros(s.shape)                  # float64: the sums over positions are accumulated there
    _sum_positions_of_product(dy3, x3, ds)
    return scale_rows(dy3, s).reshape(x.shape), ds.astype(s.dtype)
