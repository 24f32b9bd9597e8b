"""The CUDA twins of the optimiser updates and the moving average (``kernels/cuda/{rmsprop,adamw,ema}.py``)
against their CPU kernels, in float32, over several steps (the state carries over); then the optimiser
classes and ``WeightAverage`` on the device against the same on the CPU.

Without a GPU the twins run under Numba's CUDA simulator, in a child process (``tests/cudasim.py``): in a
process that cannot run CUDA kernels the device tests skip and ``test_twins_pass_under_the_simulator`` runs
this file again with the simulator on. The simulator runs every GPU thread as a Python thread, so the
shapes are small: one element, and 130 elements (more than two blocks of 64 threads).
"""

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

numba_cuda = pytest.importorskip("numba.cuda", reason="numba.cuda is not importable: pip install 'tinyeffnet[cuda]'")

from cudasim import NO_DEVICE, rerun_under_simulator
from test_averaging import Tiny
from tinyeffnet.averaging import WeightAverage
from tinyeffnet.backend import backend
from tinyeffnet.kernels import adamw, ema, rmsprop
from tinyeffnet.kernels.cuda import adamw as adamw_cuda
from tinyeffnet.kernels.cuda import ema as ema_cuda
from tinyeffnet.kernels.cuda import rmsprop as rmsprop_cuda
from tinyeffnet.optim import OPTIMIZERS, make_optimizer

pytestmark = pytest.mark.cuda

TWINS = [(adamw, adamw_cuda), (ema, ema_cuda), (rmsprop, rmsprop_cuda)]
TOLERANCE = dict(atol=1e-6, rtol=1e-5)   # float32 on both sides, the same operations in the same order
SHAPES = [(1,), (2, 5, 13)]
STEPS = 3


@pytest.fixture(scope="module")
def cuda():
    """The ``numba.cuda`` module when this process can run kernels (a GPU or the simulator), else skip."""
    if NO_DEVICE:
        pytest.skip(NO_DEVICE)
    return numba_cuda


@pytest.fixture
def device(cuda):
    """The CUDA backend."""
    return backend("cuda")


def test_twins_pass_under_the_simulator():
    """What CI runs: this file in a child process with the simulator on, when this process has no device."""
    rerun_under_simulator(__file__)


