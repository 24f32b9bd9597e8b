"""Benchmarks, so that speed is measured rather than claimed.

    python -m tinyeffnet.bench                       # B0 and V2-B0 at 32×32: training and inference images/s,
                                                     # peak memory; time to B0's first step (cold and warm JIT cache)
    python -m tinyeffnet.bench --vs-torch            # the same workloads with PyTorch, alternating, and the ratios
    python -m tinyeffnet.bench --kernels             # a table: ms and GFLOP/s per kernel, forward and backward
    python -m tinyeffnet.bench --sweep --plot s.png  # images/s, effective GFLOP/s and % of peak over sizes and batches
    python -m tinyeffnet.bench --ranks 2             # training images/s: 2 MPI ranks × 1 thread against 1 × 2 threads
    python -m tinyeffnet.bench --concurrent 2        # 2 trainings at once, each against one alone
    python -m tinyeffnet.bench --json                # one JSON object instead of text

**Model.** Every measurement runs in a fresh process (a "worker"), so memory and start-up are those of a
run that does only that: training is a full step at batch 128 (forward, loss, backward, the gradient norm,
an SGD update with SGD's default weight decay, without clipping or averaging; see
``tinyeffnet.engine.train_step``), inference an eval-mode forward at batch
256; images/s is the batch divided by the median step time after warm-up steps. Peak memory is the training
worker's peak resident set. "First step" is the wall time from launching a worker until its first training
step has finished: *cold* with an empty Numba cache (every kernel compiled), *warm* with the cache the cold
run filled. With ``--vs-torch`` the PyTorch workers (the repository's ``tools/bench_torch.py``, reference
``efficientnet_pytorch``, same threads, batch, resolution and optimiser) run alternately with ours,
``--rounds`` times each, and the ratios compare medians from the same run: the machine's noise hits both
sides alike.

**Models.** ``--models`` names variants of ``tinyeffnet.scaling.VARIANTS``, each with 10 classes and the paper's
stem, stride 2: the faithful networks, as ``efficientnet_pytorch`` builds them (the training command's default
on CIFAR, the stride-1 stem, costs about what the paper's does at 64×64). V2-B0 is adapted to 32×32 CIFAR as V1 is, by
nothing but its input size and classifier: its stem also has stride 2, so a 32×32 image ends at 1×1 (output
stride 32), and its Fused-MBConv stages run at 16×16, 8×8 and 4×4. ``efficientnet_pytorch`` has B0–B7 only,
so the other variants have no PyTorch figures and no ratios.

**Kernels.** Rows use EfficientNet-B0's layer shapes for a 32×32 input (the stem halves it to 16×16), and the
dense 3×3 convolutions of V2-B0's Fused-MBConv stages at the same input, batch 128, float32. Each time is
the median of ``--repeats`` calls after one warm-up call (which also compiles the Numba loops). FLOPs are
counted as 2 per multiply-add of the textbook formula, taps that fall on padding included: a convolution
producing ``M`` outputs from ``K`` products each (dense k×k: ``M = N·Ho·Wo·C_out``, ``K = k·k·C_in``;
depthwise: ``K = k·k``; 1×1: ``K = C_in``) does ``2·M·K`` in forward; backward computes dx and dw, each one
multiply-add per forward one, so ``4·M·K``. A row may leave its FLOPs as ``None`` (for memory-bound kernels
where FLOP/s says little); the table then prints "-". To add a kernel, append a ``KernelCase`` to
``KERNEL_CASES``.

**Sweep** (``--sweep``). Training steps and inference passes at every combination of ``--models``,
``--resolutions`` and ``--batches``, each point in its own worker, ``--rounds`` × ``--steps`` after one warm-up
step, PyTorch alternating with ours under ``--vs-torch``. Training skips batch 1: at 32×32 the last batch
norms would normalise one value per channel (PyTorch refuses to), and batch norm is not trained on single
images. The default grid finishes in a few minutes on 2 cores; the full one is
``--resolutions 32,64,96,128,160,192,224 --batches 1,8,32,128,256``. Effective GFLOP/s counts the
multiply-adds of one forward pass of one image at that size (``tinyeffnet.summary``'s count: convolutions
and the classifier) as 2 FLOPs each, and a training step as 3 forward passes (the forward, then the
backward's dx and dw, each as many multiply-adds as the forward)::

    GFLOP/s = 2 · MACs(image) · P · images/s / 1e9        P = 3 for a training step, 1 for inference

PyTorch's figure counts the same multiply-adds (the same architecture), so its ratio is that of images/s.
"% peak" divides by a practical peak measured at the start of the same run: the median GFLOP/s of a float32
``n×n @ n×n`` NumPy product (n = 2048, ``2·n³`` FLOPs) with ``--threads`` OpenBLAS threads, which sits below
the theoretical cores × clock × SIMD lanes × 2 (an FMA) × FMA units per core. ``--plot PATH`` draws images/s
against resolution for both libraries.

**Ranks** (the ``mpi`` extra). The training worker twice, alternating ``--rounds`` times: under
``mpiexec -n N`` with one thread per rank (data parallelism, ``tinyeffnet.distributed``: each rank takes
1/N of the batch of 128 and the gradients are averaged every step), and as one process with N threads;
images/s is the whole batch over rank 0's median step time, the ratio compares medians from the same run.
The ranks' workers also time the ``Allreduce`` that averages the gradients, alone (``ALLREDUCE_REPEATS``
calls on the step's flat float32 buffer, every rank starting together after a barrier): seconds per call and
its share of the median step; and each rank's median time in the step's reduction, which adds the packing and
the wait for the slowest rank (the fastest waits longest: the spread is the ranks' imbalance).

**Concurrent** (``--concurrent N``). What a learner meets who trains while a notebook trains beside it: the
training worker alone, then N of them started at once, alternating ``--rounds`` times, every one with the
default thread settings (each process takes all the cores, as two commands typed in two terminals do); each
worker's images/s together, and as a fraction of the median alone. Were one training to keep all C cores busy,
N processes could at best share them, 1/N of its speed each; one alone leaves them idle part of the time
(its step runs 1.71× faster on 2 threads than on 1; README), which the others fill, so a worker can keep more. A
fraction far below 1/N says the processes' threads get in each other's way (spinning while they wait, say)
rather than sharing: 2 B0 trainings on this project's 2-core Intel Xeon kept 48 % each (`--concurrent 2
--steps 40`, 2026-12-07; 71 % with OpenMP's spin count at 1,000 instead of 10,000, ``tinyeffnet/runtime.py``).
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numba
import numpy as np

from tinyeffnet import runtime
from tinyeffnet.cli import (PAPER_STEM_STRIDE, integer_at_least, make_parser, min_resolution, non_negative_int,
                            positive_int)
from tinyeffnet.kernels.conv2d import conv2d_backward, conv2d_forward
from tinyeffnet.kernels.depthwise import depthwise_conv_backward, depthwise_conv_forward
from tinyeffnet.kernels.padding import PADDINGS, SAME, SYMMETRIC
from tinyeffnet.kernels.pointwise import pointwise_conv_backward, pointwise_conv_forward
from tinyeffnet.scaling import VARIANTS, config_for_variant
from tinyeffnet.train import DEFAULT_BATCH_SIZE, DEFAULT_LABEL_SMOOTHING, DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY

BATCH = DEFAULT_BATCH_SIZE  # training and kernel rows
INFER_BATCH = 256
RESOLUTION = 32
NUM_CLASSES = 10
STEM_STRIDE = PAPER_STEM_STRIDE   # the faithful networks, V1 and V2 alike
DTYPE = np.float32
DEFAULT_REPEATS = 10
WORKER_STEPS = 10
WORKER_WARMUP = 2
DEFAULT_ROUNDS = 3
DEFAULT_MODELS = ("b0", "v2-b0")
SWEEP_MODELS = ("b0", "b2")
SWEEP_RESOLUTIONS = (32, 128, 224)
SWEEP_BATCHES = (1, 32)
SWEEP_STEPS = 3
SWEEP_WARMUP = 1
SWEEP_ROUNDS = 1
MIN_TRAIN_BATCH = 2         # the sweep's training points start here (see the module docstring)
TRAINING_PASSES = 3         # a training step counted as this many forward passes, for effective GFLOP/s
MATMUL_SIZE = 2048          # the practical peak: a float32 (n × n) @ (n × n) product
MATMUL_REPEATS = 5
TORCH_MODELS = {f"b{i}": f"efficientnet-b{i}" for i in range(8)}   # efficientnet_pytorch's names; no Lite, no V2
ALLREDUCE_REPEATS = 10      # timed Allreduce calls per ranks worker, after its steps
LR = 0.05                   # the step's time does not depend on it; tools/bench_torch.py uses the same
TORCH_WORKER = Path(__file__).resolve().parents[1] / "tools" / "bench_torch.py"   # in a clone, not installed


@dataclass
class KernelCase:
    """One row of the kernel table.

    ``setup(rng)`` creates the arrays and returns ``(forward, backward)``, two callables without
    arguments; ``forward_flops`` and ``backward_flops`` are per call (or ``None``)."""

    name: str
    shape: tuple
    setup: Callable
    forward_flops: Optional[int]
    backward_flops: Optional[int]


def _normal(rng, shape):
    return rng.standard_normal(shape, dtype=DTYPE)


def _window_case(name, forward, backward, size, c_in, w_shape, c_out, stride, padding=SAME):
    """A k×k convolution row (depthwise or dense) on a (BATCH, size, size, c_in) input, padded by ``padding``'s
    rule (``kernels/padding.py``: V1's TensorFlow SAME, or V2's symmetric)."""
    out = PADDINGS[padding](size, w_shape[0], stride)[0]
    x_shape, y_shape = (BATCH, size, size, c_in), (BATCH, out, out, c_out)

    def setup(rng):
        x, w, dy = _normal(rng, x_shape), _normal(rng, w_shape), _normal(rng, y_shape)
        return (lambda: forward(x, w, stride, padding)), (lambda: backward(x, w, dy, stride, padding))

    multiply_adds = int(np.prod(y_shape)) * int(np.prod(w_shape)) // c_out
    return KernelCase(name, x_shape, setup, 2 * multiply_adds, 4 * multiply_adds)


def depthwise_case(name, size, channels, k, stride):
    w_shape = (k, k, channels)
    return _window_case(name, depthwise_conv_forward, depthwise_conv_backward, size, channels, w_shape, channels, stride)


def conv2d_case(name, size, c_in, c_out, k, stride, padding=SAME):
    return _window_case(name, conv2d_forward, conv2d_backward, size, c_in, (k, k, c_in, c_out), c_out, stride,
                        padding)


def pointwise_case(name, size, c_in, c_out):
    x_shape = (BATCH, size, size, c_in)

    def setup(rng):
        x, w, dy = _normal(rng, x_shape), _normal(rng, (c_in, c_out)), _normal(rng, x_shape[:3] + (c_out,))
        return (lambda: pointwise_conv_forward(x, w)), (lambda: pointwise_conv_backward(x, w, dy))

    multiply_adds = BATCH * size * size * c_in * c_out
    return KernelCase(name, x_shape, setup, 2 * multiply_adds, 4 * multiply_adds)


KERNEL_CASES = [
    conv2d_case("stem conv 3×3 s2, 3→32", 32, 3, 32, 3, 2),
    depthwise_case("depthwise 3×3 s1 (stage 1)", 16, 32, 3, 1),
    depthwise_case("depthwise 3×3 s1 (size of stage 2)", 16, 96, 3, 1),
    depthwise_case("depthwise 3×3 s2 (stage 2)", 16, 96, 3, 2),
    depthwise_case("depthwise 3×3 s1 (stage 2, repeat)", 8, 144, 3, 1),
    depthwise_case("depthwise 5×5 s2 (stage 3)", 8, 144, 5, 2),
    pointwise_case("pointwise 32→16 (stage 1 project)", 16, 32, 16),
    pointwise_case("pointwise 16→96 (stage 2 expand)", 16, 16, 96),
    pointwise_case("pointwise 96→24 at 16×16", 16, 96, 24),
    pointwise_case("pointwise 144→24 (stage 2 project)", 8, 144, 24),
    pointwise_case("pointwise 320→1280 (head)", 1, 320, 1280),
    # V2-B0's Fused-MBConv stages at a 32×32 input: the dense k×k convolution (expansion e: C_in → C_in·e),
    # padded symmetrically as V2 is
    conv2d_case("fused 3×3 s1, 32→16 (V2 stage 1, e = 1)", 16, 32, 16, 3, 1, SYMMETRIC),
    conv2d_case("fused 3×3 s2, 16→64 (V2 stage 2 expand)", 16, 16, 64, 3, 2, SYMMETRIC),
    conv2d_case("fused 3×3 s1, 32→128 (V2 stage 2, repeat)", 8, 32, 128, 3, 1, SYMMETRIC),
    conv2d_case("fused 3×3 s2, 32→128 (V2 stage 3 expand)", 8, 32, 128, 3, 2, SYMMETRIC),
    conv2d_case("fused 3×3 s1, 48→192 (V2 stage 3, repeat)", 4, 48, 192, 3, 1, SYMMETRIC),
]


def median_ms(fn, repeats):
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def gflops(flops, ms):
    return None if flops is None else flops / (ms * 1e6)


def run_kernel_cases(cases, repeats, seed=0):
    """Time every case; returns one dict per case."""
    rng = np.random.default_rng(seed)
    rows = []
    for case in cases:
        forward, backward = case.setup(rng)
        forward_ms, backward_ms = median_ms(forward, repeats), median_ms(backward, repeats)
        rows.append({
            "kernel": case.name,
            "input_shape": list(case.shape),
            "dtype": np.dtype(DTYPE).name,
            "forward_ms": forward_ms,
            "forward_gflops": gflops(case.forward_flops, forward_ms),
            "backward_ms": backward_ms,
            "backward_gflops": gflops(case.backward_flops, backward_ms),
        })
    return rows


def number(value):
    """A table cell: "-" for None, one decimal from 10 up, two below."""
    return "-" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def aligned(header, lines):
    """Rows of cells as text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*line) for line in [header, *lines])


