"""CUDA twin of ``rmsprop.py``: one step of RMSProp (TensorFlow's formulation), in place, on device arrays.

Same function, arguments and formula as the CPU file (read it for the update rule and for why ms starts at
one). Thread mapping: one thread per element; thread t reads θ[t], grad[t], ms[t], mom[t] and writes θ[t],
ms[t] and mom[t]. The optimiser's state stays on the device with the parameters.
"""

import math

import numpy as np
from numba import cuda

from .._checks import check_device_array
from ._device import THREADS_PER_BLOCK, blocks_for
from ..rmsprop import _check_update, _scalars


@cuda.jit(cache=True)
def _rmsprop_update_kernel(param, grad, ms, mom, lr, decay, one_minus_decay, momentum, epsilon, weight_decay):
    t = cuda.grid(1)
    if t < param.size:
        g = grad[t] + weight_decay * param[t]
        ms[t] = decay * ms[t] + one_minus_decay * g * g
        mom[t] = momentum * mom[t] + lr * g / math.sqrt(ms[t] + epsilon)
        param[t] -= mom[t]


def rmsprop_update(param, grad, ms, mom, lr, decay, momentum, epsilon, weight_decay):
    """One RMSProp step for one tensor, in place.

    param, grad, ms, mom: float32 device arrays of one shape; param, ms and mom are updated.
    lr, momentum, weight_decay: floats ≥ 0; decay: ρ in [0, 1]; epsilon: float > 0."""
    param, grad, ms, mom = (check_device_array(name, a) for name, a in
                            (("param", param), ("grad", grad), ("ms", ms), ("mom", mom)))
    _check_update(param, grad, ms, mom, lr, decay, momentum, epsilon, weight_decay)
    size = param.size
    _rmsprop_update_kernel[blocks_for(size), THREADS_PER_BLOCK](
        param.reshape(size), grad.reshape(size), ms.reshape(size), mom.reshape(size),
        *_scalars(lr, decay, momentum, epsilon, weight_decay, np.float32))
