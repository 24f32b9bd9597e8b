"""EfficientNetV2-S, -M, -L to and from torchvision's names and layouts (safetensors), checked without torch
against tables and logits that torchvision produced once in a side environment
(``tests/data/reference_torchvision.py``, ``reference_{names,logits}_v2-*.txt``)."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from reference_weights import V2_REFERENCE_GAIN, formula_input, formula_state, read_table

import tinyeffnet.torchvision_names as torchvision_names
from tinyeffnet.checkpoint import config_from_dict, save_checkpoint
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.export import pytorch_call, pytorch_snippet
from tinyeffnet.model import EfficientNet
from tinyeffnet.safetensors_file import file_signature, pytorch_names, read_safetensors, save_safetensors, signature
from tinyeffnet.scaling import ModelConfig, config_for_variant
from tinyeffnet.torch_names import DEPTHWISE, Layout, load_torch_state, to_torch_state
from tinyeffnet.weights import open_weights

safetensors_numpy = pytest.importorskip("safetensors.numpy")

DATA = Path(__file__).parent / "data"
# How reference_logits_v2-s.txt was made (see its header): 10 classes, two 64×64 images, every logit.
REFERENCE_CLASSES, REFERENCE_RESOLUTION = 10, 64
TINY_S = ModelConfig(name="tiny-v2-s", width=0.25, depth=0.1, resolution=32, dropout=0.0, num_classes=10,
                     family="efficientnetv2-s", padding="symmetric")


def run(*args):
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=600)


def reference_table(variant):
    return read_table(DATA / f"reference_names_{variant}.txt")


def reference_logits(variant):
    text = (DATA / f"reference_logits_{variant}.txt").read_text().splitlines()
    return np.array([[float(v) for v in line.split()] for line in text if not line.startswith("#")])


def formula_logits(config):
    """tinyeffnet's logits with the formula weights of reference_names_v2-s.txt loaded through torchvision's names."""
    table = reference_table("v2-s")
    model = EfficientNet(config)
    load_torch_state(model, formula_state(table, V2_REFERENCE_GAIN), "formula weights", pytorch_names(config))
    x_nchw = formula_input(table, REFERENCE_RESOLUTION)
    return model.eval().forward(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)))


@pytest.fixture(scope="module")
def v2_s():
    return config_for_variant("v2-s", num_classes=REFERENCE_CLASSES, resolution=REFERENCE_RESOLUTION)


def test_logits_match_torchvision(v2_s):
    """The same weights give torchvision's logits (within 1e-4 relative to the largest): every name goes to the
    right layer, every layout is right, and the padding is torchvision's."""
    expected = reference_logits("v2-s")
    np.testing.assert_allclose(formula_logits(v2_s), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("change", ["padding", "layout"])
def test_a_wrong_padding_or_layout_would_be_caught(v2_s, change, monkeypatch):
    if change == "padding":
        v2_s = replace(v2_s, padding="same")
    else:
        transposed = Layout(DEPTHWISE.to_torch, lambda w: DEPTHWISE.to_ours(w).transpose(1, 0, 2))
        layers = dict(torchvision_names.BLOCK_LAYERS["mbconv", True], depthwise=("block.1.0", transposed))
        monkeypatch.setitem(torchvision_names.BLOCK_LAYERS, ("mbconv", True), layers)
    expected = reference_logits("v2-s")
    assert not np.allclose(formula_logits(v2_s), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_every_exported_name_dtype_and_shape_is_torchvisions(v2_s, tmp_path):
    path = tmp_path / "v2-s.safetensors"
    save_safetensors(path, EfficientNet(v2_s))
    tensors, _ = read_safetensors(path)
    assert {k: (str(v.dtype), v.shape) for k, v in tensors.items()} == \
           {name: (dtype, shape) for name, dtype, shape in reference_table("v2-s")}


@pytest.mark.parametrize("variant", ["v2-m", "v2-l"])
def test_every_name_is_torchvisions(variant):
    """The names (not the shapes: a narrow network of the same depth keeps memory small) of V2-M and V2-L."""
    model = EfficientNet(replace(config_for_variant(variant), width=0.1))
    names = pytorch_names(model.config)
    assert sorted(names(name)[0] for name in model.state_dict()) == sorted(name for name, _, _ in
                                                                           reference_table(variant))


def test_import_then_export_gives_back_torchvisions_tensors(v2_s):
    torch_state = formula_state(reference_table("v2-s"))
    model = EfficientNet(v2_s)
    load_torch_state(model, torch_state, "formula weights", pytorch_names(v2_s))
    exported = to_torch_state(model.state_dict(), pytorch_names(v2_s))
    assert exported.keys() == torch_state.keys()
    for name, value in torch_state.items():
        assert exported[name].dtype == value.dtype and np.array_equal(exported[name], value), name


def test_round_trip_is_exact(tmp_path):
    model = EfficientNet(TINY_S, seed=2)
    for name, value in model.state_dict().items():
        value[...] = np.random.default_rng(len(name)).normal(size=value.shape) if value.ndim else 7
    path = tmp_path / "m.safetensors"
    save_safetensors(path, model)
    config, state, optimizer_state, _ = open_weights(path)
    assert config == TINY_S and optimizer_state == {}
    for name, value in model.state_dict().items():
        assert state[name].dtype == value.dtype and np.array_equal(state[name], value), name


def test_a_file_saved_from_torchvision_is_recognised_by_its_tensors(tmp_path):
    """No tinyeffnet metadata (as ``safetensors.torch.save_file(model.state_dict())`` writes): V2-S, and its
    classes, come from torchvision's names and shapes."""
    torch_state = formula_state(reference_table("v2-s"))
    path = tmp_path / "from_torchvision.safetensors"
    path.write_bytes(safetensors_numpy.save(torch_state))
    config, state, _, training = open_weights(path)
    assert config == config_for_variant("v2-s", num_classes=REFERENCE_CLASSES) and training is None
    assert file_signature(torch_state) == signature(config)
    assert np.array_equal(state["blocks.0.project_bn.running_var"], torch_state["features.1.0.block.0.1.running_var"])


def test_names_follow_the_stages():
    names = torchvision_names.counterparts(config_for_variant("v2-s"))
    assert names("blocks.2.expand.weight")[0] == "features.2.0.block.0.0.weight"      # stage 1 has 2 blocks
    assert names("blocks.10.depthwise_bn.gamma")[0] == "features.4.0.block.1.1.weight"
    assert names("blocks.10.se.reduce.bias")[0] == "features.4.0.block.2.fc1.bias"
    assert names("head_bn.num_batches_tracked")[0] == "features.7.1.num_batches_tracked"
    assert names("classifier.weight")[0] == "classifier.1.weight"


def test_variants_use_their_padding_and_old_configs_load_as_same():
    assert {config_for_variant(v).padding for v in ("v2-s", "v2-m", "v2-l", "v2-b0")} == {"symmetric"}
    assert {config_for_variant(v).padding for v in ("b0", "b7", "lite0")} == {"same"}
    model = EfficientNet(config_for_variant("v2-b0", resolution=32))
    assert model.stem.padding == "symmetric" and model.blocks[-1].depthwise.padding == "symmetric"


def test_a_checkpoint_without_padding_loads_as_same_and_a_bad_one_is_refused():
    old = {k: v for k, v in TINY_S.to_dict().items() if k != "padding"}
    assert config_from_dict(old, "old.npz").padding == "same"
    with pytest.raises(TinyEffNetError, match="malformed architecture config"):
        config_from_dict({**old, "padding": "valid"}, "bad.npz")


# --- the command ---------------------------------------------------------------------------------------
def test_torchvision_call_and_snippet():
    assert pytorch_call(config_for_variant("v2-m", num_classes=10)) == "torchvision.models.efficientnet_v2_m(num_classes=10)"
    snippet = pytorch_snippet(config_for_variant("v2-s", num_classes=10), "out/m.safetensors")
    compile(snippet, "snippet", "exec")
    assert snippet.splitlines() == [
        "import safetensors.torch", "import torchvision", "",
        "model = torchvision.models.efficientnet_v2_s(num_classes=10)",
        "model.load_state_dict(safetensors.torch.load_file('out/m.safetensors'), strict=True)", "model.eval()"]
    for other in (TINY_S, config_for_variant("v2-s", stem_stride=1), replace(config_for_variant("v2-l"), padding="same")):
        assert pytorch_call(other) is None


def test_export_prints_the_torchvision_snippet(tmp_path):
    model = EfficientNet(TINY_S)
    save_checkpoint(tmp_path / "m.npz", model)
    result = run("tinyeffnet.export", "--checkpoint", tmp_path / "m.npz", tmp_path / "m.safetensors")
    assert result.returncode == 0, result.stderr
    assert "under torchvision's names" in result.stdout and "torchvision builds no network like this one" in result.stdout
    assert "width 0.25, depth 0.1" in result.stdout


def test_export_refuses_v2_without_a_torchvision_counterpart_in_one_line(tmp_path):
    config = ModelConfig(name="tiny-v2", width=0.25, depth=0.1, resolution=32, dropout=0.0, num_classes=10,
                         family="efficientnetv2")
    save_checkpoint(tmp_path / "m.npz", EfficientNet(config))
    result = run("tinyeffnet.export", "--checkpoint", tmp_path / "m.npz", tmp_path / "m.safetensors")
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "torchvision builds EfficientNetV2-S, -M and -L only" in result.stderr
    assert "not V2-B0–B3 or V2-XL" in result.stderr and not (tmp_path / "m.safetensors").exists()

