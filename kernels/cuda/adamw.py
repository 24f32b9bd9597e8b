"""CUDA twin of ``adamw.py``: one step of AdamW (decoupled weight decay), in place, on device arrays.

Same function, arguments and formula as the CPU file (read it for the update rule); the bias corrections are
the same host-side scalars (``_scalars``). Thread mapping: one thread per element; thread t reads θ[t], g[t],
m[t], v[t] and writes θ[t], m[t] and v[t]. The optimiser's state stays on the device with the parameters.
"""

import math

import numpy as np
from numba import cuda

from .._checks import check_device_array
from ._device import THREADS_PER_BLOCK, blocks_for
from ..adamw import _check_update, _scalars


@cuda.jit(cache=True)
def _adamw_update_kernel(param, grad, m, v, shrink, beta1, one_minus_beta1, beta2, one_minus_beta2, epsilon,
                         step_size, sqrt_correction2):
    t = cuda.grid(1)
    if t < param.size:
        g = grad[t]
        m[t] = beta1 * m[t] + one_minus_beta1 * g
        v[t] = beta2 * v[t] + one_minus_beta2 * g * g
        param[t] = shrink * param[t] - step_size * m[t] / (math.sqrt(v[t]) / sqrt_correction2 + epsilon)


def adamw_update(param, grad, m, v, lr, beta1, beta2, epsilon, weight_decay, step):
    """One AdamW step for one tensor, in place.

    param, grad, m, v: float32 device arrays of one shape; param, m and v are updated.
    lr, weight_decay: floats ≥ 0; beta1, beta2 in [0, 1); epsilon > 0; step: t, an int ≥ 1."""
    param, grad, m, v = (check_device_array(name, a) for name, a in
                         (("param", param), ("grad", grad), ("m", m), ("v", v)))
    _check_update(param, grad, m, v, lr, beta1, beta2, epsilon, weight_decay, step)
    size = param.size
    _adamw_update_kernel[blocks_for(size), THREADS_PER_BLOCK](
        param.reshape(size), grad.reshape(size), m.reshape(size), v.reshape(size),
        *_scalars(lr, beta1, beta2, epsilon, weight_decay, step, np.float32))
