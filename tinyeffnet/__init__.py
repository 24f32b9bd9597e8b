"""tinyeffnet: EfficientNet from scratch in NumPy and Numba."""

import os
import sys

__version__ = "0.1.0"

# The kernels' parallel loops run on Numba's thread pool. OpenBLAS (behind NumPy's matrix products) keeps a
# second pool whose threads spin between calls; with both on the same cores each steals the other's time
# (measured on 2 cores: 2.2 s per B0 training step with both pools, 0.57 s with BLAS single-threaded).
# So BLAS gets one thread unless the user chose otherwise; this works only if numpy is not imported yet.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Numba runs parallel loops on OpenMP (libgomp) when it finds it. Between loops, OpenMP's idle threads spin
# (busy-wait) for about 300,000 iterations by default before they sleep. A training step runs about a
# thousand short parallel loops, so when anything else wants the cores, the spinning threads take the time
# the working ones need: measured on 2 cores with other programs running, 10 s per B0 training step with the
# default against 0.45 s with a spin count of 1000. Read when libgomp loads, so set before numba's first loop.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
