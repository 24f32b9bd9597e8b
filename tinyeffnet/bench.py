"""Benchmarks, so that speed is measured rather than claimed.

    python -m tinyeffnet.bench                       # EfficientNet-B0 at 32×32: training and inference images/s,
                                                     # peak memory, time to the first step (cold and warm JIT cache)
    python -m tinyeffnet.bench --vs-torch            # the same workloads with PyTorch, alternating, and the ratios
    python -m tinyeffnet.bench --kernels             # a table: ms and GFLOP/s per kernel, forward and backward
    python -m tinyeffnet.bench --ranks 2             # training images/s: 2 MPI ranks × 1 thread against 1 × 2 threads
    python -m tinyeffnet.bench --json                # one JSON object instead of text

**Model.** Every measurement runs in a fresh process (a "worker"), so memory and start-up are those of a
run that does only that: training is a full step at batch 128 (forward, loss, backward, SGD update with the
training command's recipe; see ``tinyeffnet.engine.train_step``), inference an eval-mode forward at batch
256; images/s is the batch divided by the median step time after warm-up steps. Peak memory is the training
worker's peak resident set. "First step" is the wall time from launching a worker until its first training
step has finished: *cold* with an empty Numba cache (every kernel compiled), *warm* with the cache the cold
run filled. With ``--vs-torch`` the PyTorch workers (the repository's ``tools/bench_torch.py``, reference
``efficientnet_pytorch`` B0, same threads, batch, resolution and optimiser) run alternately with ours,
``--rounds`` times each, and the ratios compare medians from the same run: the machine's noise hits both
sides alike.

**Kernels.** Rows use EfficientNet-B0's layer shapes for a 32×32 input (the stem halves it to 16×16),
batch 128, float32. Each time is the median of ``--repeats`` calls after one warm-up call (which also
compiles the Numba loops). FLOPs are counted as 2 per multiply-add of the textbook formula, taps that
fall on padding included: a convolution producing ``M`` outputs from ``K`` products each does ``2·M·K``
in forward; backward computes dx and dw, each one multiply-add per forward one, so ``4·M·K``. A row may
leave its FLOPs as ``None`` (for memory-bound kernels where FLOP/s says little); the table then prints "-".
To add a kernel, append a ``KernelCase`` to ``KERNEL_CASES``.

**Ranks** (the ``mpi`` extra). The training worker twice, alternating ``--rounds`` times: under
``mpiexec -n N`` with one thread per rank (data parallelism, ``tinyeffnet.distributed``: each rank takes
1/N of the batch of 128 and the gradients are averaged every step), and as one process with N threads;
images/s is the whole batch over rank 0's median step time, the ratio compares medians from the same run.
The ranks' workers also time the ``Allreduce`` that averages the gradients, alone (``ALLREDUCE_REPEATS``
calls on the step's flat float32 buffer, every rank starting together after a barrier): seconds per call and
its share of the median step; and each rank's median time in the step's reduction, which adds the packing and
the wait for the slowest rank (the fastest waits longest: the spread is the ranks' imbalance).
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

from tinyeffnet.cli import integer_at_least, make_parser, non_negative_int, positive_int
from tinyeffnet.kernels.conv2d import conv2d_backward, conv2d_forward
from tinyeffnet.kernels.depthwise import depthwise_conv_backward, depthwise_conv_forward
from tinyeffnet.kernels.padding import same_padding
from tinyeffnet.kernels.pointwise import pointwise_conv_backward, pointwise_conv_forward
from tinyeffnet.train import DEFAULT_BATCH_SIZE, DEFAULT_LABEL_SMOOTHING, DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY

BATCH = DEFAULT_BATCH_SIZE  # training and kernel rows
INFER_BATCH = 256
RESOLUTION = 32
NUM_CLASSES = 10
DTYPE = np.float32
DEFAULT_REPEATS = 10
WORKER_STEPS = 10
WORKER_WARMUP = 2
DEFAULT_ROUNDS = 3
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


def _window_case(name, forward, backward, size, c_in, w_shape, c_out, stride):
    """A k×k convolution row (depthwise or dense) on a (BATCH, size, size, c_in) input."""
    out = same_padding(size, w_shape[0], stride)[0]
    x_shape, y_shape = (BATCH, size, size, c_in), (BATCH, out, out, c_out)

    def setup(rng):
        x, w, dy = _normal(rng, x_shape), _normal(rng, w_shape), _normal(rng, y_shape)
        return (lambda: forward(x, w, stride)), (lambda: backward(x, w, dy, stride))

    multiply_adds = int(np.prod(y_shape)) * int(np.prod(w_shape)) // c_out
    return KernelCase(name, x_shape, setup, 2 * multiply_adds, 4 * multiply_adds)


def depthwise_case(name, size, channels, k, stride):
    w_shape = (k, k, channels)
    return _window_case(name, depthwise_conv_forward, depthwise_conv_backward, size, channels, w_shape, channels, stride)


def conv2d_case(name, size, c_in, c_out, k, stride):
    return _window_case(name, conv2d_forward, conv2d_backward, size, c_in, (k, k, c_in, c_out), c_out, stride)


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


def format_table(rows):
    def number(value):
        return "-" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"

    header = ("kernel", "input (NHWC)", "fwd ms", "fwd GFLOP/s", "bwd ms", "bwd GFLOP/s")
    lines = [[row["kernel"], "×".join(map(str, row["input_shape"])), number(row["forward_ms"]),
              number(row["forward_gflops"]), number(row["backward_ms"]), number(row["backward_gflops"])]
             for row in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*line) for line in [header, *lines])


# --- the model workloads, each in its own process ------------------------------------------------------
def worker(kind, batch, steps, warmup):
    """Run ``steps`` timed steps (after ``warmup``) of B0 training or inference; return the JSON-able result
    (under mpiexec, rank 0's; None on the other ranks)."""
    from tinyeffnet.model import EfficientNet
    from tinyeffnet.optim import SGD
    from tinyeffnet.scaling import config_for_phi
    from tinyeffnet.engine import train_step
    from tinyeffnet.distributed import make_world

    world = make_world()                 # under mpiexec: this rank's share of the batch, gradients averaged
    model = EfficientNet(config_for_phi(0, num_classes=NUM_CLASSES), dtype=DTYPE)
    world.broadcast(model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, RESOLUTION, RESOLUTION, 3), dtype=DTYPE)
    y = rng.integers(0, NUM_CLASSES, batch)
    optimizer = SGD(model.named_parameters(), model.named_grads(), lr=LR, momentum=DEFAULT_MOMENTUM,
                    weight_decay=DEFAULT_WEIGHT_DECAY)
    if kind == "train":
        def step():
            train_step(model, optimizer, x, y, lr=LR, label_smoothing=DEFAULT_LABEL_SMOOTHING, world=world)
    else:
        model.eval()

        def step():
            model.forward(x)
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