def format_table(rows):
    header = ("kernel", "input (NHWC)", "fwd ms", "fwd GFLOP/s", "bwd ms", "bwd GFLOP/s")
    lines = [[row["kernel"], "×".join(map(str, row["input_shape"])), number(row["forward_ms"]),
              number(row["forward_gflops"]), number(row["backward_ms"]), number(row["backward_gflops"])]
             for row in rows]
    return aligned(header, lines)


# --- the model workloads, each in its own process ------------------------------------------------------
def bench_config(variant, resolution):
    """The ``ModelConfig`` every workload builds: ``variant`` with ``NUM_CLASSES`` classes and ``STEM_STRIDE``."""
    return config_for_variant(variant, NUM_CLASSES, resolution, STEM_STRIDE)


def worker(kind, batch, steps, warmup, variant=DEFAULT_MODELS[0], resolution=RESOLUTION):
    """Run ``steps`` timed steps (after ``warmup``) of training or inference of ``variant`` on
    (batch, resolution, resolution, 3) images; return the JSON-able result (under mpiexec, rank 0's; None on
    the other ranks)."""
    from tinyeffnet.model import EfficientNet
    from tinyeffnet.optim import SGD
    from tinyeffnet.engine import train_step
    from tinyeffnet.distributed import make_world
    from tinyeffnet.warmup import start

    world = make_world()                 # under mpiexec: this rank's share of the batch, gradients averaged
    compiling = start("sgd") if world.size == 1 else None     # as the training command: on every core
    model = EfficientNet(bench_config(variant, resolution), dtype=DTYPE)
    world.broadcast(model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, resolution, resolution, 3), dtype=DTYPE)
    y = rng.integers(0, NUM_CLASSES, batch)
    optimizer = SGD(model.named_parameters(), model.named_grads(), lr=LR, momentum=DEFAULT_MOMENTUM,
                    weight_decay=DEFAULT_WEIGHT_DECAY["sgd"])
    if kind == "train":
        def step():
            train_step(model, optimizer, x, y, lr=LR, label_smoothing=DEFAULT_LABEL_SMOOTHING, world=world)
    else:
        model.eval()

        def step():
            model.forward(x)
    if compiling is not None:
        compiling.finish()
    ranks = kind == "train" and world.size > 1
    reductions = time_reductions(world) if ranks else None
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    averaging = averaging_figures(world, times, reductions[warmup:]) if ranks else {}
    if not world.is_main:
        return None
    return dict(images_per_second=batch / statistics.median(times), step_seconds=times,
                peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                threads=numba.get_num_threads(), ranks=world.size, **averaging)


