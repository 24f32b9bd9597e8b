"""Training on the GPU: SGD steps of a tiny network on the CUDA backend against the same steps on the CPU.

Both models start from one seed, so they hold the same weights and draw the same dropout and drop-connect
masks (on the host), and they see the same batches. After each step the losses must agree, and after the
last one every parameter, batch-norm statistic and SGD velocity; all of them must have stayed on the
device. Without a GPU this runs under Numba's CUDA simulator in a child process (``tests/cudasim.py``).

The simulator runs every GPU thread as a Python thread and every ``syncthreads`` as a barrier between
them, so a block that sums (one per batch-norm channel, per pooled value, per weight of a depthwise
filter) costs a good fraction of a second. The smallest EfficientNet (width 0.1, depth 0.1) has seven
blocks and about 25 batch norms of 8 to 144 channels: minutes per step. The network here is
``TinyNet``, EfficientNet with one MBConv block of two channels: every layer type and every path
(expansion aside), EfficientNet's own forward, backward, state and device moves.
"""

import numpy as np
import pytest

from cudasim import NO_DEVICE, rerun_under_simulator
from tolerances import TRAINING
from tinyeffnet.backend import is_device_array
from tinyeffnet.checkpoint import load_checkpoint, save_checkpoint
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.layers import BatchNorm, Conv2d, Dropout, GlobalAvgPool, Layer, Linear, PointwiseConv2d
from tinyeffnet.mbconv import MBConv
from tinyeffnet.model import IMAGE_CHANNELS, STEM_KERNEL, EfficientNet
from tinyeffnet.optim import SGD, clip_grad_norm
from tinyeffnet.scaling import ModelConfig

pytestmark = pytest.mark.cuda

CONFIG = ModelConfig(name="tiny", width=0.1, depth=0.1, resolution=4, dropout=0.2, num_classes=10, stem_stride=1,
                     drop_connect=0.5)
CHANNELS, HEAD_CHANNELS = 2, 4
BATCH, STEPS = 2, 3
RECIPE = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
SMOOTHING = 0.1
MAX_GRAD_NORM = 1.0     # small enough that clipping scales the gradients


class TinyNet(EfficientNet):
    """stem 3×3 → BN + swish → MBConv (3×3 depthwise, SE, identity skip with drop connect) → head 1×1 →
    BN + swish → pool → dropout → classifier, on (N, 4, 4, 3) images; ``EfficientNet.layers()`` order."""

    def __init__(self, seed=0, dtype=np.float32):
        Layer.__init__(self)
        self.config, self.dtype = CONFIG, np.dtype(dtype)
        rng, self.noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        bn = dict(momentum=CONFIG.bn_momentum, epsilon=CONFIG.bn_epsilon, dtype=dtype)
        self.stem = Conv2d(IMAGE_CHANNELS, CHANNELS, STEM_KERNEL, CONFIG.stem_stride, rng, dtype)
        self.stem_bn = BatchNorm(CHANNELS, activation=CONFIG.activation, **bn)
        self.blocks = [MBConv(CHANNELS, CHANNELS, kernel=3, stride=1, expand=1, se_ratio=0.25,
                              drop_rate=CONFIG.drop_connect, config=CONFIG, rng=rng, noise_rng=self.noise_rng,
                              dtype=dtype)]
        self.head = PointwiseConv2d(CHANNELS, HEAD_CHANNELS, rng, dtype)
        self.head_bn = BatchNorm(HEAD_CHANNELS, activation=CONFIG.activation, **bn)
        self.pool = GlobalAvgPool()
        self.dropout = Dropout(CONFIG.dropout, self.noise_rng)
        self.classifier = Linear(HEAD_CHANNELS, CONFIG.num_classes, rng, dtype)


def batches():
    rng = np.random.default_rng(1)
    shape = (BATCH, CONFIG.resolution, CONFIG.resolution, 3)
    return [(rng.normal(size=shape).astype(np.float32), rng.integers(0, CONFIG.num_classes, BATCH))
            for _ in range(STEPS)]


