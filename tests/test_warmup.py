"""The warm-up (``tinyeffnet/warmup.py``): after its jobs, training and evaluation compile nothing; its shares
cover every job once; a helper that fails does not stop a run; the training command reports what it compiled."""

import json
import os
import subprocess
import sys

import pytest

from tinyeffnet import warmup

# In a fresh interpreter with an empty Numba cache: the warm-up for each optimiser, then a training step of small
# networks of each kind (swish and same padding, relu6, Fused-MBConv with symmetric padding), with each
# optimiser, clipping, the moving average, dropout, Mixup's soft targets, and an evaluation with test-time
# augmentation, every array taking the kernels' path for large ones (kernels/_threads.py); prints the warm-ups'
# summaries and the kernels compiled after them.
AFTER_THE_WARMUP = """
import json, sys
from dataclasses import replace
import numpy as np
from numba.core import event
from tinyeffnet import warmup
from tinyeffnet.averaging import WeightAverage
from tinyeffnet.engine import logits, train_step
from tinyeffnet.model import EfficientNet
from tinyeffnet.optim import OPTIMIZERS, make_optimizer
from tinyeffnet.scaling import config_for_variant

summaries = [warmup.start(name, processes=2).finish().compiled for name in OPTIMIZERS]
compiled = []

class Listener(event.Listener):
    def on_start(self, ev):
        pass

    def on_end(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)

from tinyeffnet.kernels import _threads, matmul
_threads.MIN_PARALLEL_SIZE = 0          # these small arrays take the paths a full-size network's large ones take
matmul.MIN_SPLIT_MACS = 0               # and their small products the split one
rng = np.random.default_rng(0)
x = rng.standard_normal((4, 32, 32, 3)).astype(np.float32)
y = np.array([0, 1, 2, 1])
targets = np.eye(3, dtype=np.float32)[y]
with event.install_listener("numba:compile", Listener()):
    for variant in ("b0", "lite0", "v2-b0"):
        config = config_for_variant(variant, 3, 32, 2)
        for name in OPTIMIZERS:
            model = EfficientNet(replace(config, width=0.25, depth=0.1))
            optimizer = make_optimizer(name, model.named_parameters(), model.named_grads(), 0.01)
            average = WeightAverage(model, 0.99)
            train_step(model, optimizer, x, y, 0.01, 0.1, clip_norm=1.0, average=average)
            train_step(model, optimizer, x, y, 0.01, 0.1, average=average, targets=targets)
            logits(model, x, tta=True)
print(json.dumps({"summaries": summaries, "compiled": compiled, "again": warmup.start("sgd", processes=2).finish().compiled}))
"""


def test_after_the_warmup_training_and_evaluation_compile_nothing(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", AFTER_THE_WARMUP], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["summaries"][0] > 30                  # the first compiled the kernels ...
    assert result["compiled"] == []                     # ... every one a step and an evaluation need
    assert result["again"] == 0                         # and a second warm-up finds them all in the cache


@pytest.mark.parametrize("processes", [1, 2, 3, 100])
@pytest.mark.parametrize("optimizer", warmup.OPTIMISER_JOBS)
def test_shares_hold_every_job_once_and_only_the_runs_optimiser(processes, optimizer):
    parts = warmup.shares(processes, optimizer)
    jobs = [name for part in parts for name in part]
    assert sorted(jobs) == sorted(set(warmup.JOBS) - set(warmup.OPTIMISER_JOBS) | {optimizer})
    assert len(parts) == min(processes, len(jobs)) and all(parts)


def test_shares_are_balanced_by_the_jobs_compile_times():
    loads = [sum(warmup.JOBS[name][1] for name in part) for part in warmup.shares(2, "sgd")]
    assert max(loads) - min(loads) <= max(seconds for _, seconds in warmup.JOBS.values())


def test_a_helper_that_fails_is_ignored(monkeypatch):
    monkeypatch.setattr(warmup, "shares", lambda processes, optimizer: [["loss"], ["no-such-job"]])
    summary = warmup.Warmup(2, "sgd").finish()
    assert summary.processes == 2                       # the helper failed; this process's share ran


def test_the_summary_line_says_what_was_compiled_or_nothing():
    assert warmup.Summary(0, 1.0, 2).line() is None
    assert warmup.Summary(57, 8.04, 2).line().startswith("compiled 57 kernels in 8.0 s on 2 processes")
    assert "on 1 process " in warmup.Summary(3, 1.0, 1).line()


def test_the_command_compiles_or_reports_a_warm_cache(capsys):
    assert warmup.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("compiled ") or out.startswith("every kernel was already in Numba's cache")