def time_reductions(world):
    """A list that gets the seconds of every ``world.reduce_gradients`` call from now on."""
    reduce, seconds = world.reduce_gradients, []

    def timed(*args):
        start = time.perf_counter()
        reduce(*args)
        seconds.append(time.perf_counter() - start)

    world.reduce_gradients = timed
    return seconds


def averaging_figures(world, step_seconds, reduce_seconds):
    """What averaging the gradients costs a ranks worker (every rank must call it): the ``Allreduce`` alone
    (``MPIWorld.allreduce_seconds``), its share of the median step, and each rank's median time in the
    step's reduction, ``reduce_seconds`` (packing, waiting for the slowest rank, the Allreduce, unpacking: the
    fastest rank waits longest, so the spread shows the ranks' imbalance)."""
    alone = world.allreduce_seconds(ALLREDUCE_REPEATS)
    return dict(allreduce_seconds=alone, allreduce_floats=max(world.flats),
                allreduce_share=alone / statistics.median(step_seconds),
                reduce_seconds=world.comm.allgather(statistics.median(reduce_seconds)))


def run_worker(command, env):
    """Run one worker process; return (its JSON result, its wall time in seconds)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds


def our_command(kind, batch, steps, warmup, variant=DEFAULT_MODELS[0], resolution=RESOLUTION):
    return [sys.executable, "-m", "tinyeffnet.bench", "--worker", kind, "--batch", str(batch),
            "--steps", str(steps), "--warmup", str(warmup), "--worker-variant", variant,
            "--worker-resolution", str(resolution)]


def torch_command(python, kind, batch, steps, warmup, threads, variant=DEFAULT_MODELS[0], resolution=RESOLUTION):
    return [python, str(TORCH_WORKER), kind, "--model", TORCH_MODELS[variant], "--batch", str(batch), "--steps",
            str(steps), "--warmup", str(warmup), "--threads", str(threads), "--resolution", str(resolution),
            "--classes", str(NUM_CLASSES)]


def worker_env(threads, base=None):
    """The environment of a worker with ``threads`` Numba (OpenMP) threads: ``base`` (default os.environ) with
    the thread counts set."""
    return dict(os.environ if base is None else base, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))


def torch_env(threads):
    """A PyTorch worker's environment: the user's own (``runtime.users_environment``: without the settings
    ``import tinyeffnet`` added for its kernels, such as its OpenMP spin count, which PyTorch would read too)."""
    return worker_env(threads, runtime.users_environment())


def median_of(results, key):
    return statistics.median(r[key] for r in results)


def has_torch_model(variant, torch_python):
    """Whether PyTorch runs beside ``variant``: asked for (``torch_python``) and in ``efficientnet_pytorch``."""
    return bool(torch_python) and variant in TORCH_MODELS


def model_medians(results, variant):
    """Medians over the rounds of ``variant``'s workloads in ``results`` {(variant, kind, batch): [worker results]}."""
    train, infer = results[variant, "train", BATCH], results[variant, "infer", INFER_BATCH]
    return dict(train_images_per_second=median_of(train, "images_per_second"),
                infer_images_per_second=median_of(infer, "images_per_second"),
                peak_rss_mib=median_of(train, "peak_rss_mib"))


