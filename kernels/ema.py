"""An exponential moving average, in place: avg ← d·avg + (1 − d)·x, for one tensor.

``tinyeffnet.averaging.WeightAverage`` calls it after every optimiser step, for every parameter and batch-norm
running statistic, so that ``avg`` follows the weights with a memory of about 1 / (1 − d) steps (10,000 at the
EfficientNet paper's d = 0.9999). The fused loop reads avg and x once and writes avg, where
``avg *= d; avg += (1 − d)·x`` in NumPy makes a temporary array and two passes. The arithmetic runs in the
tensor's own precision (d and 1 − d are converted to its dtype first).
"""

from numba import njit, prange

from ._checks import check_in_place, check_shape
from ._threads import small_on_one_thread


@njit(parallel=True, cache=True)
def _ema_update(average, x, decay, one_minus_decay):
    """The update above over flat arrays, in parallel; average is written in place."""
    for i in prange(average.size):
        average[i] = decay * average[i] + one_minus_decay * x[i]


def _check_update(average, x, decay):
    """Check the decay and the shapes (the twin checks the arrays)."""
    if not 0 <= decay <= 1:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    check_shape("x", x, average.shape)


def ema_update(average, x, decay):
    """avg ← d·avg + (1 − d)·x, in place.

    average, x: C-contiguous float arrays of one shape and dtype; average is updated. decay: d in [0, 1]."""
    (x,) = check_in_place([("average", average)], [("x", x)])
    _check_update(average, x, decay)
    scalar = average.dtype.type
    with small_on_one_thread(average.size):
        _ema_update(average.reshape(-1), x.reshape(-1), scalar(decay), scalar(1 - decay))
