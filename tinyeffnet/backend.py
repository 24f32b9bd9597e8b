"""Backends: where a model's arrays live and which kernels run on them.

Every kernel file ``kernels/x.py`` (NumPy arrays, the CPU) has a twin ``kernels/x_cuda.py`` (numba.cuda
device arrays, a GPU) with the same functions and arguments. A backend holds one of the two sets as
attributes, so a layer calls ``self.backend.depthwise.depthwise_conv_forward(x, w, stride)`` and the same
line runs on either device; ``Layer.to("cuda")`` moves a model's arrays and switches its backend.

Besides the kernels, a backend moves arrays between the host and its device:

    to_device(a)       a host (NumPy) array on this backend's device (the array itself on the CPU)
    to_host(a)         an array of this backend as a NumPy array (itself on the CPU, a copy from a GPU)
    copy_into(a, src)  overwrite a, an array of this backend, with the host array src
    zeros_like(a)      a new zero array of this backend, shaped like a

The CUDA backend is built on first request (``backend("cuda")``), after ``device.require_cuda`` has found a
GPU or the simulator, so the CPU never needs numba.cuda.
"""

import functools
import importlib

import numpy as np

from tinyeffnet.device import require_cuda

KERNELS = ("activations", "batchnorm", "batchnorm_act", "conv2d", "depthwise", "dropout", "elementwise",
           "linear", "loss", "pointwise", "pooling", "scale", "sgd", "rmsprop", "adamw", "ema")
DEVICES = ("cpu", "cuda")


def is_device_array(a):
    """Whether ``a`` is a numba.cuda device array (without importing numba.cuda)."""
    return hasattr(a, "copy_to_host")


class Backend:
    """The kernel modules of one device, as attributes named like ``KERNELS``."""

    def __init__(self, device, module_suffix):
        self.device = device
        for name in KERNELS:
            setattr(self, name, importlib.import_module(f"tinyeffnet.kernels.{name}{module_suffix}"))

    def __repr__(self):
        return f"Backend({self.device!r})"


class CPUBackend(Backend):
    def __init__(self):
        super().__init__("cpu", "")

    def to_device(self, a):
        return a.copy_to_host() if is_device_array(a) else np.asarray(a)

    def to_host(self, a):
        return a

    def copy_into(self, a, src):
        a[...] = src

    def zeros_like(self, a):
        return np.zeros_like(a)


class CUDABackend(Backend):
    def __init__(self):
        self.cuda = require_cuda()
        super().__init__("cuda", "_cuda")

    def to_device(self, a):
        return a if is_device_array(a) else self.cuda.to_device(np.ascontiguousarray(a))

    def to_host(self, a):
        return a.copy_to_host()

    def copy_into(self, a, src):
        a.copy_to_device(np.ascontiguousarray(src, dtype=a.dtype))

    def zeros_like(self, a):
        zeros = self.cuda.device_array(a.shape, a.dtype)
        self.elementwise.fill(zeros, 0.0)
        return zeros


CPU = CPUBackend()


@functools.cache
def _cuda_backend():
    """The CUDA backend, built once, on first request."""
    return CUDABackend()


def backend(device):
    """The backend of ``device``: "cpu" or "cuda" (the latter raises TinyEffNetError if CUDA cannot run here)."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    return CPU if device == "cpu" else _cuda_backend()


def backend_of(a):
    """The backend that owns the array ``a``: CUDA for a device array, else the CPU."""
    return backend("cuda") if is_device_array(a) else CPU