def run_model_benchmark(models, threads, rounds, steps, torch_python=None, report=print):
    """The figures of each variant in ``models`` at 32×32 (and PyTorch's, alternating, where ``torch_python``
    is given and it has the variant) as one dict; the first step is that of ``models[0]``."""
    env = worker_env(threads)
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache              # empty: the first worker compiles every kernel
        report(f"first training step of {models[0]}, cold JIT cache …")
        _, cold = run_worker(our_command("train", BATCH, 1, 0, models[0]), env)
        report(f"first training step of {models[0]}, warm JIT cache …")
        _, warm = run_worker(our_command("train", BATCH, 1, 0, models[0]), env)
        workloads = [(variant, kind, batch) for variant in models
                     for kind, batch in (("train", BATCH), ("infer", INFER_BATCH))]
        ours = {workload: [] for workload in workloads}
        theirs = {workload: [] for workload in workloads}
        for r in range(rounds):
            for variant, kind, batch in workloads:
                report(f"round {r + 1}/{rounds}: {variant} {kind}, batch {batch} …")
                ours[variant, kind, batch].append(
                    run_worker(our_command(kind, batch, steps, WORKER_WARMUP, variant), env)[0])
                if has_torch_model(variant, torch_python):
                    theirs[variant, kind, batch].append(run_worker(
                        torch_command(torch_python, kind, batch, steps, WORKER_WARMUP, threads, variant),
                        torch_env(threads))[0])
    figures = {}
    for variant in models:
        figures[variant] = model_medians(ours, variant)
        if has_torch_model(variant, torch_python):
            mine, torch_figures = figures[variant], model_medians(theirs, variant)
            mine["torch"] = dict(torch_figures, versions=theirs[variant, "train", BATCH][0]["versions"])
            mine["ratios"] = dict(
                train_throughput=mine["train_images_per_second"] / torch_figures["train_images_per_second"],
                infer_throughput=mine["infer_images_per_second"] / torch_figures["infer_images_per_second"],
                peak_memory=mine["peak_rss_mib"] / torch_figures["peak_rss_mib"])
    return dict(resolution=RESOLUTION, num_classes=NUM_CLASSES, stem_stride=STEM_STRIDE, train_batch=BATCH,
                infer_batch=INFER_BATCH, threads=threads, rounds=rounds, steps_per_round=steps,
                first_step_model=models[0], first_step_seconds_cold=cold, first_step_seconds_warm=warm,
                models=figures)


