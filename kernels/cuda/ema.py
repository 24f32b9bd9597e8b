"""CUDA twin of ``ema.py``: an exponential moving average, avg ← d·avg + (1 − d)·x, in place, on device arrays.

Same function, arguments and formula as the CPU file. Thread mapping: one thread per element; thread t reads
avg[t] and x[t] and writes avg[t]. The averaged weights stay on the device beside the model's.
"""

import numpy as np
from numba import cuda

from .._checks import check_device_array
from ._device import THREADS_PER_BLOCK, blocks_for
from ..ema import _check_update


@cuda.jit(cache=True)
def _ema_update_kernel(average, x, decay, one_minus_decay):
    t = cuda.grid(1)
    if t < average.size:
        average[t] = decay * average[t] + one_minus_decay * x[t]


def ema_update(average, x, decay):
    """avg ← d·avg + (1 − d)·x, in place.

    average, x: float32 device arrays of one shape; average is updated. decay: d in [0, 1]."""
    average, x = check_device_array("average", average), check_device_array("x", x)
    _check_update(average, x, decay)
    size = average.size
    _ema_update_kernel[blocks_for(size), THREADS_PER_BLOCK](
        average.reshape(size), x.reshape(size), np.float32(decay), np.float32(1 - decay))
