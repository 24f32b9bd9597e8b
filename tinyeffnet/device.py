"""Where the CUDA kernels can run: call ``require_cuda()`` before using ``tinyeffnet.kernels.cuda``.

The CUDA twins of the kernels (``kernels/cuda/*.py``) need ``numba.cuda`` and either an NVIDIA GPU with
its driver or Numba's CUDA simulator, which runs every GPU thread as a Python thread: correct but slow,
for reading and testing the kernels without a GPU. The simulator is switched on by
``NUMBA_ENABLE_CUDASIM=1`` in the environment, read when ``numba.cuda`` is first imported.
Nothing else in tinyeffnet imports ``numba.cuda``: the CPU kernels and training never need it, and
``model.to("cuda")`` (``tinyeffnet.backend``) calls ``require_cuda`` before it loads the CUDA twins.
"""

import importlib

import numba

from .errors import TinyEffNetError

INSTALL = "pip install 'tinyeffnet[cuda]'"
SIMULATOR = "NUMBA_ENABLE_CUDASIM=1"


def require_cuda():
    """Return the ``numba.cuda`` module if CUDA kernels can run in this process (a GPU or the simulator).

    Raises ``TinyEffNetError`` saying what is missing and what to do otherwise."""
    try:
        cuda = importlib.import_module("numba.cuda")
    except ImportError as error:
        message = f"the CUDA kernels need numba.cuda, which cannot be imported ({error}); {INSTALL}"
        raise TinyEffNetError(message) from error
    if numba.config.ENABLE_CUDASIM or cuda.is_available():
        return cuda
    raise TinyEffNetError(
        "no usable CUDA GPU here (numba.cuda.is_available() is False: no NVIDIA GPU, driver or CUDA runtime); "
        f"to run the CUDA kernels in Numba's simulator instead (slow), start Python with {SIMULATOR} set"
    )