# --- the size sweep ----------------------------------------------------------------------------------------
def matmul_peak(size=MATMUL_SIZE, repeats=MATMUL_REPEATS):
    """The practical FP32 peak: GFLOP/s of a float32 (size × size) @ (size × size) NumPy product, ``2·size³``
    FLOPs, median of ``repeats`` calls after one warm-up (run in a worker whose OpenBLAS has the threads)."""
    rng = np.random.default_rng(0)
    a, b = _normal(rng, (size, size)), _normal(rng, (size, size))
    return dict(gflops=gflops(2 * size ** 3, median_ms(lambda: a @ b, repeats)), size=size,
                openblas_threads=os.environ.get("OPENBLAS_NUM_THREADS"))


def macs_per_image(variant, resolution):
    """Multiply-adds of one forward pass of one image (``tinyeffnet.summary``'s count)."""
    from tinyeffnet.model import EfficientNet
    from tinyeffnet.summary import summarize

    return sum(row[4] for row in summarize(EfficientNet(bench_config(variant, resolution), dtype=DTYPE)))


def effective_gflops(macs, images_per_second, kind):
    """``2 · macs · P · images/s / 1e9`` with P = ``TRAINING_PASSES`` for "train", 1 for "infer"."""
    passes = TRAINING_PASSES if kind == "train" else 1
    return 2 * macs * passes * images_per_second / 1e9


def sweep_grid(models, resolutions, batches):
    """The sweep's points ``(variant, kind, resolution, batch)`` in the order they run; training from
    ``MIN_TRAIN_BATCH`` images."""
    return [(variant, kind, resolution, batch) for variant in models for kind in ("train", "infer")
            for resolution in resolutions for batch in batches if kind == "infer" or batch >= MIN_TRAIN_BATCH]


def sweep_worker(command, env, errors):
    """``run_worker``'s result, or None when the worker fails (its error's last line appended to ``errors``):
    a point that runs out of memory at a large size leaves the rest of the grid to run."""
    try:
        return run_worker(command, env)[0]
    except RuntimeError as failure:
        errors.append(str(failure).strip().splitlines()[-1])
        return None


def run_sweep(models, resolutions, batches, threads, rounds, steps, torch_python=None, report=print):
    """Images/s, effective GFLOP/s and the fraction of the measured peak at every point of ``sweep_grid``
    (and PyTorch's, alternating, where ``torch_python`` is given and it has the variant) as one dict; a point
    whose worker failed has ``errors`` instead of its figures."""
    env = worker_env(threads)
    report(f"peak: float32 {MATMUL_SIZE}×{MATMUL_SIZE} matrix product, {threads} OpenBLAS threads …")
    peak = run_worker([sys.executable, "-m", "tinyeffnet.bench", "--worker", "matmul"],
                      dict(env, OPENBLAS_NUM_THREADS=str(threads)))[0]["gflops"]
    macs = {(variant, resolution): macs_per_image(variant, resolution) for variant in models
            for resolution in resolutions}
    grid = sweep_grid(models, resolutions, batches)
    points = []
    for i, (variant, kind, resolution, batch) in enumerate(grid):
        report(f"{i + 1}/{len(grid)}: {variant} {kind} at {resolution}×{resolution}, batch {batch} …")
        ours, theirs, errors = [], [], []
        for _ in range(rounds):
            ours.append(sweep_worker(our_command(kind, batch, steps, SWEEP_WARMUP, variant, resolution), env, errors))
            if has_torch_model(variant, torch_python):
                theirs.append(sweep_worker(torch_command(torch_python, kind, batch, steps, SWEEP_WARMUP, threads,
                                                         variant, resolution), torch_env(threads), errors))
        point = dict(model=variant, kind=kind, resolution=resolution, batch=batch,
                     macs_per_image=macs[variant, resolution])
        for prefix, results in (("", ours), ("torch_", theirs)):
            results = [r for r in results if r is not None]
            if results:
                images_per_second = median_of(results, "images_per_second")
                point[f"{prefix}images_per_second"] = images_per_second
                point[f"{prefix}gflops"] = effective_gflops(macs[variant, resolution], images_per_second, kind)
                point[f"{prefix}peak_fraction"] = point[f"{prefix}gflops"] / peak
                point[f"{prefix}peak_rss_mib"] = median_of(results, "peak_rss_mib")
        if "images_per_second" in point and "torch_images_per_second" in point:
            point["ratio"] = point["images_per_second"] / point["torch_images_per_second"]
        if errors:
            point["errors"] = errors
            report(f"  failed: {errors[0]}")
        points.append(point)
    return dict(models=list(models), resolutions=list(resolutions), batches=list(batches), num_classes=NUM_CLASSES,
                stem_stride=STEM_STRIDE, threads=threads, rounds=rounds, steps_per_round=steps,
                training_passes=TRAINING_PASSES, peak_gflops=peak,
                peak=f"measured: float32 {MATMUL_SIZE}×{MATMUL_SIZE} NumPy matrix product, {threads} OpenBLAS threads",
                points=points)


