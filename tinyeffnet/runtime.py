"""Process settings that the kernels' speed depends on, made once when ``tinyeffnet`` is imported.

Each is a default: a setting the user made (the environment variable named) is left as it is.

* **One BLAS thread** (``OPENBLAS_NUM_THREADS``). The kernels' parallel loops run on Numba's thread pool, and
  ``kernels/matmul.py`` splits the large matrix products among threads itself. OpenBLAS (behind NumPy's
  products) keeps a second pool whose threads spin between calls; with both on the same cores each steals the
  other's time (measured on 2 cores: 2.2 s per B0 training step with both pools, 0.57 s with BLAS
  single-threaded). Before NumPy is loaded the environment variable does it; once it is loaded (a notebook
  that imported NumPy first) ``threadpoolctl`` sets the loaded BLAS to one thread: without that, a B0
  training step at 32×32 ran 20–25 % slower (AMD EPYC, 2 cores, 2026-12-06).
* **Short spinning** (``GOMP_SPINCOUNT``). Numba runs parallel loops on OpenMP (libgomp) when it finds it.
  Between loops, OpenMP's idle threads spin for about 300,000 iterations by default before they sleep. A
  training step runs about a thousand short parallel loops, so when anything else wants the cores, the
  spinning threads take the time the working ones need: measured on 2 cores with other programs running,
  10 s per B0 training step with the default against 0.45 s with a spin count of 1000. Too short a spin costs
  too: a sleeping thread takes 25–70 µs to wake, at every loop that follows a moment of Python. 10,000 keeps
  the threads awake across those gaps but not across a matrix product (where ``kernels/matmul.py`` hands its
  blocks to Python threads, they would share their cores with a spinning one; its compiled blocks run on these
  same threads). The table, not that argument, chose it. Measured on the 2-core Intel Xeon, 2026-12-07, B0 at 32×32,
  batch 128 (``python -m tinyeffnet.bench --concurrent 2 --steps 40``: one training alone / two at once, each):

      spin count    1,000       3,000       10,000      100,000
      alone         727 img/s   788         815
      two at once   517 (71 %)  471 (60 %)  389 (48 %)
      step          475 ms      452         447         517          (the default recipe's step: mean of 2–4 medians of 30)

  Read when libgomp loads, so set before Numba's first parallel loop.

The variables are set in ``os.environ``, so programs this process starts inherit them. For another library
timed beside tinyeffnet that is wrong: PyTorch's OpenMP reads ``GOMP_SPINCOUNT`` too, and ran B0 inference on
one 224×224 image in 52 ms with the inherited 1,000, 34 ms with 10,000 and 26 ms with its own default.
``users_environment()`` gives the environment as the user had it, without what ``configure`` added;
``tinyeffnet.bench`` starts its PyTorch workers with it, and ``tools/train_torch.py`` restores it before it
imports torch.
* **Freed memory kept for reuse** (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``; glibc only). Every
  kernel returns a new array, and a step allocates and frees the same large activations again and again.
  glibc hands blocks above a threshold (at most 32 MiB) straight back to the kernel and maps them anew on the
  next allocation, whose first touch then faults in and zeroes every page: a fifth of an inference pass at
  224×224 went to the kernel (``sys`` time). ``mallopt`` raises both thresholds, so freed blocks stay in the
  heap and the next step reuses them: B0 inference at 224×224, batch 32, 1.05 → 0.83 s per pass, the same peak
  memory (AMD EPYC, 2 cores, 2026-12-06). The memory a process has used stays with it until it exits.
"""

import ctypes
import os
import sys

BLAS_THREADS = 1
GOMP_SPINCOUNT = 10_000
MALLOC_KEEP = 2**31 - 1     # bytes: mallopt's thresholds are C ints, so this is as high as they go
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3     # mallopt's parameter numbers (glibc's malloc.h)


_added = {}     # the environment variables configure() set, by name: those the user had not set


def configure():
    """Make the three settings above, each unless the user made it. Called by ``tinyeffnet/__init__.py``."""
    if "numpy" not in sys.modules:
        _set_default("OPENBLAS_NUM_THREADS", str(BLAS_THREADS))
    elif "OPENBLAS_NUM_THREADS" not in os.environ:
        import threadpoolctl
        threadpoolctl.threadpool_limits(BLAS_THREADS, user_api="blas")
    _set_default("GOMP_SPINCOUNT", str(GOMP_SPINCOUNT))
    if not {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ):
        keep_freed_memory()


def _set_default(name, value):
    """os.environ[name] = value unless the user set it; remembered in ``_added``."""
    if name not in os.environ:
        os.environ[name] = _added[name] = value


def users_environment():
    """A copy of os.environ without the variables ``configure`` added (unless changed since): the environment
    for a program that should run with its own defaults, such as PyTorch timed beside tinyeffnet."""
    return {name: value for name, value in os.environ.items() if _added.get(name) != value}


def keep_freed_memory():
    """Raise glibc's mmap and trim thresholds to ``MALLOC_KEEP``; returns whether it could (False without glibc:
    macOS, Windows, musl)."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MALLOC_KEEP)) and bool(mallopt(M_TRIM_THRESHOLD, MALLOC_KEEP))


def _libc():
    """The symbols this process has loaded, the C library's among them (None where ctypes cannot open them)."""
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):    # Windows: no handle for the process itself
        return None
