"""One step of AdamW (Loshchilov & Hutter, 2019: Adam with decoupled weight decay), in place, for one tensor.

PyTorch's formulation (``torch.optim.AdamW``), with learning rate lr, moment decays β1, β2, ε and weight
decay λ, for a parameter θ with gradient g, first moment m, second moment v and step count t (1 at the first
step):

    θ ← θ·(1 − lr·λ)                     decoupled: the decay never passes through m or v
    m ← β1·m + (1 − β1)·g
    v ← β2·v + (1 − β2)·g²
    θ ← θ − lr·m̂ / (√v̂ + ε)             m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t)

m and v start at zero, so early averages are too small; the bias corrections m̂, v̂ undo that. As PyTorch,
the last line is computed as θ − (lr / (1 − β1^t))·m / (√v / √(1 − β2^t) + ε): the two corrections are
scalars, worked out once per call on the host (``_scalars``), in float64 and then in the tensor's dtype.

The fused loop reads θ, g, m and v once and writes θ, m and v.
"""

import math

import numpy as np
from numba import njit, prange

from ._checks import check_in_place, check_shape
from ._threads import small_on_one_thread


@njit(parallel=True, cache=True)
def _adamw_update(param, grad, m, v, shrink, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon, step_size,
                  sqrt_correction2):
    """The update above over flat arrays, in parallel; param, m and v are written in place.

    shrink = 1 − lr·λ, step_size = lr / (1 − β1^t), sqrt_correction2 = √(1 − β2^t)."""
    for i in prange(param.size):
        g = grad[i]
        m[i] = beta1 * m[i] + one_minus_beta1 * g
        v[i] = beta2 * v[i] + one_minus_beta2 * g * g
        param[i] = shrink * param[i] - step_size * m[i] / (math.sqrt(v[i]) / sqrt_correction2 + epsilon)


def _check_update(param, grad, m, v, lr, beta1, beta2, epsilon, weight_decay, step):
    """Check the hyper-parameters and the four tensors' shapes (one shared shape; the twin checks the arrays)."""
    if not (lr >= 0 and 0 <= beta1 < 1 and 0 <= beta2 < 1 and epsilon > 0 and weight_decay >= 0):
        raise ValueError(f"need lr ≥ 0, 0 ≤ beta1 < 1, 0 ≤ beta2 < 1, epsilon > 0 and weight_decay ≥ 0, got "
                         f"{lr}, {beta1}, {beta2}, {epsilon}, {weight_decay}")
    if not (isinstance(step, (int, np.integer)) and step >= 1):
        raise ValueError(f"step must be an integer ≥ 1 (the count of steps, this one included), got {step!r}")
    for name, a in (("grad", grad), ("m", m), ("v", v)):
        check_shape(name, a, param.shape)


def _scalars(lr, beta1, beta2, epsilon, weight_decay, step, scalar):
    """The kernel's scalar arguments in the type ``scalar`` (the tensors' dtype), the bias corrections of
    step t included: 1 − lr·λ, β1, 1 − β1, β2, 1 − β2, ε, lr / (1 − β1^t), √(1 − β2^t)."""
    values = (1 - lr * weight_decay, beta1, 1 - beta1, beta2, 1 - beta2, epsilon, lr / (1 - beta1**step),
              math.sqrt(1 - beta2**step))
    return tuple(scalar(s) for s in values)


def adamw_update(param, grad, m, v, lr, beta1, beta2, epsilon, weight_decay, step):
    """One AdamW step for one tensor, in place.

    param, grad, m, v: C-contiguous float arrays of one shape and dtype; param, m and v are updated.
    lr, weight_decay: floats ≥ 0; beta1, beta2 in [0, 1); epsilon > 0; step: t, an int ≥ 1."""
    (grad,) = check_in_place([("param", param), ("m", m), ("v", v)], [("grad", grad)])
    _check_update(param, grad, m, v, lr, beta1, beta2, epsilon, weight_decay, step)
    with small_on_one_thread(param.size):
        _adamw_update(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
                      *_scalars(lr, beta1, beta2, epsilon, weight_decay, step, param.dtype.type))