def format_sweep(result):
    with_torch = any("torch_images_per_second" in p for p in result["points"])
    header = ["model", "kind", "size", "batch", "images/s", "GFLOP/s", "% peak"]
    if with_torch:
        header += ["PyTorch images/s", "PyTorch GFLOP/s", "ratio"]
    lines = []
    for p in result["points"]:
        fraction = p.get("peak_fraction")
        line = [p["model"], p["kind"], str(p["resolution"]), str(p["batch"]), number(p.get("images_per_second")),
                number(p.get("gflops")), number(None if fraction is None else 100 * fraction)]
        if with_torch:
            line += [number(p.get("torch_images_per_second")), number(p.get("torch_gflops")), number(p.get("ratio"))]
        lines.append(line)
    failed = [p for p in result["points"] if "errors" in p]
    return "\n".join([
        f"stem stride {result['stem_stride']}, {result['num_classes']} classes, {result['threads']} threads; "
        f"medians of {result['rounds']} rounds × {result['steps_per_round']} steps per point",
        f"effective GFLOP/s = 2 × multiply-adds per image × images/s, a training step counted as "
        f"{result['training_passes']} forward passes",
        f"% peak: of {result['peak_gflops']:.1f} GFLOP/s, {result['peak']} (this run)",
        aligned(header, lines),
        *(f"failed: {p['model']} {p['kind']} at {p['resolution']}, batch {p['batch']}: {p['errors'][0]}"
          for p in failed)])


def find_mpiexec():
    """The ``mpiexec`` beside this Python (the mpi extra's MPICH) or on the PATH, else None."""
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")


def run_together(commands, env):
    """Start the workers ``commands`` at once and wait for all; their JSON results, in order."""
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    results = []
    for command, process in zip(commands, processes):
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"benchmark worker {' '.join(command)} failed:\n{err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def run_concurrent_benchmark(jobs, rounds, steps, batch=BATCH, report=print):
    """Training images/s of one worker alone and of ``jobs`` workers started at once, alternating ``rounds``
    times, each with this environment's (default) thread settings; each worker's fraction of the one alone."""
    command = our_command("train", batch, steps, WORKER_WARMUP)
    alone, together = [], []
    for r in range(rounds):
        report(f"round {r + 1}/{rounds}: one training alone …")
        alone.append(run_worker(command, os.environ)[0]["images_per_second"])
        report(f"round {r + 1}/{rounds}: {jobs} trainings at once …")
        together.append([result["images_per_second"] for result in run_together([command] * jobs, os.environ)])
    solo = statistics.median(alone)
    each = [statistics.median(worker) for worker in zip(*together)]
    return dict(model="EfficientNet-B0 (faithful, stem stride 2)", resolution=RESOLUTION, train_batch=batch, jobs=jobs,
                rounds=rounds, steps_per_round=steps, threads=numba.config.NUMBA_NUM_THREADS,
                alone_images_per_second=solo, together_images_per_second=each,
                fractions=[images / solo for images in each])


def format_concurrent(result):
    each = ", ".join(f"{images:.0f} ({100 * fraction:.0f} %)"
                     for images, fraction in zip(result["together_images_per_second"], result["fractions"]))
    together = f"{result['jobs']} at once, images/s each (of alone)"
    return "\n".join([
        f"{result['model']} at {result['resolution']}×{result['resolution']}, training, batch {result['train_batch']}, "
        f"default threads ({result['threads']} per process); medians of {result['rounds']} rounds × "
        f"{result['steps_per_round']} steps",
        f"{'one training alone, images/s':38}{result['alone_images_per_second']:>8.0f}",
        f"{together:38}  {each}"])


def run_ranks_benchmark(ranks, rounds, steps, batch=BATCH, report=print):
    """Training images/s of ``ranks`` MPI ranks × 1 thread against 1 rank × ``ranks`` threads, alternating, and
    the ranks' ``Allreduce`` of the gradients: seconds per call and its share of a step."""
    command = our_command("train", batch, steps, WORKER_WARMUP)
    one_thread_each = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    threads = dict(os.environ, NUMBA_NUM_THREADS=str(ranks), OMP_NUM_THREADS=str(ranks))
    spread, pooled = [], []
    for r in range(rounds):
        report(f"round {r + 1}/{rounds}: {ranks} ranks × 1 thread …")
        spread.append(run_worker([find_mpiexec(), "-n", str(ranks), *command], one_thread_each)[0])
        report(f"round {r + 1}/{rounds}: 1 rank × {ranks} threads …")
        pooled.append(run_worker(command, threads)[0])
    result = dict(model="EfficientNet-B0 (faithful, stem stride 2)", resolution=RESOLUTION, train_batch=batch,
                  ranks=ranks, rounds=rounds, steps_per_round=steps,
                  ranks_images_per_second=median_of(spread, "images_per_second"),
                  threads_images_per_second=median_of(pooled, "images_per_second"),
                  allreduce_floats=spread[0]["allreduce_floats"],
                  allreduce_seconds=median_of(spread, "allreduce_seconds"),
                  allreduce_share=median_of(spread, "allreduce_share"),
                  reduce_seconds=[statistics.median(each) for each in zip(*(r["reduce_seconds"] for r in spread))])
    result["ratio"] = result["ranks_images_per_second"] / result["threads_images_per_second"]
    return result


