"""CUDA twin of ``sgd.py``: one step of SGD with momentum and weight decay, in place, on device arrays.

Same function, arguments and formula as the CPU file (read it for the update rule). Thread mapping: one
thread per element; thread t reads θ[t], grad[t], v[t] and writes θ[t] and v[t]. The optimiser's state
(v) stays on the device with the parameters, so a training step copies nothing for the update.
"""

import numpy as np
from numba import cuda

from .._checks import check_device_array
from ..sgd import _check_update
from ._device import THREADS_PER_BLOCK, blocks_for


@cuda.jit(cache=True)
def _sgd_update_kernel(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    t = cuda.grid(1)
    if t < param.size:
        g = grad[t] + weight_decay * param[t]
        v = momentum * velocity[t] + g
        velocity[t] = v
        param[t] -= lr * (g + momentum * v) if nesterov else lr * v


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """One SGD step for one tensor, in place.

    param, grad, velocity: float32 device arrays of one shape; param and velocity are updated.
    lr, momentum, weight_decay: floats ≥ 0; nesterov: bool."""
    param, grad, velocity = (check_device_array(name, a) for name, a in
                             (("param", param), ("grad", grad), ("velocity", velocity)))
    _check_update(param, grad, velocity, lr, momentum, weight_decay)
    size = param.size
    _sgd_update_kernel[blocks_for(size), THREADS_PER_BLOCK](
        param.reshape(size), grad.reshape(size), velocity.reshape(size), np.float32(lr), np.float32(momentum),
        np.float32(weight_decay), bool(nesterov))
