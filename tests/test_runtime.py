"""The process settings ``import tinyeffnet`` makes (``tinyeffnet/runtime.py``), each checked in a fresh
interpreter, since they depend on what was imported before and on the environment it starts with."""

import json
import os
import subprocess
import sys

import pytest

from tinyeffnet.runtime import GOMP_SPINCOUNT

BLAS_THREADS = """
import json, sys
{first}
import threadpoolctl
print(json.dumps([p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]))
"""

REUSED_PAGES = """
import resource, sys
import tinyeffnet
import numpy as np
np._core.multiarray._set_madvise_hugepage(False)     # count 4 KiB pages, not the kernel's huge ones

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(1 << 24, np.float32)                 # 64 MiB, every page written
    del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
print(faults())
"""


def run(code, **env):
    """Run ``code`` in a fresh interpreter with ``env`` added (a None value removes the variable); its last line."""
    environment = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def blas_threads(first, **env):
    """The thread count of every BLAS loaded after running ``first`` (imports), as threadpoolctl reports it."""
    threads = json.loads(run(BLAS_THREADS.format(first=first), **env))
    if not threads:
        pytest.skip("threadpoolctl finds no BLAS library in this NumPy")
    return threads


@pytest.mark.parametrize("first", ["import tinyeffnet; import numpy", "import numpy; import tinyeffnet"])
def test_blas_runs_one_thread_whatever_was_imported_first(first):
    assert blas_threads(first, OPENBLAS_NUM_THREADS=None) == [1] * len(blas_threads("import numpy"))


def test_blas_threads_the_user_chose_are_kept():
    chosen = blas_threads("import numpy", OPENBLAS_NUM_THREADS="2")
    assert blas_threads("import numpy; import tinyeffnet", OPENBLAS_NUM_THREADS="2") == chosen


def test_gomp_spincount_default_and_the_users_own():
    code = "import os, tinyeffnet; print(os.environ['GOMP_SPINCOUNT'])"
    assert run(code, GOMP_SPINCOUNT=None) == str(GOMP_SPINCOUNT)
    assert run(code, GOMP_SPINCOUNT="5") == "5"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's")
def test_freed_memory_is_reused_without_new_page_faults():
    """After importing tinyeffnet, a freed 64 MiB array's pages serve the next one (no fault); where the user set
    glibc's trim threshold (so tinyeffnet leaves malloc alone), every page of the new array faults in afresh."""
    from tinyeffnet.runtime import keep_freed_memory
    if not keep_freed_memory():
        pytest.skip("no glibc mallopt in this process")
    assert int(run(REUSED_PAGES, MALLOC_MMAP_THRESHOLD_=None, MALLOC_TRIM_THRESHOLD_=None)) < 100
    assert int(run(REUSED_PAGES, MALLOC_TRIM_THRESHOLD_="131072")) > 10_000


def test_pytorch_workers_get_the_users_environment():
    """What ``import tinyeffnet`` added stays out of a PyTorch worker's environment (PyTorch's OpenMP would read
    the spin count too); what the user set reaches it."""
    code = ("import json, os; from tinyeffnet import bench; env = bench.torch_env(2); "
            "print(json.dumps([env.get('GOMP_SPINCOUNT'), env['OMP_NUM_THREADS'], os.environ['GOMP_SPINCOUNT']]))")
    assert json.loads(run(code, GOMP_SPINCOUNT=None)) == [None, "2", str(GOMP_SPINCOUNT)]
    assert json.loads(run(code, GOMP_SPINCOUNT="5")) == ["5", "2", "5"]