def format_ranks(result):
    n = result["ranks"]
    per_rank = ", ".join(f"rank {r} {1e3 * t:.1f}" for r, t in enumerate(result["reduce_seconds"]))
    return "\n".join([
        f"{result['model']} at {result['resolution']}×{result['resolution']}, training, batch {result['train_batch']}; "
        f"medians of {result['rounds']} rounds × {result['steps_per_round']} steps",
        f"{f'{n} ranks × 1 thread, images/s':34}{result['ranks_images_per_second']:>12.0f}",
        f"{f'1 rank × {n} threads, images/s':34}{result['threads_images_per_second']:>12.0f}",
        f"{'ratio':34}{result['ratio']:>12.2f}",
        f"{'Allreduce of the gradients, ms':34}{1e3 * result['allreduce_seconds']:>12.1f}"
        f"  ({result['allreduce_floats']:,} float32, {100 * result['allreduce_share']:.1f} % of a step)",
        f"{'the step in its reduction, ms':34}{per_rank} (packing, waiting for the slowest rank, Allreduce)"])


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return dict(date=datetime.date.today().isoformat(), cpu=cpu, cores=os.cpu_count(),
                python=platform.python_version(), numpy=np.__version__, numba=numba.__version__)


def format_model(result):
    with_torch = any("torch" in figures for figures in result["models"].values())
    header = ["", "tinyeffnet"] + (["PyTorch", "ratio"] if with_torch else [])
    lines = []
    for variant, figures in result["models"].items():
        for label, key in ((f"{variant} training images/s (batch {result['train_batch']})", "train_images_per_second"),
                           (f"{variant} inference images/s (batch {result['infer_batch']})", "infer_images_per_second"),
                           (f"{variant} peak memory while training, MiB", "peak_rss_mib")):
            line = [label, f"{figures[key]:.0f}"]
            if with_torch:
                theirs = figures.get("torch")
                line += [f"{theirs[key]:.0f}", f"{figures[key] / theirs[key]:.2f}"] if theirs else ["-", "-"]
            lines.append(line)
    for cache in ("cold", "warm"):
        lines.append([f"{result['first_step_model']} first training step, {cache} cache, s",
                      f"{result[f'first_step_seconds_{cache}']:.1f}"] + ([""] * 2 if with_torch else []))
    return "\n".join([
        f"{', '.join(result['models'])} at {result['resolution']}×{result['resolution']}, {result['num_classes']} "
        f"classes, stem stride {result['stem_stride']}, {result['threads']} threads; medians of {result['rounds']} "
        f"rounds × {result['steps_per_round']} steps", aligned(header, lines)])


def comma_list(convert, allowed):
    """A ``type=`` converter: comma-separated values, each read by ``convert`` (which raises ``ValueError`` or
    ``ArgumentTypeError`` on a bad one), as a tuple without repeats; an error names ``allowed``."""
    def read(text):
        try:
            values = tuple(dict.fromkeys(convert(part.strip()) for part in text.split(",")))
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"must be comma-separated {allowed}, got {text!r}") from None
        return values
    return read


def variant_name(text):
    if text not in VARIANTS:
        raise ValueError(text)
    return text