def our_command(kind, batch, steps, warmup):
    return [sys.executable, "-m", "tinyeffnet.bench", "--worker", kind, "--batch", str(batch),
            "--steps", str(steps), "--warmup", str(warmup)]


def torch_command(python, kind, batch, steps, warmup, threads):
    return [python, str(TORCH_WORKER), kind, "--batch", str(batch), "--steps", str(steps), "--warmup",
            str(warmup), "--threads", str(threads), "--resolution", str(RESOLUTION), "--classes", str(NUM_CLASSES)]


def median_of(results, key):
    return statistics.median(r[key] for r in results)


def run_model_benchmark(threads, rounds, steps, torch_python=None, report=print):
    """The model figures (and PyTorch's, alternating, if ``torch_python`` is given) as one dict."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache              # empty: the first worker compiles every kernel
        report("first training step, cold JIT cache …")
        _, cold = run_worker(our_command("train", BATCH, 1, 0), env)
        report("first training step, warm JIT cache …")
        _, warm = run_worker(our_command("train", BATCH, 1, 0), env)
        ours = dict(train=[], infer=[])
        theirs = dict(train=[], infer=[], first_step=[])
        for r in range(rounds):
            for kind, batch in (("train", BATCH), ("infer", INFER_BATCH)):
                report(f"round {r + 1}/{rounds}: {kind}, batch {batch} …")
                ours[kind].append(run_worker(our_command(kind, batch, steps, WORKER_WARMUP), env)[0])
                if torch_python:
                    result, seconds = run_worker(torch_command(torch_python, kind, batch, steps, WORKER_WARMUP,
                                                               threads), env)
                    theirs[kind].append(result)
    result = dict(
        model="EfficientNet-B0 (faithful, stem stride 2)", resolution=RESOLUTION, num_classes=NUM_CLASSES,
        train_batch=BATCH, infer_batch=INFER_BATCH, threads=threads, rounds=rounds, steps_per_round=steps,
        train_images_per_second=median_of(ours["train"], "images_per_second"),
        infer_images_per_second=median_of(ours["infer"], "images_per_second"),
        peak_rss_mib=median_of(ours["train"], "peak_rss_mib"),
        first_step_seconds_cold=cold, first_step_seconds_warm=warm,
    )
    if torch_python:
        torch_result = dict(
            train_images_per_second=median_of(theirs["train"], "images_per_second"),
            infer_images_per_second=median_of(theirs["infer"], "images_per_second"),
            peak_rss_mib=median_of(theirs["train"], "peak_rss_mib"),
            versions=theirs["train"][0]["versions"])
        result["torch"] = torch_result
        result["ratios"] = dict(
            train_throughput=result["train_images_per_second"] / torch_result["train_images_per_second"],
            infer_throughput=result["infer_images_per_second"] / torch_result["infer_images_per_second"],
            peak_memory=result["peak_rss_mib"] / torch_result["peak_rss_mib"])
    return result


def find_mpiexec():
    """The ``mpiexec`` beside this Python (the mpi extra's MPICH) or on the PATH, else None."""
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")


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
    lines = [f"{result['model']} at {result['resolution']}×{result['resolution']}, {result['threads']} threads; "
             f"medians of {result['rounds']} rounds × {result['steps_per_round']} steps"]
    rows = [("training images/s (batch %d)" % result["train_batch"], "train_images_per_second", ".0f"),
            ("inference images/s (batch %d)" % result["infer_batch"], "infer_images_per_second", ".0f"),
            ("peak memory while training, MiB", "peak_rss_mib", ".0f")]
    torch_result = result.get("torch")
    lines.append(f"{'':34}{'tinyeffnet':>12}" + (f"{'PyTorch':>12}{'ratio':>8}" if torch_result else ""))
    for label, key, fmt in rows:
        line = f"{label:34}{result[key]:>12{fmt}}"
        if torch_result:
            line += f"{torch_result[key]:>12{fmt}}{result[key] / torch_result[key]:>8.2f}"
        lines.append(line)
    lines.append(f"{'first training step, cold cache, s':34}{result['first_step_seconds_cold']:>12.1f}")
    lines.append(f"{'first training step, warm cache, s':34}{result['first_step_seconds_warm']:>12.1f}")
    return "\n".join(lines)


def main(argv=None):
    parser = make_parser("python -m tinyeffnet.bench", __doc__)
    parser.add_argument("--kernels", action="store_true", help="only the per-kernel table (forward and backward, B0 shapes)")
    parser.add_argument("--vs-torch", action="store_true", help="also time PyTorch + efficientnet_pytorch, alternating")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="the Python that has torch and efficientnet_pytorch (default: this one, %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count(),
                        help="threads for both libraries (default: this machine's cores, %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=DEFAULT_ROUNDS,
                        help="alternating rounds of each workload")
    parser.add_argument("--steps", type=positive_int, default=WORKER_STEPS, help="timed steps per round")
    parser.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS,
                        help="timed calls per kernel measurement")
    parser.add_argument("--ranks", type=integer_at_least(2),
                        help="only training: N MPI ranks × 1 thread against 1 rank × N threads (needs the mpi extra)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--worker", choices=("train", "infer"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=positive_int, default=BATCH, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=non_negative_int, default=WORKER_WARMUP, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.worker, args.batch, args.steps, args.warmup)
        if result is not None:
            print(json.dumps(result))
        return
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
    result = dict(machine=machine())
    if args.kernels:
        result["kernels"] = run_kernel_cases(KERNEL_CASES, args.repeats)
    elif args.ranks:
        result.update(run_ranks_benchmark(args.ranks, args.rounds, args.steps, args.batch, report))
    else:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        result.update(run_model_benchmark(args.threads, args.rounds, args.steps,
                                          args.torch_python if args.vs_torch else None, report))
    if args.json:
        print(json.dumps(result if not args.kernels else result["kernels"], indent=1))
        return
    m = result["machine"]
    print(f"{m['date']}, {m['cpu']}, {m['cores']} cores; Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}")
    if args.kernels:
        print(f"batch {BATCH}, {np.dtype(DTYPE).name}, B0 shapes at 32×32 input; median of {args.repeats} calls")
        print(format_table(result["kernels"]))
    elif args.ranks:
        print(format_ranks(result))
    else:
        print(format_model(result))


if __name__ == "__main__":
    main()
