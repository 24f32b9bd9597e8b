"""tinyeffnet: EfficientNet from scratch in NumPy and Numba."""

from tinyeffnet import runtime

__version__ = "0.1.0"

runtime.configure()     # BLAS threads, OpenMP spinning, freed memory: before NumPy and Numba load (see runtime.py)