def main(argv=None):
    parser = make_parser("python -m tinyeffnet.bench", __doc__)
    parser.add_argument("--kernels", action="store_true",
                        help="only the per-kernel table (forward and backward, B0 and V2-B0 shapes)")
    parser.add_argument("--sweep", action="store_true",
                        help="only the size sweep: training and inference over --resolutions × --batches")
    parser.add_argument("--models", type=comma_list(variant_name, f"variants ({', '.join(VARIANTS)})"),
                        help=f"comma-separated variants (default: {','.join(DEFAULT_MODELS)}; "
                             f"{','.join(SWEEP_MODELS)} with --sweep)")
    parser.add_argument("--resolutions", type=comma_list(positive_int, "whole numbers ≥ 1"),
                        help=f"the sweep's image sides, comma-separated (default: "
                             f"{','.join(map(str, SWEEP_RESOLUTIONS))})")
    parser.add_argument("--batches", type=comma_list(positive_int, "whole numbers ≥ 1"),
                        help=f"the sweep's batch sizes, comma-separated (default: {','.join(map(str, SWEEP_BATCHES))})")
    parser.add_argument("--plot", metavar="PATH", help="with --sweep: write a PNG of images/s against resolution to this path")
    parser.add_argument("--vs-torch", action="store_true", help="also time PyTorch + efficientnet_pytorch, alternating")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="the Python that has torch and efficientnet_pytorch (default: this one, %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count(),
                        help="threads for both libraries (default: this machine's cores, %(default)s)")
    parser.add_argument("--rounds", type=positive_int,
                        help=f"alternating rounds of each workload (default: {DEFAULT_ROUNDS}; {SWEEP_ROUNDS} with "
                             "--sweep)")
    parser.add_argument("--steps", type=positive_int,
                        help=f"timed steps per round (default: {WORKER_STEPS}; {SWEEP_STEPS} with --sweep)")
    parser.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS,
                        help="timed calls per kernel measurement")
    parser.add_argument("--ranks", type=integer_at_least(2),
                        help="only training: N MPI ranks × 1 thread against 1 rank × N threads (needs the mpi extra)")
    parser.add_argument("--concurrent", type=integer_at_least(2), metavar="N",
                        help="only training: N trainings started at once, each against one alone, with the default "
                             "thread settings")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--worker", choices=("train", "infer", "matmul"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=positive_int, default=BATCH, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=non_negative_int, default=WORKER_WARMUP, help=argparse.SUPPRESS)
    parser.add_argument("--worker-variant", choices=list(VARIANTS), default=DEFAULT_MODELS[0], help=argparse.SUPPRESS)
    parser.add_argument("--worker-resolution", type=positive_int, default=RESOLUTION, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = SWEEP_STEPS if args.sweep else WORKER_STEPS
    if args.rounds is None:
        args.rounds = SWEEP_ROUNDS if args.sweep else DEFAULT_ROUNDS
    if args.worker:
        result = (matmul_peak() if args.worker == "matmul" else
                  worker(args.worker, args.batch, args.steps, args.warmup, args.worker_variant,
                         args.worker_resolution))
        if result is not None:
            print(json.dumps(result))
        return
    models = args.models or (SWEEP_MODELS if args.sweep else DEFAULT_MODELS)
    resolutions, batches = args.resolutions or SWEEP_RESOLUTIONS, args.batches or SWEEP_BATCHES
    if not args.sweep and (args.resolutions or args.batches or args.plot):
        parser.error("--resolutions, --batches and --plot are the size sweep's: add --sweep")
    if sum((args.sweep, args.kernels, args.ranks is not None, args.concurrent is not None)) > 1:
        parser.error("--sweep, --kernels, --ranks and --concurrent are separate benchmarks: choose one")
    if args.models and (args.kernels or args.ranks is not None or args.concurrent is not None):
        parser.error("--kernels, --ranks and --concurrent measure fixed B0 (and V2-B0) shapes: leave out --models, "
                     "or use it without them")
    for variant in models:
        for resolution in resolutions if args.sweep else (RESOLUTION,):
            minimum = min_resolution(bench_config(variant, resolution))
            if resolution < minimum:
                parser.error(f"{variant} needs images of at least {minimum}×{minimum} (its output stride), got "
                             f"{resolution}: use --resolutions of {minimum} or more")
    if args.ranks is not None:
        if find_mpiexec() is None:
            parser.error("--ranks runs mpiexec, which is not installed: pip install -e \".[mpi]\"")
    if args.vs_torch:
        if not TORCH_WORKER.is_file():
            parser.error(f"--vs-torch runs {TORCH_WORKER}, which is not there: it is in the repository, not in an "
                         "installed package; run the benchmark from a clone (pip install -e .)")
        probe = subprocess.run([args.torch_python, "-c", "import torch, efficientnet_pytorch"], capture_output=True)
        if probe.returncode != 0:
            parser.error(f"--vs-torch needs torch and efficientnet_pytorch importable by {args.torch_python}; "
                         "install them in a separate environment (pip install torch==2.13.0 efficientnet_pytorch) "
                         "and pass its python with --torch-python")
    report = (lambda message: print(message, file=sys.stderr)) if args.json else print
    torch_python = args.torch_python if args.vs_torch else None
    result = dict(machine=machine())
    if args.kernels:
        result["kernels"] = run_kernel_cases(KERNEL_CASES, args.repeats)
    elif args.sweep:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))   # for the multiply-add count
        result["sweep"] = run_sweep(models, resolutions, batches, args.threads, args.rounds, args.steps, torch_python,
                                    report)
        if args.plot:
            from tinyeffnet.plots import plot_throughput_vs_resolution
            plot_throughput_vs_resolution(result["sweep"]["points"], args.plot)
            report(f"plot: {args.plot}")
    elif args.ranks:
        result.update(run_ranks_benchmark(args.ranks, args.rounds, args.steps, args.batch, report))
    elif args.concurrent:
        result.update(run_concurrent_benchmark(args.concurrent, args.rounds, args.steps, args.batch, report))
    else:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        result.update(run_model_benchmark(models, args.threads, args.rounds, args.steps, torch_python, report))
    if args.json:
        print(json.dumps(result if not args.kernels else result["kernels"], indent=1))
        return
    m = result["machine"]
    print(f"{m['date']}, {m['cpu']}, {m['cores']} cores; Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}")
    if args.kernels:
        print(f"batch {BATCH}, {np.dtype(DTYPE).name}, B0 and V2-B0 shapes at 32×32 input; "
              f"median of {args.repeats} calls")
        print(format_table(result["kernels"]))
    elif args.sweep:
        print(format_sweep(result["sweep"]))
    elif args.ranks:
        print(format_ranks(result))
    elif args.concurrent:
        print(format_concurrent(result))
    else:
        print(format_model(result))


if __name__ == "__main__":
    main()
