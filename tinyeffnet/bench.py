"""Benchmarks, so that speed is measured rather than claimed.

    python -m tinyeffnet.bench --kernels             # a table: ms and GFLOP/s per kernel, forward and backward
    python -m tinyeffnet.bench --kernels --json      # the same rows as a JSON list

Kernel rows use EfficientNet-B0's layer shapes for a 32×32 input (the stem halves it to 16×16), batch
128, float32. Each time is the median of ``--repeats`` calls after one warm-up call (which also
compiles the Numba loops).

FLOPs are counted as 2 per multiply-add of the textbook formula, taps that fall on padding included:
a convolution producing ``M`` outputs from ``K`` products each does ``2·M·K`` in forward; backward
computes dx and dw, each one multiply-add per forward one, so ``4·M·K``. A row may leave its FLOPs as
``None`` (for memory-bound kernels where FLOP/s says little); the table then prints "-".

To add a kernel, append a ``KernelCase`` to ``KERNEL_CASES``.
"""

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from tinyeffnet.kernels.conv2d import conv2d_backward, conv2d_forward
from tinyeffnet.kernels.depthwise import depthwise_conv_backward, depthwise_conv_forward
from tinyeffnet.kernels.padding import same_padding
from tinyeffnet.kernels.pointwise import pointwise_conv_backward, pointwise_conv_forward

BATCH = 128
DTYPE = np.float32
DEFAULT_REPEATS = 10


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyeffnet.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", action="store_true", help="time each kernel's forward and backward on B0 shapes")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed calls per measurement (median)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    args = parser.parse_args(argv)
    if not args.kernels:
        parser.error("say what to benchmark: --kernels")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    rows = run_kernel_cases(KERNEL_CASES, args.repeats)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"batch {BATCH}, {np.dtype(DTYPE).name}, B0 shapes at 32×32 input; median of {args.repeats} calls")
        print(format_table(rows))


if __name__ == "__main__":
    main()
