"""Matrix products on every thread of the CPU: one block of the output per thread, each block one BLAS call.

    matmul(a, b)       a @ b      a: (M, K), b: (K, N)  →  (M, N)    the rows of the output split among threads
    matmul_backward(x, w, dy)     dy @ wᵀ (M, K) and xᵀ @ dy (K, N)    for x: (M, K), w: (K, N), dy: (M, N); at
                                  once, the rows of the first and the columns of the second split

The pointwise convolutions (``pointwise.py``, and through it the dense ones of ``conv2d.py``) are such
products, the largest share of a training step. NumPy's BLAS runs one thread here (``tinyeffnet/runtime.py``
says why: two thread pools that spin on the same cores starve each other), so each product alone would keep
one core busy while the other waits. Here the blocks run at the same time, one per thread, in one of two ways:

* **compiled** (``_compiled_row_blocks``, ``_compiled_backward_blocks``): a Numba parallel loop whose every
  iteration is one BLAS call (``blas.gemm``, NumPy's own OpenBLAS called from compiled code). The blocks run
  on the threads that run every other kernel, so they start as fast as any parallel loop does.
* **Python threads** (``_run``), where ``blas.py`` finds no BLAS it can call (NumPy built on MKL or Apple's
  Accelerate): the calling thread computes the first block and the others are handed to a pool of
  ``NUMBA_NUM_THREADS − 1`` Python threads; NumPy lets go of Python's lock inside BLAS. Each hand-over costs a
  wake-up and Python's lock, and the pool's thread shares its core with OpenMP's, still spinning after the
  kernel before: on the 2-core Intel Xeon, the 33 products of one 224×224 image through B0 took 7.7 ms split
  that way against 5.7 ms whole, and 3.6 ms split the compiled way.

A block holds whole output elements, each the same K-long (for ``xᵀ @ dy``: M-long) sum as in the
unsplit product, so splitting changes who computes an element, not how: the tests compare both ways with the
plain ``a @ b``. A product under ``MIN_SPLIT_MACS`` multiply-adds (``MIN_SPLIT_MACS_PYTHON_THREADS`` the other
way) stays one call, in the calling thread.
Measured on the 2-core Intel Xeon, 2026-12-07, the compiled way at 1 M against the Python threads at 16 M
(the setting before; A/B in one process, interleaved rounds, medians): B0 inference of one image at 224×224
21.9 → 15.0 ms, at 128×128 10.8 → 7.8 ms, at 64×64 5.0 → 4.2 ms; batch 32 at 32×32 17.1 → 13.1 ms and at
224×224 335 → 332 ms; training steps at 32×32 (SGD, batch 32, paper's stem) 80.1 → 65.6 ms, (batch 128, CIFAR
stem) 471.8 → 457.5 ms, at 128×128 (batch 32) 474.4 → 464.1 ms; V2-B0's at 32×32 (batch 128) 201.5 → 186.2 ms.
Compiled, 4 M and 256 K were each better at some of these and worse at others.

A backward pass needs two products of one size, ``dX = dY @ wᵀ`` and ``dw = Xᵀ @ dY`` (M·K·N multiply-adds each).
``matmul_backward`` computes them at the same time, half the threads each: on two threads each product runs
whole on its own core — one fork and join instead of two, and no thin blocks (a projection's dY has as few as
16 columns to split). Measured on the 2-core Intel Xeon over the pointwise convolutions of a B0 training step
at 32×32, batch 128: 62.6 ms against 80.7 ms for the two products split one after the other (Python threads).
"""

import functools
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange

from . import blas
from .blas import gemm

MIN_SPLIT_MACS = 1 << 20                    # below this a product is one BLAS call (see above) ...
MIN_SPLIT_MACS_PYTHON_THREADS = 1 << 24     # ... or this, on Python threads (B0, one 224×224 image: 24.6 ms at 1 M,
                                            # 22.4 ms at 16 M; 2-core Intel Xeon, 2026-12-07)


@functools.cache
def _pool():
    """The helper threads, made on first use: as many as Numba may run, less the caller's own."""
    return ThreadPoolExecutor(max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                              thread_name_prefix="tinyeffnet-matmul")


def _block_count(macs, threads, compiled):
    """How many blocks a product of ``macs`` multiply-adds is split into: ``threads`` (default Numba's current
    count), or one under the threshold of the way the blocks run (``compiled`` or not)."""
    threads = numba.get_num_threads() if threads is None else threads
    return 1 if macs < (MIN_SPLIT_MACS if compiled else MIN_SPLIT_MACS_PYTHON_THREADS) else threads


def _edges(macs, length, threads, compiled):
    """Where the blocks of an axis of ``length`` begin and end: ``_block_count(macs, threads, compiled)`` nearly
    equal blocks (at most one per element of the axis)."""
    return _split(length, _block_count(macs, threads, compiled))


