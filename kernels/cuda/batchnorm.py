"""CUDA twin of ``batchnorm.py``, the parts a GPU run uses: the batch statistics and the running averages.

The network normalises with the fused ``batchnorm_act`` twin (``cuda/batchnorm_act.py``), which takes
its batch mean and variance from ``_moments_kernel`` here; the unfused normalisation of ``batchnorm.py``
is the CPU reference the fused kernel is tested against, and has no twin. ``x`` (..., C) is seen as
``(M, C)`` with ``M = N·H·W`` values per channel.

Thread mapping:

* statistics: **one block per channel** ``c = blockIdx.x``. The block's threads stride over the M values
  of the channel (thread t takes m = t, t + T, t + 2T, … for T = THREADS_PER_BLOCK) and ``block_sum``
  adds their partial sums in shared memory (float64, a fixed order: no atomics, so the result is the
  same on every run).
* running averages: one thread per channel.

Neighbouring threads of a block read values C floats apart (the channel is the fast axis), which is
not the fastest access pattern on a GPU; it keeps every channel's sum inside one block and the code short.
"""

from numba import cuda

from .._checks import check_device_array
from ..batchnorm import _check_running_stats
from ._device import THREADS_PER_BLOCK, block_sum, blocks_for


@cuda.jit(cache=True)
def _moments_kernel(x, mean, var):
    """mean[c], var[c] of x (M, C) over M for the block's channel c: mean first, then squared deviations."""
    c = cuda.blockIdx.x
    count = x.shape[0]
    total = 0.0
    for m in range(cuda.threadIdx.x, count, THREADS_PER_BLOCK):
        total += x[m, c]
    mu = block_sum(total) / count
    squares = 0.0
    for m in range(cuda.threadIdx.x, count, THREADS_PER_BLOCK):
        d = x[m, c] - mu
        squares += d * d
    sigma2 = block_sum(squares) / count
    if cuda.threadIdx.x == 0:
        mean[c] = mu
        var[c] = sigma2


@cuda.jit(cache=True)
def _running_stats_kernel(running_mean, running_var, mean, var, bessel, momentum, new_mean, new_var):
    """One thread per channel: the moving averages of ``update_running_stats``."""
    c = cuda.grid(1)
    if c < mean.size:
        new_mean[c] = momentum * running_mean[c] + (1.0 - momentum) * mean[c]
        new_var[c] = momentum * running_var[c] + (1.0 - momentum) * var[c] * bessel


def update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """Exponential moving averages of the batch statistics, as in ``batchnorm.update_running_stats``:

        new_mean = momentum · running_mean + (1 − momentum) · mean
        new_var  = momentum · running_var  + (1 − momentum) · var · count / (count − 1)

    (the biased variance for ``count == 1``). All four arrays are (C,) float32 device arrays;
    returns new device arrays and leaves the inputs unchanged.
    """
    running_mean, running_var, mean, var = _check_running_stats(running_mean, running_var, mean, var, count,
                                                                momentum, check_device_array)
    bessel = count / (count - 1) if count > 1 else 1.0
    new_mean = cuda.device_array_like(running_mean)
    new_var = cuda.device_array_like(running_var)
    channels = running_mean.shape[0]
    _running_stats_kernel[blocks_for(channels), THREADS_PER_BLOCK](
        running_mean, running_var, mean, var, bessel, momentum, new_mean, new_var
    )
    return new_mean, new_var
