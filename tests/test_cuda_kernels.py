"""The CUDA twins (``kernels/cuda/*.py``) against their CPU kernels, forward and backward, in float32.

Without a GPU the twins run under Numba's CUDA simulator, in a child process (``tests/cudasim.py``):
in a process where ``numba.cuda`` has neither the simulator nor a GPU, every test that needs a device
skips (the ``cuda`` fixture says why) and ``test_twins_pass_under_the_simulator`` runs this file in a
child process with the simulator switched on. The simulator runs every GPU thread as a Python thread,
so the shapes are tiny and hypothesis draws few examples.
"""

import importlib
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import LONG_SUMS_F32, TWIN_GRADIENT

# The CUDA twins import numba.cuda: without it (no numba-cuda, and a Numba without the built-in target), skip.
numba_cuda = pytest.importorskip("numba.cuda", reason="numba.cuda is not importable: pip install 'tinyeffnet[cuda]'")

from cudasim import NO_DEVICE, rerun_under_simulator
from tinyeffnet.kernels import (
    activations,
    batchnorm,
    batchnorm_act,
    conv2d,
    depthwise,
    dropout,
    elementwise,
    linear,
    loss,
    pointwise,
    pooling,
    scale,
    sgd,
)
from tinyeffnet.kernels.cuda import activations as activations_cuda
from tinyeffnet.kernels.cuda import elementwise as elementwise_cuda
from tinyeffnet.kernels.cuda import linear as linear_cuda
from tinyeffnet.kernels.cuda import loss as loss_cuda
from tinyeffnet.kernels.cuda import sgd as sgd_cuda
from tinyeffnet.kernels.padding import PADDINGS
from tinyeffnet.scaling import BN_EPSILON, BN_MOMENTUM

pytestmark = pytest.mark.cuda

CPU_KERNELS = (activations, batchnorm, batchnorm_act, conv2d, depthwise, dropout, elementwise, linear, loss,
               pointwise, pooling, scale, sgd)
# kernels/x.py and its twin kernels/cuda/x.py
TWINS = [(cpu, importlib.import_module(cpu.__name__.replace(".kernels.", ".kernels.cuda."))) for cpu in CPU_KERNELS]
TWIN_OF = {cpu.__name__: twin for cpu, twin in TWINS}
# Public functions of the CPU files without a twin: the host-drawn masks, and the unfused batch norm, the
# reference the fused batchnorm_act is tested against (no layer calls it, on either device).
HOST_ONLY = {"dropout_mask", "drop_connect_mask", "batchnorm_train_forward", "batchnorm_train_backward",
             "batchnorm_eval_forward", "batchnorm_eval_backward"}

FEW_EXAMPLES = settings(max_examples=4)
C_OUT = 3  # output channels of the dense convolution

# (N, H, W, C, k, stride): batch 1, one channel, odd and even sizes, an input smaller than the window,
# both strides, k = 3 and 5.
WINDOW_SHAPES = [
    (1, 5, 7, 2, 3, 2),
    (2, 4, 3, 1, 5, 1),
    (1, 1, 2, 2, 3, 1),
    (1, 6, 5, 2, 5, 2),
    (2, 3, 3, 1, 3, 1),
]


@pytest.fixture(scope="module")
def cuda():
    """The ``numba.cuda`` module when this process can run kernels (a GPU or the simulator), else skip."""
    if NO_DEVICE:
        pytest.skip(NO_DEVICE)
    return numba_cuda


