"""The weights and input behind ``tests/data/reference_logits_*.txt``, computed by formula from
``reference_names_*.txt``.

NumPy only (no tinyeffnet, no torch), so the same code runs in the tests and in the side environment
with torch that produced the reference files (``tests/data/reference_logits.py``): integer arithmetic
makes the same numbers in both."""

import math

import numpy as np

REFERENCE_RESOLUTION, REFERENCE_STEP = 32, 50      # how reference_logits_*.txt were made (see their header)
# torchvision's V2 reference (reference_logits_v2-s.txt) draws its convolution and linear weights with variance
# 1/fan_in, not He's 2/fan_in: in eval mode its 40 blocks, each batch norm dividing by the formula's running
# variance (0.5–1), grow He-drawn activations to logits of 1e11, where rounding no longer gives one answer
# (tinyeffnet's logits of one image then change with the batch it is in). With 1/fan_in they stay below 6.
V2_REFERENCE_GAIN = 1.0


def read_table(path):
    """A ``reference_names_*.txt`` file → [(name, dtype, shape)] of EfficientNet-PyTorch's state_dict."""
    rows = []
    for line in open(path, encoding="utf-8").read().splitlines():
        if not line.startswith("#"):
            name, dtype, shape = line.split()
            rows.append((name, dtype, tuple(int(n) for n in shape.strip("()").split(",") if n)))
    return rows


def uniform(count, stream):
    """splitmix64 of ``arange(count)`` in stream ``stream``, mapped to [−1, 1): integer arithmetic only, so the
    same numbers here as in the side environment that produced reference_logits_*.txt."""
    z = np.arange(count, dtype=np.uint64) + np.uint64((stream + 1) * 0x9E3779B97F4A7C15 % 2 ** 64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0 ** 52 - 1.0


def formula_state(table, gain=2.0):
    """The weights reference_logits_*.txt were computed with, in PyTorch's names and layouts: convolution and
    linear weights uniform with variance ``gain`` / fan_in (2, He's, for EfficientNet-PyTorch's files)."""
    state = {}
    for t, (name, dtype, shape) in enumerate(table):
        w = uniform(math.prod(shape), t).reshape(shape)
        if dtype == "int64":
            state[name] = np.zeros(shape, np.int64)
            continue
        if name.endswith("running_var"):
            value = 0.5 + 0.5 * w ** 2
        elif name.endswith(("running_mean", "bias")):
            value = 0.1 * w
        elif len(shape) == 1:                                        # batch-norm weight
            value = 1 + 0.1 * w
        else:                                                        # convolution or linear weight
            value = w * np.sqrt(3 * gain / math.prod(shape[1:]))
        state[name] = value.astype(np.float32)
    return state


def formula_input(table, resolution=REFERENCE_RESOLUTION):
    """The two images reference_logits_*.txt were computed on: (2, 3, r, r) float32, channels first as
    PyTorch takes them, in the stream after the weights'."""
    return uniform(2 * 3 * resolution * resolution, len(table)).reshape(2, 3, resolution, resolution).astype(np.float32)
