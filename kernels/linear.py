"""The fully connected classifier layer: y = x @ w + b.

    x: (N, F_in)   w: (F_in, F_out)   b: (F_out,)   y: (N, F_out)

Backward, with ``dy = ∂L/∂y`` of shape (N, F_out):

    dx = dy @ wᵀ        dw = xᵀ @ dy        db = Σ_n dy[n]

No Numba loop here: every step is a matrix product, and NumPy's ``@`` hands
it to BLAS, which is blocked for the cache and multithreaded; a hand-written triple loop would be
slower and no clearer than the formula.
"""

from ._checks import check_array, check_shape


def _check_forward(x, w, b, check=check_array):
    """Check x (N, F_in), w (F_in, F_out), b (F_out,), arrays of the kind ``check`` and one dtype."""
    x = check("x", x, ndim=2)
    w = check("w", w, ndim=2, dtype=x.dtype)
    b = check("b", b, ndim=1, dtype=x.dtype)
    check_shape("w", w, (x.shape[1], None))
    check_shape("b", b, (w.shape[1],))
    return x, w, b


def _check_backward(x, w, dy, check=check_array):
    """Check x (N, F_in), w (F_in, F_out), dy (N, F_out), arrays of the kind ``check`` and one dtype."""
    x = check("x", x, ndim=2)
    w = check("w", w, ndim=2, dtype=x.dtype)
    dy = check("dy", dy, ndim=2, dtype=x.dtype)
    check_shape("w", w, (x.shape[1], None))
    check_shape("dy", dy, (x.shape[0], w.shape[1]))
    return x, w, dy


def linear_forward(x, w, b):
    """y = x @ w + b. x: (N, F_in), w: (F_in, F_out), b: (F_out,), one float dtype. Returns (N, F_out)."""
    x, w, b = _check_forward(x, w, b)
    return x @ w + b


def linear_backward(x, w, dy):
    """Gradients of y = x @ w + b. x: (N, F_in), w: (F_in, F_out), dy: (N, F_out).

    Returns ``(dx, dw, db)`` = (dy @ wᵀ, xᵀ @ dy, Σ_n dy), shaped like x, w and b."""
    x, w, dy = _check_backward(x, w, dy)
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)
