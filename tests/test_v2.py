"""EfficientNetV2 as table rows: exact parameter and multiply-add counts against the references
(torchvision's num_params, timm's param_count, automl's count_params), V2's rounding and block layout,
compound scaling of V2-Base, and the commands (summary, checkpoints, training, the refused export)."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from tinyeffnet.checkpoint import load_model, save_checkpoint
from tinyeffnet.cli import min_resolution
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.fused_mbconv import FusedMBConv
from tinyeffnet.mbconv import MBConv
from tinyeffnet.model import EfficientNet
from tinyeffnet.scaling import (BN_MOMENTUM, V2_BN_MOMENTUM, V2_ROUND_LIMIT, ModelConfig, config_for_phi,
                                config_for_variant, round_filters)
from tinyeffnet.summary import summarize

# Trainable parameters (conv, BN γ/β, SE biases, classifier) for 1000 and 10 classes: torchvision's
# num_params for S/M/L, timm's param_count and automl's count_params less the BN running statistics for all.
REFERENCE_PARAMS = {
    "v2-b0": (7_139_704, 5_871_514), "v2-b1": (8_141_052, 6_872_862), "v2-b2": (10_096_086, 8_701_176),
    "v2-b3": (14_358_406, 12_836_776), "v2-s": (21_458_488, 20_190_298), "v2-m": (54_139_356, 52_871_166),
    "v2-l": (118_515_272, 117_247_082), "v2-xl": (208_119_808, 206_851_618),
}
BLOCK_COUNTS = {"v2-b0": 21, "v2-s": 40, "v2-m": 57, "v2-l": 79, "v2-xl": 100}
TINY_V2 = ModelConfig(name="tiny-v2", width=0.25, depth=0.1, resolution=32, dropout=0.0, num_classes=10,
                      family="efficientnetv2")


def run(*args):
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_counts_match_the_references(name):
    """To the unit. float16 halves the memory of the largest (XL: 208 M parameters); the count is the same."""
    for classes, expected in zip((1000, 10), REFERENCE_PARAMS[name]):
        model = EfficientNet(config_for_variant(name, num_classes=classes), dtype=np.float16)
        assert model.num_parameters() == expected


def test_multiply_adds_at_the_evaluation_size():
    """Convolutions, SE and classifier: B0 0.718 G at 224 and S 8.366 G at 384 (automl's README: 0.72 B and
    8.4 B; timm's GMACs, 0.73 and 8.44, also count batch norm and elementwise work)."""
    assert sum(r[4] for r in summarize(EfficientNet(config_for_variant("v2-b0")))) == 718_086_176
    assert sum(r[4] for r in summarize(EfficientNet(config_for_variant("v2-s")))) == 8_365_617_152


def test_v2_rounds_without_the_90_percent_rule():
    assert round_filters(16, 1.2) == 24                                  # V1: 16 < 0.9·19.2, one multiple up
    assert round_filters(16, 1.2, round_limit=V2_ROUND_LIMIT) == 16      # V2: the nearest multiple
    b3 = config_for_variant("v2-b3")
    assert (b3.stem_channels, b3.head_channels) == (40, 1536)
    assert [s.out_channels for s in b3.stages()] == [16, 40, 56, 112, 136, 232]
    assert [s.repeats for s in b3.stages()] == [2, 3, 3, 5, 7, 12]


@pytest.mark.parametrize("name", sorted(BLOCK_COUNTS))
def test_fused_early_stages_then_mbconv_with_se(name):
    stages = config_for_variant(name).stages()
    assert sum(s.repeats for s in stages) == BLOCK_COUNTS[name]
    assert [s.block for s in stages[:3]] == ["fused_mbconv"] * 3 and {s.block for s in stages[3:]} == {"mbconv"}
    assert all(s.se_ratio == 0 for s in stages[:3]) and all(s.se_ratio == 0.25 for s in stages[3:])
    assert {s.kernel for s in stages} == {3} and min_resolution(config_for_variant(name)) == 32


def test_blocks_skips_and_batch_norm_of_a_built_network():
    """V2-B0's first block (32 → 16) has no skip and no expansion; V2-S's first two (24 → 24) both skip."""
    b0 = EfficientNet(replace(config_for_variant("v2-b0", num_classes=10), resolution=32))
    assert [type(b) for b in b0.blocks] == [FusedMBConv] * 5 + [MBConv] * 16
    assert not b0.blocks[0].has_skip and not hasattr(b0.blocks[0], "expand") and b0.blocks[2].has_skip
    assert b0.blocks[1].expand.params["weight"].shape == (3, 3, 16, 64)
    assert b0.stem_bn.momentum == V2_BN_MOMENTUM and config_for_variant("b0").bn_momentum == BN_MOMENTUM
    s = EfficientNet(config_for_variant("v2-s", num_classes=10), dtype=np.float16)
    assert s.blocks[0].has_skip and s.blocks[1].has_skip and not s.blocks[2].has_skip


def test_compound_scaling_of_v2_base():
    config = config_for_phi(0, family="efficientnetv2")
    assert config.name == "efficientnetv2-phi0" and config.bn_momentum == V2_BN_MOMENTUM
    assert config.stages() == config_for_variant("v2-b0", num_classes=10, resolution=32).stages()
    grown = config_for_phi(1.5, family="efficientnetv2")
    assert grown.width == pytest.approx(1.1**1.5) and grown.resolution == round(32 * 1.15**1.5)
    assert grown.stages()[0].out_channels == 16      # 16·1.154 = 18.5 → 16: V2's rounding (V1's would give 24)
    with pytest.raises(ValueError, match="unknown family"):
        config_for_phi(1, family="efficientnetv3")


def test_family_chooses_the_base_that_phi_scales():
    info = json.loads(run("tinyeffnet.summary", "--phi", "0", "--family", "efficientnetv2", "--json").stdout)
    assert info["family"] == "efficientnetv2" and info["params"] == 5_871_514      # V2-B0, 10 classes
    info = json.loads(run("tinyeffnet.summary", "--phi", "1", "--json").stdout)
    assert info["family"] == "efficientnet" and info["name"] == "phi1"


def test_family_with_a_variant_is_one_clear_line():
    result = run("tinyeffnet.summary", "--variant", "v2-s", "--family", "efficientnetv2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--family is for --phi" in result.stderr


def test_the_cifar_stem_keeps_a_two_by_two_head_at_32():
    config = replace(config_for_variant("v2-b0", num_classes=10, resolution=32), stem_stride=1)
    assert min_resolution(config) == 16
    rows = {r[0]: r for r in summarize(EfficientNet(config))}
    assert rows["stem"][2] == (32, 32, 32) and rows["head"][2] == (2, 2, 1280)


def test_summary_cli_shows_a_v2_variant():
    result = run("tinyeffnet.summary", "--variant", "v2-b0", "--resolution", "32", "--num-classes", "10")
    assert result.returncode == 0, result.stderr
    assert "blocks.1.expand" in result.stdout and "Conv2d" in result.stdout
    assert "v2-b0 (efficientnetv2)" in result.stdout and "total: 5,871,514 parameters" in result.stdout
    info = json.loads(run("tinyeffnet.summary", "--variant", "v2-s", "--resolution", "32", "--json").stdout)
    assert info["params"] == 21_458_488 and info["family"] == "efficientnetv2-s"


def test_checkpoint_round_trip(tmp_path):
    model = EfficientNet(TINY_V2, seed=3)
    model.named_buffers()["blocks.0.project_bn.running_mean"][:] = 0.5
    save_checkpoint(tmp_path / "m.npz", model)
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.config == model.config and type(loaded.blocks[0]) is FusedMBConv
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)


def test_export_refuses_v2_in_one_line(tmp_path):
    save_checkpoint(tmp_path / "m.npz", EfficientNet(TINY_V2))
    result = run("tinyeffnet.export", "--checkpoint", tmp_path / "m.npz", tmp_path / "m.safetensors")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "no PyTorch export" in result.stderr
    assert "Fused-MBConv" in result.stderr and not (tmp_path / "m.safetensors").exists()


def test_reading_pytorch_tensors_as_v2_b0_is_refused():
    from tinyeffnet.safetensors_file import pytorch_names
    from tinyeffnet.torch_names import load_torch_state
    with pytest.raises(TinyEffNetError, match="no PyTorch export or import: torchvision builds EfficientNetV2-S"):
        pytorch_names(TINY_V2)
    with pytest.raises(TinyEffNetError, match="no counterpart in EfficientNet-PyTorch"):
        load_torch_state(EfficientNet(TINY_V2), {}, "f.safetensors")


def test_train_a_few_steps_of_v2_b0_on_the_cifar_size(tmp_path):
    result = run("tinyeffnet.train", "--variant", "v2-b0", "--resolution", 32, "--stem-stride", 1, "--width",
                 0.25, "--depth", 0.1, "--dataset", "synthetic", "--subset", 16, "--test-subset", 8,
                 "--batch-size", 8, "--epochs", 1, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    model = load_model(tmp_path / "run" / "best.npz")
    assert model.config.family == "efficientnetv2" and model.config.stem_stride == 1