def train(device):
    """STEPS steps of SGD on ``device``, only the batch going in: ``(losses, model, optimizer)``."""
    model = TinyNet(seed=0).to(device)
    optimizer = SGD(model.named_parameters(), model.named_grads(), **RECIPE)
    kernels = model.backend
    losses = []
    for x, y in batches():
        model.train()
        model.zero_grad()
        labels = kernels.to_device(y)
        loss, probs = kernels.loss.cross_entropy_forward(model.forward(x), labels, SMOOTHING)
        model.backward(kernels.loss.cross_entropy_backward(probs, labels, SMOOTHING))
        clip_grad_norm(optimizer.grads, MAX_GRAD_NORM)
        optimizer.step()
        losses.append(loss)
    return losses, model, optimizer


@pytest.fixture(scope="module")
def runs():
    """The same training on the CPU and on the device, by device name."""
    if NO_DEVICE:
        pytest.skip(NO_DEVICE)
    return {device: train(device) for device in ("cpu", "cuda")}


def test_device_training_under_the_simulator():
    """What CI runs: this file in a child process with the simulator on, when this process has no device."""
    rerun_under_simulator(__file__)


def test_moving_to_cuda_without_a_device_says_what_is_missing():
    if not NO_DEVICE:
        pytest.skip("this process has a device")
    with pytest.raises(TinyEffNetError, match="NUMBA_ENABLE_CUDASIM=1"):
        TinyNet().to("cuda")


def test_losses_match_the_cpu(runs):
    cpu_losses, device_losses = runs["cpu"][0], runs["cuda"][0]
    assert all(np.isfinite(cpu_losses)) and cpu_losses[0] != cpu_losses[-1]
    np.testing.assert_allclose(device_losses, cpu_losses, **TRAINING)


def test_parameters_statistics_and_velocities_match_the_cpu(runs):
    (_, cpu_model, cpu_optimizer), (_, device_model, device_optimizer) = runs["cpu"], runs["cuda"]
    for cpu_state, device_state in [(cpu_model.state_dict(), device_model.state_dict()),
                                    (cpu_optimizer.state_dict(), device_optimizer.state_dict())]:
        assert cpu_state.keys() == device_state.keys()
        for name, value in cpu_state.items():
            np.testing.assert_allclose(device_state[name], value, **TRAINING, err_msg=name)


def test_training_state_stays_on_the_device(runs):
    _, model, optimizer = runs["cuda"]
    float_buffers = [b for b in model.named_buffers().values() if b.dtype == np.float32]
    tensors = [*model.named_parameters().values(), *model.named_grads().values(), *optimizer.velocity.values(),
               *float_buffers]
    assert float_buffers and all(is_device_array(a) for a in tensors)


def test_evaluation_on_the_device_matches_the_cpu(runs):
    x = batches()[0][0]
    cpu_model, device_model = runs["cpu"][1], runs["cuda"][1]
    expected = cpu_model.eval().forward(x)
    np.testing.assert_allclose(device_model.backend.to_host(device_model.eval().forward(x)), expected, **TRAINING)


def test_checkpoint_of_a_device_model_loads_on_the_cpu(runs, tmp_path):
    _, model, optimizer = runs["cuda"]
    save_checkpoint(tmp_path / "device.npz", model, optimizer)
    _, model_state, optimizer_state, _ = load_checkpoint(tmp_path / "device.npz")
    cpu_model = TinyNet()
    cpu_model.load_state_dict(model_state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(cpu_model.state_dict()[name], value, err_msg=name)
    assert optimizer_state.keys() == optimizer.state_dict().keys()


def test_a_device_model_moves_back_to_the_cpu(runs):
    _, model, _ = runs["cuda"]
    copy = TinyNet().to("cuda")
    copy.load_state_dict(model.state_dict())
    copy.to("cpu")
    assert all(isinstance(a, np.ndarray) for a in copy.named_parameters().values())
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(copy.state_dict()[name], value, err_msg=name)


def test_only_float32_models_move_to_the_device(runs):
    with pytest.raises(TypeError, match="float32"):
        TinyNet(dtype=np.float64).to("cuda")