def test_cpu_kernels_do_not_import_numba_cuda():
    code = ("import sys, tinyeffnet.optim, tinyeffnet.averaging, tinyeffnet.kernels.adamw, tinyeffnet.kernels.ema, "
            "tinyeffnet.kernels.rmsprop\nassert 'numba.cuda' not in sys.modules\n")
    env = {name: value for name, value in os.environ.items() if name != "NUMBA_ENABLE_CUDASIM"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize("cpu, twin", TWINS, ids=[cpu.__name__.rsplit(".", 1)[1] for cpu, _ in TWINS])
def test_every_kernel_has_a_twin_with_the_same_arguments(cpu, twin):
    kernels = [name for name, f in vars(cpu).items()
               if inspect.isfunction(f) and f.__module__ == cpu.__name__ and not name.startswith("_")]
    assert kernels
    for name in kernels:
        assert inspect.signature(getattr(twin, name)) == inspect.signature(getattr(cpu, name)), name


def random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def check_in_place_update(cuda, cpu_update, twin_update, written, read, hyper_of_step):
    """Run ``STEPS`` updates on the CPU and on the device from the same arrays (``written``: updated in place,
    ``read``: the gradient or the new value, one per step) and compare every written array after each step."""
    on_device = [cuda.to_device(a) for a in written]
    for step in range(1, STEPS + 1):
        x = read[step - 1]
        cpu_update(*written[:1], x, *written[1:], *hyper_of_step(step))
        twin_update(*on_device[:1], cuda.to_device(x), *on_device[1:], *hyper_of_step(step))
        for device_array, host_array in zip(on_device, written):
            np.testing.assert_allclose(device_array.copy_to_host(), host_array, **TOLERANCE)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_rmsprop_update(cuda, shape, weight_decay):
    written = [random(shape, 0), np.ones(shape, np.float32), random(shape, 1)]     # θ, ms (from one), mom
    grads = [random(shape, 2 + s) for s in range(STEPS)]
    check_in_place_update(cuda, rmsprop.rmsprop_update, rmsprop_cuda.rmsprop_update, written, grads,
                          lambda step: (0.05, 0.9, 0.9, 1e-3, weight_decay))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adamw_update(cuda, shape, weight_decay):
    written = [random(shape, 0), np.zeros(shape, np.float32), np.zeros(shape, np.float32)]   # θ, m, v
    grads = [random(shape, 2 + s) for s in range(STEPS)]
    check_in_place_update(cuda, adamw.adamw_update, adamw_cuda.adamw_update, written, grads,
                          lambda step: (0.01, 0.9, 0.999, 1e-8, weight_decay, step))


@pytest.mark.parametrize("shape", SHAPES)
def test_ema_update(cuda, shape):
    values = [random(shape, 1 + s) for s in range(STEPS)]
    check_in_place_update(cuda, ema.ema_update, ema_cuda.ema_update, [random(shape, 0)], values,
                          lambda step: (min(0.9999, (1 + step) / (10 + step)),))


def test_twins_check_their_arguments(cuda):
    p = cuda.to_device(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="grad must be a numba.cuda device array"):
        adamw_cuda.adamw_update(p, np.zeros(3, np.float32), p, p, 0.1, 0.9, 0.999, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match="ms has shape"):
        rmsprop_cuda.rmsprop_update(p, p, cuda.to_device(np.zeros(2, np.float32)), p, 0.1, 0.9, 0.9, 1e-3, 0.0)
    with pytest.raises(TypeError, match="x must be float32"):
        ema_cuda.ema_update(p, cuda.to_device(np.zeros(3)), 0.9)


# ---- the classes on the device: state beside the parameters, the same numbers as on the CPU ----

@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_on_the_device_matches_the_cpu(device, name):
    params = {"w": random((3, 50), 0), "b": random(50, 1)}
    grads = {"w": random((3, 50), 2), "b": random(50, 3)}
    on_device = [{k: device.to_device(a) for k, a in arrays.items()} for arrays in (params, grads)]
    hyper = dict(lr=0.01, weight_decay=0.01)
    on_cpu, on_gpu = make_optimizer(name, params, grads, **hyper), make_optimizer(name, *on_device, **hyper)
    for _ in range(STEPS):
        on_cpu.step()
        on_gpu.step()
    for k, p in params.items():
        np.testing.assert_allclose(on_device[0][k].copy_to_host(), p, **TOLERANCE)
    cpu_state, gpu_state = on_cpu.state_dict(), on_gpu.state_dict()
    assert cpu_state.keys() == gpu_state.keys()
    for k, v in cpu_state.items():
        np.testing.assert_allclose(gpu_state[k], v, **TOLERANCE, err_msg=k)


def test_weight_average_on_the_device_matches_the_cpu(device):
    cpu_model, gpu_model = Tiny(np.float32), Tiny(np.float32).to("cuda")
    cpu_average, gpu_average = WeightAverage(cpu_model), WeightAverage(gpu_model)
    rng = np.random.default_rng(1)
    for _ in range(STEPS):
        for (_, cpu_arrays, key), (_, gpu_arrays, _) in zip(cpu_average.slots, gpu_average.slots):
            value = rng.standard_normal(cpu_arrays[key].shape).astype(np.float32)
            cpu_arrays[key][...] = value
            device.copy_into(gpu_arrays[key], value)
        cpu_average.update()
        gpu_average.update()
    weight = gpu_model.linear.params["weight"]
    with gpu_average.applied():
        np.testing.assert_allclose(gpu_model.linear.params["weight"].copy_to_host(),
                                   cpu_average.average["linear.weight"], **TOLERANCE)
    assert gpu_model.linear.params["weight"] is weight
    cpu_state, gpu_state = cpu_average.state_dict(), gpu_average.state_dict()
    for k, v in cpu_state.items():
        np.testing.assert_allclose(gpu_state[k], v, **TOLERANCE, err_msg=k)
