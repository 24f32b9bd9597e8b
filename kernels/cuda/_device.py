"""What every CUDA twin shares: the launch geometry, flat index arithmetic and the block-wide sum. (The
argument checks are the CPU files' own, run on device arrays by ``_checks.check_device_array``.)

The twins take and return ``numba.cuda`` device arrays (``cuda.to_device(x)``, ``cuda.device_array``),
float32 and C-contiguous, so that a reshape is a free view, just as NHWC makes it on the CPU.

Launch geometry: most kernels run **one thread per output element**, in 1-D blocks of
``THREADS_PER_BLOCK`` threads and ``blocks_for(count)`` blocks; thread ``t = cuda.grid(1)`` computes
element ``t`` of the flattened output and threads past the end do nothing.

Sums over many elements (batch-norm statistics, weight gradients, pooling) run **one block per output
value**: the block's threads stride over the values being summed, each keeping a partial sum, and
``block_sum`` adds the partials with a tree reduction in shared memory. Every sum then has a fixed
order (the result does not depend on scheduling, unlike atomics) and needs no second kernel. Partial
sums are float64, as on the CPU, so the statistics of a large batch stay accurate in float32.
"""

import math

import numba
from numba import cuda

# A power of two (for the tree reduction in ``block_sum``), and the smallest block that still lets a
# multiprocessor hold its full 2048 threads when it can host at most 32 blocks (NVIDIA GPUs since Volta).
THREADS_PER_BLOCK = 64


def blocks_for(count):
    """Number of 1-D blocks that give ``count`` elements one thread each (at least one block)."""
    return max(1, math.ceil(count / THREADS_PER_BLOCK))


@cuda.jit(device=True, cache=True)
def split_index(t, middle, last):
    """``(a, b, c)`` with ``t = (a·middle + b)·last + c``: flat index t of a C-contiguous (·, middle, last) array."""
    return t // (middle * last), (t // last) % middle, t % last


@cuda.jit(device=True, cache=True)
def block_sum(partial):
    """Sum ``partial`` over the threads of a 1-D block of ``THREADS_PER_BLOCK``; every thread gets the total.

    Tree reduction: in each round the first half of the threads adds the second half's values to its
    own, halving the count until ``shared[0]`` holds the total. Every thread of the block must call it."""
    shared = cuda.shared.array(THREADS_PER_BLOCK, numba.float64)
    t = cuda.threadIdx.x
    shared[t] = partial
    cuda.syncthreads()
    half = THREADS_PER_BLOCK // 2
    while half > 0:
        if t < half:
            shared[t] += shared[t + half]
        cuda.syncthreads()
        half //= 2
    total = shared[0]
    cuda.syncthreads()  # everyone has read the total before a next call overwrites ``shared``
    return total
