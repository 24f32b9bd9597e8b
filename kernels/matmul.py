"""Matrix products on every thread of the CPU: one block of the output per thread, each block one BLAS call.

    matmul(a, b)       a @ b      a: (M, K), b: (K, N)  →  (M, N)    the rows of the output split among threads
    matmul_tn(a, b)    aᵀ @ b     a: (M, K), b: (M, N)  →  (K, N)    the columns of the output split among threads

The pointwise convolutions (``pointwise.py``, and through it the dense ones of ``conv2d.py``) are such
products, the largest share of a training step. NumPy's BLAS runs one thread here (``tinyeffnet/runtime.py``
says why: two thread pools that spin on the same cores starve each other), so each product alone would keep
one core busy while the other waits. Here the calling thread computes the first block and the others
are handed to a pool of ``numba.get_num_threads() − 1`` Python threads, one block each; NumPy lets go of
Python's lock inside BLAS, so the blocks run at the same time. Each thread waits for its work without
spinning, so a second program on the same cores loses nothing to it.

A block holds whole output elements, each the same K-long (for ``matmul_tn``: M-long) sum as in the
unsplit product, so splitting changes who computes an element, not how: the tests compare both with the
plain ``a @ b``. A product under ``MIN_SPLIT_MACS`` multiply-adds stays one call, as handing a block to a
thread costs tens of microseconds.
"""

import functools
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

MIN_SPLIT_MACS = 1 << 20      # ~30 µs of one core's BLAS: below this a product is not split


@functools.cache
def _pool():
    """The helper threads, made on first use: as many as Numba may run, less the caller's own."""
    return ThreadPoolExecutor(max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                              thread_name_prefix="tinyeffnet-matmul")


def _edges(macs, length, threads):
    """Where the blocks of an axis of ``length`` begin and end: ``threads`` (default Numba's current count)
    nearly equal blocks, or one block for a product of fewer than MIN_SPLIT_MACS multiply-adds."""
    threads = numba.get_num_threads() if threads is None else threads
    parts = 1 if macs < MIN_SPLIT_MACS else max(1, min(threads, length))
    return [length * i // parts for i in range(parts + 1)]


def _run(calls):
    """Run the functions ``calls`` at the same time: the first in this thread, the others on the pool."""
    futures = [_pool().submit(call) for call in calls[1:]]
    calls[0]()
    for future in futures:
        future.result()                 # waits, and raises what the block raised


def matmul(a, b, threads=None):
    """a @ b for a: (M, K) and b: (K, N) float arrays of one dtype, out[i:j] = a[i:j] @ b on each thread's
    rows i:j. Returns (M, N). ``threads``: how many blocks (default ``numba.get_num_threads()``)."""
    (m, k), n = a.shape, b.shape[1]
    edges = _edges(m * k * n, m, threads)
    if len(edges) == 2:
        return a @ b
    out = np.empty((m, n), dtype=np.result_type(a, b))
    _run([functools.partial(np.matmul, a[i:j], b, out=out[i:j]) for i, j in zip(edges, edges[1:])])
    return out


def matmul_tn(a, b, threads=None):
    """aᵀ @ b for a: (M, K) and b: (M, N) float arrays of one dtype (e.g. a weight gradient Xᵀ @ dY, summed
    over M rows), out[:, i:j] = aᵀ @ b[:, i:j] on each thread's columns i:j, so every sum over M stays in one
    thread. Returns (K, N). ``threads`` as in ``matmul``."""
    (m, k), n = a.shape, b.shape[1]
    edges = _edges(m * k * n, n, threads)
    if len(edges) == 2:
        return a.T @ b
    out = np.empty((k, n), dtype=np.result_type(a, b))
    _run([functools.partial(np.matmul, a.T, b[:, i:j], out=out[:, i:j]) for i, j in zip(edges, edges[1:])])
    return out
