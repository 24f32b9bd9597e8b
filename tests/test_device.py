"""``require_cuda``: the numba.cuda module where CUDA kernels can run, a clear TinyEffNetError elsewhere."""

import os
import subprocess
import sys

import numba
import pytest

from tinyeffnet.device import require_cuda
from tinyeffnet.errors import TinyEffNetError


def test_missing_numba_cuda_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba.cuda", None)  # makes ``import numba.cuda`` fail
    with pytest.raises(TinyEffNetError, match=r"tinyeffnet\[cuda\]"):
        require_cuda()


def test_no_gpu_and_no_simulator_points_to_the_simulator(monkeypatch):
    cuda = pytest.importorskip("numba.cuda")
    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 0)
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(TinyEffNetError, match="NUMBA_ENABLE_CUDASIM=1"):
        require_cuda()


def test_a_gpu_is_enough(monkeypatch):
    cuda = pytest.importorskip("numba.cuda")
    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 0)
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    assert require_cuda() is cuda


def test_the_simulator_is_enough():
    pytest.importorskip("numba.cuda")
    code = "from tinyeffnet.device import require_cuda; import numpy as np; require_cuda().to_device(np.zeros(2))"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
