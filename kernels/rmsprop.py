"""One step of RMSProp with momentum, in TensorFlow's formulation (the EfficientNet paper's optimiser), in place.

EfficientNet was trained with ``tf.compat.v1.train.RMSPropOptimizer(lr, decay=0.9, momentum=0.9,
epsilon=1e-3)``. For a parameter θ with gradient ``grad``, decay ρ, momentum μ, L2 weight decay λ and the
two state arrays ms (the mean square of the gradient) and mom (the momentum):

    g   ← grad + λ·θ                      L2 weight decay, as the paper's loss term λ/2·‖θ‖²
    ms  ← ρ·ms + (1 − ρ)·g²
    mom ← μ·mom + lr·g / √(ms + ε)
    θ   ← θ − mom

Three things differ from PyTorch's ``torch.optim.RMSprop``, and all three are TensorFlow's (timm's
``RMSpropTF`` makes the same choices to reproduce the paper):

* ε sits inside the square root: √(ms + ε), with ε = 1e-3, not √ms + ε with ε = 1e-8;
* ms starts at **one**, not zero (TensorFlow's "rms" slot has a ones initializer; PyTorch's starts at
  zero): from one, the first steps are about lr·g, like SGD's; from zero, the first would divide g by
  √((1 − ρ)·g² + ε) ≈ 0.32·|g|, a step of about 3·lr in every coordinate whatever its gradient. The
  caller (``tinyeffnet.optim.RMSProp``) makes the arrays;
* lr multiplies inside the momentum: a change of lr acts on new gradients only, not on the velocity
  already gathered (timm offers the other order as ``lr_in_momentum=False``; this file does not).

The fused loop reads θ, grad, ms and mom once and writes θ, ms and mom. The arithmetic runs in the tensor's
own precision (the scalars are converted to its dtype first, by ``_scalars``).
"""

import math

from numba import njit, prange

from ._checks import check_in_place, check_shape
from ._threads import small_on_one_thread


@njit(parallel=True, cache=True)
def _rmsprop_update(param, grad, ms, mom, lr, decay, one_minus_decay, momentum, epsilon, weight_decay):
    """The update above over flat arrays, in parallel; param, ms and mom are written in place."""
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        ms[i] = decay * ms[i] + one_minus_decay * g * g
        mom[i] = momentum * mom[i] + lr * g / math.sqrt(ms[i] + epsilon)
        param[i] -= mom[i]


def _check_update(param, grad, ms, mom, lr, decay, momentum, epsilon, weight_decay):
    """Check the hyper-parameters and the four tensors' shapes (one shared shape; the twin checks the arrays)."""
    if not (lr >= 0 and 0 <= decay <= 1 and momentum >= 0 and epsilon > 0 and weight_decay >= 0):
        raise ValueError(f"need lr ≥ 0, 0 ≤ decay ≤ 1, momentum ≥ 0, epsilon > 0 and weight_decay ≥ 0, got "
                         f"{lr}, {decay}, {momentum}, {epsilon}, {weight_decay}")
    for name, a in (("grad", grad), ("ms", ms), ("mom", mom)):
        check_shape(name, a, param.shape)


def _scalars(lr, decay, momentum, epsilon, weight_decay, scalar):
    """The kernel's scalar arguments in the type ``scalar`` (the tensors' dtype): lr, ρ, 1 − ρ, μ, ε, λ."""
    return tuple(scalar(s) for s in (lr, decay, 1 - decay, momentum, epsilon, weight_decay))


def rmsprop_update(param, grad, ms, mom, lr, decay, momentum, epsilon, weight_decay):
    """One RMSProp step for one tensor, in place.

    param, grad, ms, mom: C-contiguous float arrays of one shape and dtype; param, ms and mom are updated.
    lr, momentum, weight_decay: floats ≥ 0; decay: ρ in [0, 1]; epsilon: float > 0."""
    (grad,) = check_in_place([("param", param), ("ms", ms), ("mom", mom)], [("grad", grad)])
    _check_update(param, grad, ms, mom, lr, decay, momentum, epsilon, weight_decay)
    with small_on_one_thread(param.size):
        _rmsprop_update(param.reshape(-1), grad.reshape(-1), ms.reshape(-1), mom.reshape(-1),
                        *_scalars(lr, decay, momentum, epsilon, weight_decay, param.dtype.type))
