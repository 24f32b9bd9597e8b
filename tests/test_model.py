"""The network: exact parameter and multiply-add counts against the reference, the compound-scaling
rule, whole-network gradients against central differences, and saving/loading."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gradcheck import numerical_gradient
from tinyeffnet.checkpoint import load_checkpoint, load_model, save_checkpoint
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.kernels.loss import cross_entropy_backward, cross_entropy_forward
import tinyeffnet.model as model_module
import tinyeffnet.scaling as scaling
from tinyeffnet.fused_mbconv import FusedMBConv
from tinyeffnet.mbconv import MBConv
from tinyeffnet.model import EfficientNet
from tinyeffnet.scaling import (B0_STAGES, Family, ModelConfig, compound_coefficients, config_for_phi,
                                config_for_variant, round_filters, round_repeats)
from tinyeffnet.summary import summarize

# Trainable parameters of the reference EfficientNet-PyTorch / TF models (running statistics excluded).
REFERENCE_PARAMS = {
    "b0": (5_288_548, 4_020_358), "b1": (7_794_184, 6_525_994), "b2": (9_109_994, 7_715_084),
    "b3": (12_233_232, 10_711_602), "b4": (19_341_616, 17_566_546), "b5": (30_389_784, 28_361_274),
    "b6": (43_040_704, 40_758_754), "b7": (66_347_960, 63_812_570),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_counts_match_the_reference(name):
    for classes, expected in zip((1000, 10), REFERENCE_PARAMS[name]):
        assert EfficientNet(config_for_variant(name, num_classes=classes)).num_parameters() == expected


def test_lite0_parameter_count():
    assert EfficientNet(config_for_variant("lite0")).num_parameters() == 4_652_008


def test_b0_multiply_adds():
    # 8.47 M at 32×32 with 10 classes: convolutions, SE and classifier.
    rows = summarize(EfficientNet(config_for_variant("b0", num_classes=10), dtype=np.float32), 32)
    assert sum(r[4] for r in rows) == 8_474_848
    # At 224×224 with 1000 classes the convolutions and SE come to 384.5 M; the 1280×1000 classifier adds 1.28 M.
    rows = summarize(EfficientNet(config_for_variant("b0")), 224)
    body = sum(r[4] for r in rows if r[0] != "classifier")
    classifier = sum(r[4] for r in rows if r[0] == "classifier")
    assert body == 384_534_752 and round(body / 1e5) == 3845
    assert classifier == 1280 * 1000


def test_rounding_rules():
    assert round_filters(32, 1.0) == 32
    assert round_filters(32, 1.1) == 32        # 35.2 → 32: within 90 %
    assert round_filters(16, 1.8) == 32        # 28.8 → 32
    assert round_filters(1280, 2.0) == 2560
    assert round_filters(24, 0.2) == 8         # never below the divisor
    assert round_repeats(3, 1.1) == 4 and round_repeats(1, 3.1) == 4 and round_repeats(4, 1.0) == 4


def test_compound_scaling_rule():
    d, w, r = compound_coefficients(1.0)
    assert (d, w, r) == pytest.approx((1.2, 1.1, 1.15))
    assert d * w**2 * r**2 == pytest.approx(1.92, abs=0.01)         # α·β²·γ² ≈ 2
    config = config_for_phi(2.5)
    assert config.resolution == round(32 * 1.15**2.5)
    assert config.depth == pytest.approx(1.2**2.5) and config.width == pytest.approx(1.1**2.5)
    assert config_for_phi(0).stages() == config_for_variant("b0", num_classes=10, resolution=32).stages()
    with pytest.raises(ValueError, match="φ"):
        compound_coefficients(-1)


def test_every_stage_names_a_registered_block_type():
    for name in scaling.VARIANTS:
        assert {s.block for s in config_for_variant(name).stages()} <= set(model_module.BLOCKS)
    assert model_module.BLOCKS["fused_mbconv"] is FusedMBConv


def test_the_stage_table_chooses_the_block_class_and_the_family_the_widths(monkeypatch):
    """A new block type is a class with ``from_stage`` in ``model.BLOCKS`` and rows that name it; a new family
    is a table whose first input is the stem's width, with its own head width."""
    class Tagged(MBConv):
        pass

    monkeypatch.setitem(model_module.BLOCKS, "tagged", Tagged)
    table = (replace(B0_STAGES[0], in_channels=16), replace(B0_STAGES[1], block="tagged"), *B0_STAGES[2:])
    monkeypatch.setitem(scaling.FAMILIES, "tagged", Family(table, head_channels=64))
    config = ModelConfig(name="t", width=1.0, depth=1.0, resolution=16, dropout=0.0, num_classes=3, family="tagged")
    net = EfficientNet(config)
    repeats = [s.repeats for s in B0_STAGES]
    assert [type(b) for b in net.blocks] == [MBConv] * repeats[0] + [Tagged] * repeats[1] + [MBConv] * sum(repeats[2:])
    state = net.state_dict()
    assert state["stem.weight"].shape == (3, 3, 3, 16) and state["head.weight"].shape == (320, 64)
    assert net.forward(np.zeros((1, 16, 16, 3), np.float32)).shape == (1, 3)


