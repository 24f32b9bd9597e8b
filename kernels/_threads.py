"""Small arrays on one thread: starting a parallel loop costs more than a small loop itself.

Numba's parallel loops run on OpenMP's worker threads, which sleep between loops (``GOMP_SPINCOUNT``,
``tinyeffnet/runtime.py``). Waking them costs 25–70 µs per loop (measured on the 2-core Intel Xeon), about what
one thread needs for an AdamW update of 30,000 elements. A training step calls the per-tensor kernels (the
optimisers' updates, the weight average) for some 200 tensors, most of them small — batch-norm γ and β, biases,
squeeze-and-excitation weights — so the wake-ups alone cost more than the work: AdamW took 7.9 ms of a B0 step
on one thread and 15.1 ms on two. ``small_on_one_thread`` runs a loop over fewer than ``MIN_PARALLEL_SIZE``
elements on the calling thread alone (Numba's thread count is the calling thread's own setting, restored after),
and a larger one on every thread as before. The loop is the same compiled code either way.
"""

import contextlib

import numba

MIN_PARALLEL_SIZE = 1 << 16       # elements: below this, a per-tensor update runs on one thread


@contextlib.contextmanager
def small_on_one_thread(size):
    """Within the block, Numba's parallel loops run on this thread alone if ``size`` < MIN_PARALLEL_SIZE."""
    if size >= MIN_PARALLEL_SIZE:
        yield
        return
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)
