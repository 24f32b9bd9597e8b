"""Pointwise (1×1) convolution: the same linear map of channels applied at every pixel.

Shapes (NHWC)::

    x: (N, H, W, C_in)    w: (C_in, C_out)    y: (N, H, W, C_out)

    y[n, h, v, d] = Σ_c x[n, h, v, c] · w[c, d]

Because NHWC keeps each pixel's channels contiguous, ``x`` reshapes for free into a matrix
``X = (N·H·W, C_in)`` and the convolution is one matrix product ``Y = X @ w``. That is matrix-shaped
work, so it goes to NumPy's BLAS rather than to a Numba loop: BLAS blocks it for the caches and the SIMD
units better than any loop written here (``matmul.py`` splits a large product among the threads). No
padding and no stride: EfficientNet's 1×1 convolutions (MBConv expand and project, the head) all have
stride 1.

Backward, with ``dY = ∂L/∂Y`` as a ``(N·H·W, C_out)`` matrix::

    dX = dY @ wᵀ        dw = Xᵀ @ dY

(``matmul.py`` runs the two at the same time, each on its share of the threads, by blocks of whole output
elements: each element is the same sum whichever thread computes it.)
"""

from ._checks import check_array, check_shape
from .matmul import matmul, matmul_backward


def _checked(x, w, check=check_array):
    """Check x (N, H, W, C_in) and w (C_in, C_out), arrays of the kind ``check`` and one dtype; return both."""
    x = check("x", x, ndim=4)
    w = check("w", w, ndim=2, dtype=x.dtype)
    if w.shape[0] != x.shape[3]:
        raise ValueError(f"w has {w.shape[0]} input channels but x has {x.shape[3]}; a pointwise w is (C_in, C_out)")
    return x, w


def _checked_backward(x, w, dy, check=check_array):
    """The forward's checks, and dy (N, H, W, C_out) of x's kind and dtype; return x, w, dy."""
    x, w = _checked(x, w, check)
    dy = check("dy", dy, ndim=4, dtype=x.dtype)
    check_shape("dy", dy, x.shape[:3] + (w.shape[1],))
    return x, w, dy


def pointwise_conv_forward(x, w):
    """1×1 convolution ``y = x @ w`` over the channel axis.

    x: (N, H, W, C_in) float32/float64, w: (C_in, C_out) same dtype. Returns y: (N, H, W, C_out)."""
    x, w = _checked(x, w)
    return matmul(x.reshape(-1, x.shape[3]), w).reshape(x.shape[:3] + (w.shape[1],))


def pointwise_conv_backward(x, w, dy):
    """Gradients of ``L = Σ y·dy`` for ``y = pointwise_conv_forward(x, w)``.

    dy: (N, H, W, C_out) in x's dtype. Returns ``(dx, dw)`` shaped like ``x`` and ``w``."""
    x, w, dy = _checked_backward(x, w, dy)
    dx_rows, dw = matmul_backward(x.reshape(-1, x.shape[3]), w, dy.reshape(-1, w.shape[1]))
    return dx_rows.reshape(x.shape), dw