def _split(length, parts):
    """The edges of ``parts`` nearly equal blocks of an axis of ``length`` (at most ``length`` blocks)."""
    parts = max(1, min(parts, length))
    return [length * i // parts for i in range(parts + 1)]


def _run(calls):
    """Run the functions ``calls`` at the same time: the first in this thread, the others on the pool."""
    futures = [_pool().submit(call) for call in calls[1:]]
    calls[0]()
    for future in futures:
        future.result()                 # waits, and raises what the block raised


def _check_shapes(a_shape, b_shape):
    """a @ b's inner sizes must agree (checked here: a compiled BLAS call would read past the end)."""
    if a_shape[1] != b_shape[0]:
        raise ValueError(f"matmul: {a_shape} @ {b_shape}, the inner sizes differ ({a_shape[1]} and {b_shape[0]})")


def _compiled(*arrays):
    """Whether the blocks can be BLAS calls from a Numba loop (``blas.py``): NumPy's BLAS found, one float
    dtype, and every operand one that ``blas.accepts`` (the outputs, made here, are row-major)."""
    dtype = arrays[0].dtype
    return (blas.AVAILABLE and dtype in (np.float32, np.float64)
            and all(a.dtype == dtype and blas.accepts(a) for a in arrays))


@njit(parallel=True, cache=True)
def _compiled_row_blocks(a, b, out, edges):
    """out[i:j] = a[i:j] @ b for the blocks of rows between ``edges``, one per thread."""
    for p in prange(len(edges) - 1):
        gemm(a[edges[p]:edges[p + 1]], b, out[edges[p]:edges[p + 1]])


@njit(parallel=True, cache=True)
def _compiled_backward_blocks(x, w, dy, dx, dw, dx_edges, dw_edges):
    """dx[i:j] = dy[i:j] @ wᵀ for the row blocks between ``dx_edges`` and dw[:, i:j] = xᵀ @ dy[:, i:j] for the
    column blocks between ``dw_edges``, one block per thread."""
    dx_blocks = len(dx_edges) - 1
    for p in prange(dx_blocks + len(dw_edges) - 1):
        if p < dx_blocks:
            i, j = dx_edges[p], dx_edges[p + 1]
            gemm(dy[i:j], w.T, dx[i:j])
        else:
            i, j = dw_edges[p - dx_blocks], dw_edges[p - dx_blocks + 1]
            gemm(x.T, dy[:, i:j], dw[:, i:j])


def _blocks(edges):
    """The (start, stop) pairs of the blocks between ``edges``."""
    return list(zip(edges, edges[1:]))


def matmul(a, b, threads=None):
    """a @ b for a: (M, K) and b: (K, N) float arrays of one dtype, out[i:j] = a[i:j] @ b on each thread's
    rows i:j. Returns (M, N). ``threads``: how many blocks (default ``numba.get_num_threads()``)."""
    _check_shapes(a.shape, b.shape)
    (m, k), n = a.shape, b.shape[1]
    compiled = _compiled(a, b)
    edges = _edges(m * k * n, m, threads, compiled)
    if len(edges) == 2:
        return a @ b
    out = np.empty((m, n), dtype=np.result_type(a, b))
    if compiled:
        _compiled_row_blocks(a, b, out, np.array(edges))
    else:
        _run([functools.partial(np.matmul, a[i:j], b, out=out[i:j]) for i, j in _blocks(edges)])
    return out


def matmul_backward(x, w, dy, threads=None):
    """The two products of the backward of ``y = x @ w``, at the same time: ``dy @ wᵀ`` (M, K) and ``xᵀ @ dy``
    (K, N), for x: (M, K), w: (K, N), dy: (M, N) float arrays of one dtype. ``threads`` (default
    ``numba.get_num_threads()``) are shared: ⌈threads/2⌉ blocks of dy @ wᵀ's rows, ⌊threads/2⌋ of xᵀ @ dy's
    columns; on one thread, or under the threshold (see above), the two run one after the other in this thread."""
    _check_shapes(x.shape, w.shape)
    _check_shapes(dy.shape, w.T.shape)
    _check_shapes(x.T.shape, dy.shape)
    (m, k), n = x.shape, w.shape[1]
    compiled = _compiled(x, w, dy)
    threads = _block_count(m * k * n, threads, compiled)
    if threads == 1:
        return dy @ w.T, x.T @ dy
    dx_edges, dw_edges = _split(m, (threads + 1) // 2), _split(n, threads // 2)
    dtype = np.result_type(x, w, dy)
    dx, dw = np.empty((m, k), dtype=dtype), np.empty((k, n), dtype=dtype)
    if compiled:
        _compiled_backward_blocks(x, w, dy, dx, dw, np.array(dx_edges), np.array(dw_edges))
    else:
        _run([functools.partial(np.matmul, dy[i:j], w.T, out=dx[i:j]) for i, j in _blocks(dx_edges)]
             + [functools.partial(np.matmul, x.T, dy[:, i:j], out=dw[:, i:j]) for i, j in _blocks(dw_edges)])
    return dx, dw
