"""Compiling the kernels before the first step, on every core: the cold start of a fresh install.

Numba compiles a kernel the first time it is called and keeps the machine code in its cache (``cache=True``),
so only the first run after an install (or after a kernel's source changed) waits for it, nearly all of its
first step: 30.9 s for a B0 training step before this module, on one core (``python -m tinyeffnet.bench``, AMD
EPYC, 2026-12-06). Numba compiles one function at a time, under a lock, so that wait held a single core. Here it
is spread over processes: each calls its share of the kernels on tiny float32 arrays, which compiles them and
writes them to the cache, and the step that follows loads every kernel from there (10.2 s on two cores, the
same machine, 2026-12-07).

    warmup = start()            launch the helper processes (one per core Numba may use, less this one)
    ...                         (the caller loads its data meanwhile)
    summary = warmup.finish()   compile this process's share, wait for the helpers: a ``Summary``

    python -m tinyeffnet.warmup      the same, now (say after installing): prints what it compiled

Which kernels: the ``JOBS``, each calling a few kernel files' functions as the layers, the loss and the
optimisers call them, with the same argument types, and so the same compiled specialisation (Numba compiles
one per combination of argument types, whatever the shapes). The jobs go to the processes heaviest first, each
to the least loaded, by the compile times ``JOBS`` records. ``tests/test_warmup.py`` checks that after them a
training step and an evaluation compile nothing, so a new kernel that the jobs miss is caught there; it would
still work, compiled in the training process itself.

When the cache is warm the jobs only load what is there: a helper costs about a second of the other core,
and this process's share is kernels it loads anyway before its first step.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numba
import numpy as np
from numba.core import event

from tinyeffnet.kernels import (activations, adamw, batchnorm_act, conv2d, depthwise, dropout, elementwise, ema,
                                loss, matmul, pooling, rmsprop, scale, sgd)
from tinyeffnet.kernels._threads import MIN_PARALLEL_SIZE
from tinyeffnet.kernels.padding import SAME, SYMMETRIC

DTYPE = np.float32       # what the layers train and evaluate in (float64 is for the gradient checks)
EPS = 1e-3


def _array(*shape):
    """A small float32 array with distinct, moderate values (every kernel accepts them)."""
    return np.linspace(-1.0, 1.0, int(np.prod(shape)), dtype=DTYPE).reshape(shape)


def _batchnorm_and_activations():
    x, gamma, beta = _array(2, 3, 3, 4), np.ones(4, DTYPE), np.zeros(4, DTYPE)
    for activation in batchnorm_act.ACTIVATIONS:       # one specialisation serves them all (an int argument)
        z, mean, var = batchnorm_act.batchnorm_act_train_forward(x, gamma, beta, EPS, activation)
        batchnorm_act.batchnorm_act_train_backward(x, gamma, beta, mean, var, EPS, z, activation)
        batchnorm_act.batchnorm_act_eval_forward(x, gamma, beta, mean, var, EPS, activation)
    vectors = _array(2, 4)                             # squeeze-and-excitation's, with the same σ and swish
    for name in ("swish", "sigmoid", "relu6"):
        forward, backward = getattr(activations, f"{name}_forward"), getattr(activations, f"{name}_backward")
        y = forward(vectors)
        backward(y if name == "sigmoid" else vectors, y)


def _depthwise():
    for stride, padding in ((1, SAME), (2, SYMMETRIC)):
        x, w = _array(2, 5, 5, 4), _array(3, 3, 4)
        y = depthwise.depthwise_conv_forward(x, w, stride, padding)
        depthwise.depthwise_conv_backward(x, w, y, stride, padding)


def _conv2d():
    for stride, padding in ((2, SAME), (1, SYMMETRIC)):
        x, w = _array(2, 5, 5, 3), _array(3, 3, 3, 4)
        y = conv2d.conv2d_forward(x, w, stride, padding)
        conv2d.conv2d_backward(x, w, y, stride, padding)


def _matrix_products():
    """A product as large as MIN_SPLIT_MACS and its backward, in two blocks (as on any machine of two cores or
    more): the loops that call NumPy's BLAS from Numba's threads (``kernels/blas.py``)."""
    k = n = 64
    m = max(2, matmul.MIN_SPLIT_MACS // (k * n))            # two rows at least, one per block
    a, w, dy = _array(m, k), _array(k, n), _array(m, n)
    matmul.matmul(a, w, threads=2)
    matmul.matmul_backward(a, w, dy, threads=2)


def _scale_pooling_and_dropout():
    x, s, keep = _array(2, 3, 3, 4), _array(2, 4), np.ones(2, DTYPE)
    y = scale.channel_scale_forward(x, s)
    scale.channel_scale_backward(x, s, y)
    pooled = pooling.global_avg_pool_forward(x)
    pooling.global_avg_pool_backward(pooled, 3, 3)
    dropout.drop_connect_backward(keep, dropout.drop_connect_forward(x, keep))     # scale's loop, one channel
    mask = dropout.dropout_mask(np.random.default_rng(0), s.shape, 0.5, DTYPE)
    dropout.dropout_backward(mask, dropout.dropout_forward(s, mask))


def _loss():
    logits, labels = _array(2, 3), np.array([0, 2])
    _, probs = loss.cross_entropy_forward(logits, labels, 0.1)
    loss.cross_entropy_backward(probs, labels, 0.1)
    targets = np.full((2, 3), 1 / 3, DTYPE)
    _, probs = loss.soft_cross_entropy_forward(logits, targets, 0.1)
    loss.soft_cross_entropy_backward(probs, targets, 0.1)


def _gradients():
    """The backward pass's sums (a gradient added into a layer's grads or into a residual's), and between it and
    the update: the global norm (for clipping and the epoch's figures) and the moving average's update."""
    g = _array(3, 4)
    activation_sized = np.zeros(MIN_PARALLEL_SIZE, DTYPE)       # large enough for add_into's own loop
    elementwise.add_into(activation_sized, activation_sized)
    elementwise.sum_of_squares(g)
    ema.ema_update(np.zeros_like(g), g, 0.99)


def _sgd():
    p = _array(3, 4)
    sgd.sgd_update(p, _array(3, 4), np.zeros_like(p), 0.1, 0.9, 5e-4, True)


def _rmsprop():
    p = _array(3, 4)
    rmsprop.rmsprop_update(p, _array(3, 4), np.ones_like(p), np.zeros_like(p), 0.01, 0.9, 0.9, 1e-3, 1e-5)


def _adamw():
    p = _array(3, 4)
    adamw.adamw_update(p, _array(3, 4), np.zeros_like(p), np.zeros_like(p), 1e-3, 0.9, 0.999, 1e-8, 0.05, 1)


# name → (function, its compile seconds on one core with an empty cache, measured 2026-12-06 on an AMD EPYC).
# A job holds the kernels that share compiled helpers (σ and swish; scale's loop), so no two processes
# compile the same helper; of the optimisers, only the run's is compiled.
JOBS = {
    "batchnorm_and_activations": (_batchnorm_and_activations, 5.0),
    "scale_pooling_and_dropout": (_scale_pooling_and_dropout, 3.1),
    "depthwise": (_depthwise, 3.0),
    "conv2d": (_conv2d, 2.2),
    "matrix_products": (_matrix_products, 1.6),    # Intel Xeon, 2026-12-07 (conv2d's there: 1.7 s)
    "loss": (_loss, 0.6),
    "gradients": (_gradients, 0.4),
    "sgd": (_sgd, 0.4),
    "rmsprop": (_rmsprop, 0.4),
    "adamw": (_adamw, 0.4),
}
OPTIMISER_JOBS = ("sgd", "rmsprop", "adamw")     # tinyeffnet.optim.OPTIMIZERS' names


def shares(processes, optimizer):
    """The job names of each of ``processes`` processes for a run with ``optimizer`` (a name of
    ``OPTIMISER_JOBS``): heaviest job first, each to the least loaded share."""
    jobs = [name for name in JOBS if name not in OPTIMISER_JOBS or name == optimizer]
    parts = [[] for _ in range(max(1, min(processes, len(jobs))))]
    loads = [0.0] * len(parts)
    for name in sorted(jobs, key=lambda n: -JOBS[n][1]):
        i = loads.index(min(loads))
        parts[i].append(name)
        loads[i] += JOBS[name][1]
    return parts


@dataclass
class Summary:
    """What a warm-up did: kernels compiled (0: all were in the cache), its wall seconds, its processes."""
    compiled: int
    seconds: float
    processes: int

    def line(self):
        """One line for the user, or None when the cache already held every kernel."""
        if not self.compiled:
            return None
        return (f"compiled {self.compiled} kernels in {self.seconds:.1f} s on {self.processes} "
                f"process{'es' if self.processes > 1 else ''} (once: later runs load them from Numba's cache)")


class _CompileCounter(event.Listener):
    """Counts Numba's compilations (cache misses) while registered."""

    def __init__(self):
        self.count = 0

    def on_start(self, event):
        pass

    def on_end(self, event):
        self.count += 1


def run_jobs(names):
    """Run the jobs ``names`` here; returns how many functions Numba compiled (not loaded from its cache)."""
    counter = _CompileCounter()
    with event.install_listener("numba:compile", counter):
        for name in names:
            JOBS[name][0]()
    return counter.count


class Warmup:
    """Helper processes compiling their shares (see ``start``); ``finish`` does this process's and waits."""

    def __init__(self, processes, optimizer):
        self.started = time.perf_counter()
        self.parts = shares(processes, optimizer)
        env = dict(os.environ, NUMBA_NUM_THREADS="1")      # compiling needs no threads; tiny calls, no pool
        self.helpers = [subprocess.Popen([sys.executable, "-m", "tinyeffnet.warmup", "--jobs", ",".join(part)],
                                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                        for part in self.parts[1:]]

    def cancel(self):
        """Stop the helpers (a start that failed): what they compiled so far stays in the cache."""
        for helper in self.helpers:
            if helper.poll() is None:
                helper.kill()
                helper.wait()

    def finish(self):
        """Compile this process's share, then wait for the helpers: a ``Summary``. A helper that failed is
        ignored (its kernels then compile here, on first use), so a warm-up never stops a run."""
        compiled = run_jobs(self.parts[0])
        for helper in self.helpers:
            out, _ = helper.communicate()
            if helper.returncode == 0:
                compiled += json.loads(out.strip().splitlines()[-1])["compiled"]
        return Summary(compiled, time.perf_counter() - self.started, len(self.parts))


def start(optimizer="adamw", processes=None):
    """Start compiling every kernel a training step with ``optimizer`` and an evaluation call, in ``processes``
    processes (default: as many as Numba may run threads, so a run limited to one core stays on one; just this
    one where it has run the float32 kernels already, as a notebook or a test session that trained before has:
    their machine code is loaded here); call ``finish`` on what it returns."""
    if processes is None:
        processes = 1 if loaded_here() else numba.config.NUMBA_NUM_THREADS
    return Warmup(processes, optimizer)


def loaded_here():
    """Whether this process has run the float32 kernels (the fused batch norm's forward stands for them all)."""
    return any(signature[0].dtype == numba.float32 for signature in batchnorm_act._forward.signatures)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyeffnet.warmup",
                                description="Compile every CPU kernel into Numba's cache now, on every core.")
    p.add_argument("--optimizer", choices=OPTIMISER_JOBS, default="adamw", help="the optimiser whose kernel to compile")
    p.add_argument("--jobs", help=argparse.SUPPRESS)     # a helper's share, comma-separated (see Warmup)
    args = p.parse_args(argv)
    if args.jobs is not None:
        print(json.dumps({"compiled": run_jobs(args.jobs.split(","))}))
        return 0
    summary = start(args.optimizer).finish()
    print(summary.line() or "every kernel was already in Numba's cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
