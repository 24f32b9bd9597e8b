"""One step of stochastic gradient descent with momentum and weight decay, in place, for one tensor.

PyTorch's formulation, with learning rate lr, momentum μ and weight decay λ, for a parameter θ with
gradient ``grad`` and momentum buffer v:

    g ← grad + λ·θ
    v ← μ·v + g
    θ ← θ − lr·(g + μ·v)        Nesterov momentum
    θ ← θ − lr·v                plain (heavy-ball) momentum

``tinyeffnet.optim.SGD`` calls it for every parameter (with λ = 0 for the tensors it does not decay). The
fused loop reads θ, grad and v once and writes θ and v, where the same lines in NumPy make four temporary
arrays. The arithmetic runs in the tensor's own precision (lr, μ, λ are converted to its dtype first).
"""

from numba import njit, prange

from ._checks import check_in_place, check_shape
from ._threads import small_on_one_thread


@njit(parallel=True, cache=True)
def _sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """The update above over flat arrays, in parallel; param and velocity are written in place."""
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        v = momentum * velocity[i] + g
        velocity[i] = v
        param[i] -= lr * (g + momentum * v) if nesterov else lr * v


def _check_update(param, grad, velocity, lr, momentum, weight_decay):
    """Check the hyper-parameters and the three tensors' shapes (one shared shape; the twin checks the arrays)."""
    if not (lr >= 0 and momentum >= 0 and weight_decay >= 0):
        raise ValueError(f"lr, momentum and weight_decay must be ≥ 0, got {lr}, {momentum}, {weight_decay}")
    check_shape("grad", grad, param.shape)
    check_shape("velocity", velocity, param.shape)


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """One SGD step for one tensor, in place.

    param, grad, velocity: C-contiguous float arrays of one shape and dtype; param and velocity are updated.
    lr, momentum, weight_decay: floats ≥ 0; nesterov: bool."""
    (grad,) = check_in_place([("param", param), ("velocity", velocity)], [("grad", grad)])
    _check_update(param, grad, velocity, lr, momentum, weight_decay)
    scalar = param.dtype.type
    with small_on_one_thread(param.size):
        _sgd_update(param.reshape(-1), grad.reshape(-1), velocity.reshape(-1), scalar(lr), scalar(momentum),
                    scalar(weight_decay), bool(nesterov))
