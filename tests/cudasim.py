"""CUDA tests without a GPU: Numba's CUDA simulator, in a child process.

The simulator is switched on by ``NUMBA_ENABLE_CUDASIM=1``, read when ``numba.cuda`` is first imported, so a
process that has imported it without (this one, usually) cannot switch. A CUDA test file therefore marks its
tests ``cuda``, skips those that need a device when ``NO_DEVICE`` says why, and has one test that calls
``rerun_under_simulator(__file__)``: the file again, in a child process with the simulator on.

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda     # the CUDA tests, in this process
    python -m pytest                                     # ... each file rerun in a child process
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinyeffnet.device import require_cuda
from tinyeffnet.errors import TinyEffNetError


def no_device_reason():
    """None when this process can run CUDA kernels (a GPU or the simulator), else why not."""
    try:
        require_cuda()
    except TinyEffNetError as error:
        return f"{error}. The file's rerun_under_simulator test runs these tests in a child process with it"
    return None


NO_DEVICE = no_device_reason()


def rerun_under_simulator(test_file):
    """Run the ``cuda`` tests of ``test_file`` in a child process with the simulator on and check that they
    pass (and that some ran); skip when this process runs them itself."""
    if not NO_DEVICE:
        pytest.skip("this process runs the CUDA tests itself")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", str(test_file)]
    child = subprocess.run(command, cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True)
    report = child.stdout[-5000:] + child.stderr[-2000:]
    assert child.returncode == 0, report
    passed = re.search(r"(\d+) passed", child.stdout)
    assert passed and int(passed.group(1)) > 0, report