def random(*shape, seed=0, spread=1.0):
    return (spread * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def run_both(cuda, cpu_kernel, *args, tolerance):
    """Run ``cpu_kernel`` on ``args`` and its CUDA twin on the same args (arrays copied to the device),
    check that every output agrees within ``tolerance``, and return the CPU outputs."""
    twin_kernel = getattr(TWIN_OF[cpu_kernel.__module__], cpu_kernel.__name__)
    expected = cpu_kernel(*args)
    got = twin_kernel(*(cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args))
    pairs = zip(got, expected) if isinstance(expected, tuple) else [(got, expected)]
    for on_device, on_cpu in pairs:
        if isinstance(on_cpu, float):
            assert on_device == pytest.approx(on_cpu, rel=tolerance["rtol"], abs=tolerance["atol"])
            continue
        host = on_device.copy_to_host()
        assert host.dtype == np.float32 and host.shape == on_cpu.shape
        np.testing.assert_allclose(host, on_cpu, **tolerance)
    return expected


def test_twins_pass_under_the_simulator():
    """What CI runs: this file in a child process with the simulator on, when this process has no device."""
    rerun_under_simulator(__file__)


def test_cpu_kernels_do_not_import_numba_cuda():
    imports = "".join(f"import {cpu.__name__}\n" for cpu, _ in TWINS)
    modules = "import sys, tinyeffnet, tinyeffnet.model, tinyeffnet.optim\n"
    code = f"{modules}{imports}assert 'numba.cuda' not in sys.modules\n"
    env = {name: value for name, value in os.environ.items() if name != "NUMBA_ENABLE_CUDASIM"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize("cpu, twin", TWINS, ids=[cpu.__name__.rsplit(".", 1)[1] for cpu, _ in TWINS])
def test_every_kernel_has_a_twin_with_the_same_arguments(cpu, twin):
    kernels = [
        name
        for name, f in vars(cpu).items()
        if inspect.isfunction(f)
        and f.__module__ == cpu.__name__
        and not name.startswith("_")
        and name not in HOST_ONLY
    ]
    assert kernels
    for name in kernels:
        assert inspect.signature(getattr(twin, name)) == inspect.signature(getattr(cpu, name)), name


def test_twins_take_only_float32_device_arrays(cuda):
    with pytest.raises(TypeError, match="x must be a numba.cuda device array"):
        activations_cuda.swish_forward(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="x must be float32"):
        activations_cuda.swish_forward(cuda.to_device(np.zeros(3)))
    with pytest.raises(TypeError, match="w must be a numba.cuda device array"):
        x = cuda.to_device(np.zeros((1, 2), np.float32))
        linear_cuda.linear_forward(x, np.zeros((2, 2), np.float32), cuda.to_device(np.zeros(2, np.float32)))


# ---- convolutions: depthwise, dense (im2col), pointwise (the tiled matrix product) ----

def check_depthwise(cuda, n, h, w, c, k, stride, padding, seed=0):
    x, wt = random(n, h, w, c, seed=seed), random(k, k, c, seed=seed + 1)
    y = run_both(cuda, depthwise.depthwise_conv_forward, x, wt, stride, padding, tolerance=LONG_SUMS_F32)
    dy = random(*y.shape, seed=seed + 2)
    run_both(cuda, depthwise.depthwise_conv_backward, x, wt, dy, stride, padding, tolerance=TWIN_GRADIENT)


def check_conv2d(cuda, n, h, w, c, k, stride, padding, seed=0):
    x, wt = random(n, h, w, c, seed=seed), random(k, k, c, C_OUT, seed=seed + 1)
    y = run_both(cuda, conv2d.conv2d_forward, x, wt, stride, padding, tolerance=LONG_SUMS_F32)
    dy = random(*y.shape, seed=seed + 2)
    run_both(cuda, conv2d.conv2d_backward, x, wt, dy, stride, padding, tolerance=TWIN_GRADIENT)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("check", [check_depthwise, check_conv2d])
@pytest.mark.parametrize("n, h, w, c, k, stride", WINDOW_SHAPES)
def test_window_convolutions(cuda, check, n, h, w, c, k, stride, padding):
    check(cuda, n, h, w, c, k, stride, padding)


@pytest.mark.parametrize("check", [check_depthwise, check_conv2d])
@FEW_EXAMPLES
@given(
    n=st.integers(1, 2),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    c=st.integers(1, 2),
    k=st.sampled_from([3, 5]),
    stride=st.sampled_from([1, 2]),
    padding=st.sampled_from(list(PADDINGS)),
    seed=st.integers(0, 1000),
)
def test_window_convolutions_on_drawn_shapes(cuda, check, n, h, w, c, k, stride, padding, seed):
    check(cuda, n, h, w, c, k, stride, padding, seed)


# (N, H, W, C_in, C_out): single elements, and sizes that cross the matrix product's TILE boundaries.
POINTWISE_SHAPES = [(1, 1, 1, 1, 1), (1, 3, 7, 20, 18), (2, 3, 1, 5, 2)]


@pytest.mark.parametrize("n, h, w, c_in, c_out", POINTWISE_SHAPES)
def test_pointwise(cuda, n, h, w, c_in, c_out):
    x, wt, dy = random(n, h, w, c_in), random(c_in, c_out, seed=1), random(n, h, w, c_out, seed=2)
    run_both(cuda, pointwise.pointwise_conv_forward, x, wt, tolerance=LONG_SUMS_F32)
    run_both(cuda, pointwise.pointwise_conv_backward, x, wt, dy, tolerance=TWIN_GRADIENT)


# F_in = 17 > TILE: the matrix product walks two tiles of the inner dimension.
@pytest.mark.parametrize("n, f_in, f_out", [(1, 1, 1), (3, 17, 2), (5, 2, 7)])
def test_linear(cuda, n, f_in, f_out):
    x, wt, b, dy = random(n, f_in), random(f_in, f_out, seed=1), random(f_out, seed=2), random(n, f_out, seed=3)
    run_both(cuda, linear.linear_forward, x, wt, b, tolerance=LONG_SUMS_F32)
    run_both(cuda, linear.linear_backward, x, wt, dy, tolerance=TWIN_GRADIENT)


# ---- normalisation, activations, pooling, excitation, loss, dropout ----

# x shapes: 2-D, one value per channel, one channel, and M = 162 > 64 threads of a block, per channel.
NORM_SHAPES = [(4, 3), (1, 1, 1, 2), (2, 3, 5, 1), (2, 9, 9, 3)]


@pytest.mark.parametrize("activation", list(batchnorm_act.ACTIVATIONS))
@pytest.mark.parametrize("shape", NORM_SHAPES)
def test_batchnorm_fused_with_activation(cuda, shape, activation):
    channels = shape[-1]
    x, dz = random(*shape, spread=3.0), random(*shape, seed=3)
    gamma, beta = random(channels, seed=1), random(channels, seed=2)
    _, mean, var = run_both(
        cuda, batchnorm_act.batchnorm_act_train_forward, x, gamma, beta, BN_EPSILON, activation, tolerance=LONG_SUMS_F32
    )
    stats = gamma, beta, mean, var, BN_EPSILON
    run_both(cuda, batchnorm_act.batchnorm_act_eval_forward, x, *stats, activation, tolerance=LONG_SUMS_F32)
    run_both(cuda, batchnorm_act.batchnorm_act_train_backward, x, *stats, dz, activation, tolerance=TWIN_GRADIENT)


@pytest.mark.parametrize("count", [1, 162])
def test_update_running_stats(cuda, count):
    running_mean, mean = random(3), random(3, seed=2)
    running_var, var = np.abs(random(3, seed=1)), np.abs(random(3, seed=3))
    stats = running_mean, running_var, mean, var
    run_both(cuda, batchnorm.update_running_stats, *stats, count, BN_MOMENTUM, tolerance=LONG_SUMS_F32)


ACTIVATIONS = [
    (activations.swish_forward, activations.swish_backward),
    (activations.sigmoid_forward, activations.sigmoid_backward),
    (activations.relu6_forward, activations.relu6_backward),
]


@pytest.mark.parametrize("forward, backward", ACTIVATIONS, ids=["swish", "sigmoid", "relu6"])
def test_activations(cuda, forward, backward):
    x = np.concatenate([random(2, 3, 5, spread=4.0).ravel(), [-100.0, -6.0, 0.0, 6.0, 7.0, 100.0]]).astype(np.float32)
    dy = random(*x.shape, seed=1)
    y = run_both(cuda, forward, x, tolerance=LONG_SUMS_F32)
    run_both(cuda, backward, y if forward is activations.sigmoid_forward else x, dy, tolerance=TWIN_GRADIENT)


# (N, H, W, C): batch 1, one channel, odd sizes, and P = 132 > 64 threads of a block.
SPATIAL_SHAPES = [(1, 1, 1, 1), (2, 3, 5, 4), (1, 12, 11, 2)]


@pytest.mark.parametrize("n, h, w, c", SPATIAL_SHAPES)
def test_global_avg_pool(cuda, n, h, w, c):
    run_both(cuda, pooling.global_avg_pool_forward, random(n, h, w, c), tolerance=LONG_SUMS_F32)
    run_both(cuda, pooling.global_avg_pool_backward, random(n, c, seed=1), h, w, tolerance=TWIN_GRADIENT)


@pytest.mark.parametrize("n, h, w, c", SPATIAL_SHAPES)
def test_channel_scale(cuda, n, h, w, c):
    x, s, dy = random(n, h, w, c), random(n, c, seed=1), random(n, h, w, c, seed=2)
    run_both(cuda, scale.channel_scale_forward, x, s, tolerance=LONG_SUMS_F32)
    run_both(cuda, scale.channel_scale_backward, x, s, dy, tolerance=TWIN_GRADIENT)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("batch, classes, spread", [(1, 1, 1.0), (3, 5, 1.0), (4, 10, 1e4)])
def test_cross_entropy(cuda, smoothing, batch, classes, spread):
    logits = random(batch, classes, spread=spread)
    labels = np.random.default_rng(1).integers(0, classes, batch)
    _, probs = run_both(cuda, loss.cross_entropy_forward, logits, labels, smoothing, tolerance=LONG_SUMS_F32)
    run_both(cuda, loss.cross_entropy_backward, probs, labels, smoothing, tolerance=TWIN_GRADIENT)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("batch, classes, spread", [(1, 1, 1.0), (3, 5, 1.0), (4, 10, 1e4)])
def test_soft_cross_entropy(cuda, smoothing, batch, classes, spread):
    logits = random(batch, classes, spread=spread)
    targets = np.random.default_rng(1).dirichlet(np.ones(classes), batch).astype(np.float32)
    _, probs = run_both(cuda, loss.soft_cross_entropy_forward, logits, targets, smoothing, tolerance=LONG_SUMS_F32)
    run_both(cuda, loss.soft_cross_entropy_backward, probs, targets, smoothing, tolerance=TWIN_GRADIENT)


def test_soft_targets_are_checked_on_the_device(cuda):
    logits = cuda.to_device(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="row 1 of targets sums to 0.5, not 1"):
        loss_cuda.soft_cross_entropy_forward(logits, cuda.to_device(np.array([[1, 0], [0.5, 0]], np.float32)))
    with pytest.raises(TypeError, match="targets must be a numba.cuda device array"):
        loss_cuda.soft_cross_entropy_backward(logits, np.full((2, 2), 0.5, np.float32))


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_dropout_and_drop_connect(cuda, rate):
    x, dy = random(2, 3, 5, 2), random(2, 3, 5, 2, seed=1)
    mask = dropout.dropout_mask(np.random.default_rng(2), x.shape, rate)
    keep = dropout.drop_connect_mask(np.random.default_rng(3), x.shape[0], rate)
    run_both(cuda, dropout.dropout_forward, x, mask, tolerance=LONG_SUMS_F32)
    run_both(cuda, dropout.dropout_backward, mask, dy, tolerance=TWIN_GRADIENT)
    run_both(cuda, dropout.drop_connect_forward, x, keep, tolerance=LONG_SUMS_F32)
    run_both(cuda, dropout.drop_connect_backward, keep, dy, tolerance=TWIN_GRADIENT)


# ---- whole-tensor arithmetic and the SGD update (in place: compared after the call) ----

# Sizes: one element, and 130 > 2 blocks of 64 threads.
@pytest.mark.parametrize("shape", [(1,), (2, 5, 13)])
def test_elementwise(cuda, shape):
    a, b = random(*shape), random(*shape, seed=1)
    run_both(cuda, elementwise.add, a, b, tolerance=LONG_SUMS_F32)
    assert elementwise_cuda.sum_of_squares(cuda.to_device(a)) == pytest.approx(elementwise.sum_of_squares(a), rel=1e-6)
    in_place = [
        (elementwise.add_into, elementwise_cuda.add_into, (b,)),
        (elementwise.scale_into, elementwise_cuda.scale_into, (0.3,)),
        (elementwise.fill, elementwise_cuda.fill, (-2.5,)),
    ]
    for on_cpu, on_device, args in in_place:
        expected, got = a.copy(), cuda.to_device(a)
        on_cpu(expected, *args)
        on_device(got, *(cuda.to_device(x) if isinstance(x, np.ndarray) else x for x in args))
        np.testing.assert_allclose(got.copy_to_host(), expected, **LONG_SUMS_F32)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_sgd_update(cuda, nesterov, weight_decay):
    param, grad, velocity = random(3, 50), random(3, 50, seed=1), random(3, 50, seed=2)
    device_param, device_velocity = cuda.to_device(param), cuda.to_device(velocity)
    hyper = dict(lr=0.1, momentum=0.9, weight_decay=weight_decay, nesterov=nesterov)
    sgd.sgd_update(param, grad, velocity, **hyper)
    sgd_cuda.sgd_update(device_param, cuda.to_device(grad), device_velocity, **hyper)
    np.testing.assert_allclose(device_param.copy_to_host(), param, **LONG_SUMS_F32)
    np.testing.assert_allclose(device_velocity.copy_to_host(), velocity, **LONG_SUMS_F32)