def test_cifar_adaptation_shapes():
    faithful = config_for_phi(0)
    adapted = replace(faithful, stem_stride=1)
    model = EfficientNet(adapted)
    rows = {r[0]: r for r in summarize(model)}
    assert rows["stem"][2] == (32, 32, 32) and rows["head"][2] == (2, 2, 1280)
    assert {r[0]: r for r in summarize(EfficientNet(faithful))}["head"][2] == (1, 1, 1280)
    assert model.num_parameters() == EfficientNet(faithful).num_parameters()


FAMILY_NAMES = ["efficientnet", "efficientnetv2"]   # B0's and V2-Base's: MBConv only, Fused-MBConv then MBConv


def tiny_config(**overrides):
    base = ModelConfig(name="tiny", width=0.25, depth=0.1, resolution=16, dropout=0.0, num_classes=3,
                       drop_connect=0.0)
    return replace(base, **overrides)


@settings(max_examples=4)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([9, 16]), stem_stride=st.sampled_from([1, 2]),
       se=st.booleans(), family=st.sampled_from(FAMILY_NAMES))
@example(seed=0, size=9, stem_stride=2, se=True, family="efficientnetv2")
def test_whole_network_gradients(seed, size, stem_stride, se, family):
    """d loss / d θ for a sample of every parameter tensor and of the input, against central differences,
    for B0's family and V2-Base's (Fused-MBConv and MBConv blocks).

    The step is 1e-5 rather than the kernels' 1e-6: late batch norms normalise very few values (a 1×1
    map), which amplifies float64 round-off in the loss to ~1e-11, too much for a 1e-6 step."""
    model = EfficientNet(tiny_config(stem_stride=stem_stride, se=se, family=family), seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, size, size, 3))
    y = np.array([0, 2, 1, 2])

    def loss():
        return cross_entropy_forward(model.forward(x), y, 0.1)[0]

    model.train()
    model.zero_grad()
    _, probs = cross_entropy_forward(model.forward(x), y, 0.1)
    dx = model.backward(cross_entropy_backward(probs, y, 0.1))
    grads = {k: v.copy() for k, v in model.named_grads().items()}
    for name, param in [*model.named_parameters().items(), ("input", x)]:
        flat = param.reshape(-1)
        analytic = (dx if name == "input" else grads[name]).reshape(-1)
        for i in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            view = flat[i:i + 1]
            numeric = numerical_gradient(loss, view, eps=1e-5)[0]
            assert analytic[i] == pytest.approx(numeric, rel=1e-3, abs=1e-6), f"{name}[{i}]"


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_backward_leaves_no_saved_tensor(family):
    """Every layer hands back what its forward kept (``Layer.release``) as the backward consumes it: after a
    training step no layer holds an array other than its parameters, gradients and buffers."""
    model = EfficientNet(tiny_config(depth=0.5, dropout=0.3, drop_connect=0.5, family=family),
                         dtype=np.float64).train()
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 3))
    logits = model.forward(x)
    assert model.dropout.mask is not None and any(getattr(b, "keep", None) is not None for b in model.blocks)
    model.backward(np.ones_like(logits))
    held = [f"{prefix}{name}" for prefix, layer in model.named_layers() for name, value in vars(layer).items()
            if isinstance(value, np.ndarray)]
    assert held == []


def test_eval_forward_is_deterministic_and_batch_independent():
    model = EfficientNet(tiny_config(dropout=0.3, drop_connect=0.2)).eval()
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype(np.float32)
    a, b = model.forward(x), model.forward(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(model.forward(x[:1]), a[:1], rtol=1e-5, atol=1e-6)


def test_names_are_stable_and_dotted():
    names = list(EfficientNet(config_for_variant("b0")).state_dict())
    assert names[:3] == ["stem.weight", "stem_bn.gamma", "stem_bn.beta"]
    assert "blocks.15.se.reduce.weight" in names and "blocks.0.depthwise_bn.running_var" in names
    assert "blocks.0.expand.weight" not in names and "blocks.1.expand.weight" in names
    assert names[-2:] == ["classifier.weight", "classifier.bias"] or "classifier.bias" in names


def test_save_load_round_trip(tmp_path):
    model = EfficientNet(tiny_config(), seed=3)
    model.named_buffers()["stem_bn.running_mean"][:] = 0.5
    path = tmp_path / "m.npz"
    save_checkpoint(path, model)
    loaded = load_model(path)
    assert loaded.config == model.config
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)
    with np.load(path, allow_pickle=False) as npz:     # plain arrays only
        assert "__meta__" in npz.files


def test_loading_another_architecture_names_the_first_mismatch(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, EfficientNet(tiny_config()))
    _, state, _, _ = load_checkpoint(path)
    other = EfficientNet(tiny_config(width=0.5))
    with pytest.raises(TinyEffNetError, match="'stem.weight' has shape"):
        other.load_state_dict(state)


def test_summary_cli_json():
    out = subprocess.run([sys.executable, "-m", "tinyeffnet.summary", "--phi", "1.5", "--json"],
                         capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    assert info["resolution"] == round(32 * 1.15**1.5) and info["width"] == pytest.approx(1.1**1.5)
    assert info["params"] == EfficientNet(config_for_phi(1.5)).num_parameters() and info["macs"] > 8_474_848


def test_summary_cli_rejects_bad_input():
    result = subprocess.run([sys.executable, "-m", "tinyeffnet.summary", "--phi", "-1"], capture_output=True, text=True)
    assert result.returncode == 2 and "argument --phi: must be" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(TinyEffNetError):
        from tinyeffnet.checkpoint import config_from_dict
        config_from_dict({"name": "x", "bogus": 1}, "test")
