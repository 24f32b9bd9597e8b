"""Export to EfficientNet-PyTorch's names and layouts (safetensors) and back, checked without torch against
tables and logits that PyTorch produced once in a side environment (``tests/data/reference_*.txt``)."""

import errno
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reference_weights import REFERENCE_RESOLUTION, REFERENCE_STEP, formula_input, formula_state, read_table
from weights_installed import WITH_WEIGHTS

import tinyeffnet.files as files
import tinyeffnet.pretrained as pretrained
import tinyeffnet.torch_names as torch_names
from tinyeffnet.checkpoint import save_checkpoint
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.export import pytorch_call, pytorch_snippet
from tinyeffnet.model import EfficientNet
from tinyeffnet.safetensors_file import file_signature, read_model, read_safetensors, save_safetensors, signature
from tinyeffnet.scaling import VARIANTS, ModelConfig, config_for_variant
from tinyeffnet.torch_names import Layout, load_torch_state, to_torch_state
from tinyeffnet.weights import open_weights

safetensors_numpy = pytest.importorskip("safetensors.numpy")

DATA = Path(__file__).parent / "data"
TINY = ModelConfig(name="tiny", width=0.25, depth=0.1, resolution=32, dropout=0.0, num_classes=10)
REFERENCE_VARIANTS = ["b0", "lite0", "lite1", "lite2"]   # those with tests/data/reference_{names,logits}_*.txt



def run(*args):
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=600)


def trained_like(config, seed=0):
    """A model whose every tensor is random, batch-norm buffers included (as after some training)."""
    model = EfficientNet(config, seed=seed)
    rng = np.random.default_rng(seed)
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            value[...] = rng.integers(1, 1000)
        elif name.endswith("running_var"):
            value[...] = rng.uniform(0.5, 2.0, value.shape)
        else:
            value[...] = rng.normal(0.0, 0.1, value.shape)
    return model


# --- the reference tables (PyTorch's names, dtypes, shapes; and logits) --------------------------------
def reference_table(variant):
    """[(name, dtype, shape)] of EfficientNet-PyTorch's state_dict for ``variant``."""
    return read_table(DATA / f"reference_names_{variant}.txt")


def reference_logits(variant):
    text = (DATA / f"reference_logits_{variant}.txt").read_text().splitlines()
    return np.array([[float(v) for v in line.split()] for line in text if not line.startswith("#")])


def formula_logits(variant):
    """tinyeffnet's logits[:, ::REFERENCE_STEP] with the formula weights loaded through the name and layout map."""
    table = reference_table(variant)
    model = EfficientNet(config_for_variant(variant, resolution=REFERENCE_RESOLUTION))
    load_torch_state(model, formula_state(table), "formula weights")
    x_nchw = formula_input(table)
    return model.eval().forward(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)))[:, ::REFERENCE_STEP]


@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_logits_match_pytorch(variant):
    """The same weights give the same logits here as in EfficientNet-PyTorch: every name goes to the right
    layer, every layout is right (a transposed depthwise kernel or swapped batch norms would not pass)."""
    expected = reference_logits(variant)
    np.testing.assert_allclose(formula_logits(variant), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_wrong_layout_would_be_caught(monkeypatch):
    transposed = Layout(torch_names.DEPTHWISE.to_torch, lambda w: torch_names.DEPTHWISE.to_ours(w).transpose(1, 0, 2))
    monkeypatch.setitem(torch_names.BLOCK_LAYERS, "depthwise", ("_depthwise_conv", transposed))
    expected = reference_logits("b0")
    assert not np.allclose(formula_logits("b0"), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_every_exported_name_dtype_and_shape_is_pytorchs(variant, tmp_path):
    path = tmp_path / f"{variant}.safetensors"
    save_safetensors(path, EfficientNet(config_for_variant(variant)))
    tensors, _ = read_safetensors(path)
    assert {k: (str(v.dtype), v.shape) for k, v in tensors.items()} == \
           {name: (dtype, shape) for name, dtype, shape in reference_table(variant)}


def test_import_then_export_gives_back_pytorchs_tensors(tmp_path):
    torch_state = formula_state(reference_table("b0"))
    model = EfficientNet(config_for_variant("b0"))
    load_torch_state(model, torch_state, "formula weights")
    exported = to_torch_state(model.state_dict())
    assert exported.keys() == torch_state.keys()
    for name, value in torch_state.items():
        assert exported[name].dtype == value.dtype and np.array_equal(exported[name], value), name


# --- round trip within tinyeffnet ----------------------------------------------------------------------
@pytest.mark.parametrize("config", [TINY, *map(config_for_variant, pretrained.AVAILABLE)],
                         ids=["b0-tiny", *pretrained.AVAILABLE])
def test_round_trip_is_exact(config, tmp_path):
    model = trained_like(config)
    path = tmp_path / "m.safetensors"
    save_safetensors(path, model)
    loaded_config, state, optimizer_state, _ = open_weights(path)
    assert loaded_config == config and optimizer_state == {}
    own = model.state_dict()
    assert state.keys() == own.keys()
    for name, value in own.items():
        assert state[name].dtype == value.dtype and np.array_equal(state[name], value), name


def test_a_file_saved_from_pytorch_is_recognised_by_its_shapes(tmp_path):
    """No tinyeffnet metadata (as ``safetensors.torch.save_file`` writes): the variant comes from the tensors."""
    model = trained_like(config_for_variant("lite0", num_classes=7))
    path = tmp_path / "from_torch.safetensors"
    path.write_bytes(safetensors_numpy.save(to_torch_state(model.state_dict())))
    config, state, _, training = open_weights(path)
    assert config == config_for_variant("lite0", num_classes=7) and training is None
    assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())


def test_every_variant_has_its_own_signature():
    """So a file without metadata is never ambiguous between two official variants."""
    assert len({signature(config_for_variant(name)) for name in VARIANTS}) == len(VARIANTS)


def test_pytorch_call_names_the_reference_constructor():
    assert pytorch_call(config_for_variant("b3", num_classes=10)) == \
        "efficientnet_pytorch.EfficientNet.from_name('efficientnet-b3', image_size=300, num_classes=10)"
    assert pytorch_call(TINY) == ("efficientnet_pytorch.EfficientNet.from_name('efficientnet-b0', "
                                  "width_coefficient=0.25, depth_coefficient=0.1, image_size=32, num_classes=10)")
    assert pytorch_call(config_for_variant("lite2")).startswith("efficientnet_lite_pytorch.EfficientNet.from_name("
                                                                 "'efficientnet-lite2'")
    assert pytorch_call(config_for_variant("b0", stem_stride=1)) is None


@pytest.mark.parametrize("variant, package", [("b0", "efficientnet_pytorch"), ("lite0", "efficientnet_lite_pytorch")])
def test_pytorch_snippet_is_python_that_builds_and_loads_the_model(variant, package):
    snippet = pytorch_snippet(config_for_variant(variant, num_classes=10), "out/m.safetensors")
    compile(snippet, "snippet", "exec")
    lines = snippet.splitlines()
    assert lines[:2] == ["import safetensors.torch", f"import {package}"]
    assert f"model = {package}.EfficientNet.from_name('efficientnet-{variant}', image_size=224, num_classes=10)" in lines
    assert lines[-2:] == ["model.load_state_dict(safetensors.torch.load_file('out/m.safetensors'), strict=True)",
                          "model.eval()"]
    assert pytorch_snippet(config_for_variant(variant, stem_stride=1), "m.safetensors") is None


def test_the_file_signature_does_not_need_a_depthwise_convolution():
    """Blocks are counted by their index, so a block type without one (Fused-MBConv) counts too."""
    tensors = to_torch_state(EfficientNet(TINY).state_dict())
    without = {name: value for name, value in tensors.items() if "_depthwise_conv" not in name}
    assert file_signature(without) == file_signature(tensors) == signature(TINY)


# --- the command ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    """A .npz as training writes it (weights plus the record predict and evaluate read), and its export."""
    folder = tmp_path_factory.mktemp("run")
    training = dict(epoch=1, args=dict(dataset="synthetic", data_dir=None), classes=[f"class{i}" for i in range(10)],
                    preprocess=dict(mean=[0.5] * 3, std=[0.25] * 3, resolution=TINY.resolution))
    save_checkpoint(folder / "best.npz", trained_like(TINY), training=training)
    result = run("tinyeffnet.export", "--checkpoint", folder, folder / "m.safetensors")
    assert result.returncode == 0, result.stderr
    assert "efficientnet_pytorch.EfficientNet.from_name('efficientnet-b0', width_coefficient=0.25" in result.stdout
    snippet = result.stdout.split("in PyTorch:\n", 1)[1]
    assert snippet.rstrip("\n") == pytorch_snippet(TINY, str(folder / "m.safetensors"))
    return folder


def test_export_carries_what_predict_and_evaluate_need(run_checkpoint):
    _, _, _, training = open_weights(run_checkpoint / "m.safetensors")
    assert set(training) == {"args", "classes", "preprocess"}        # not the resume state (epoch, …)


def test_evaluate_reads_the_export_like_the_checkpoint(run_checkpoint, tmp_path):
    results = []
    for name in ("best.npz", "m.safetensors"):
        result = run("tinyeffnet.evaluate", run_checkpoint / name, "--json", "--out", tmp_path / name)
        assert result.returncode == 0, result.stderr
        results.append({k: v for k, v in json.loads(result.stdout).items() if k != "confusion_png"})
    assert results[0] == results[1]


def test_predict_reads_the_export_like_the_checkpoint(run_checkpoint, tmp_path):
    image = tmp_path / "stripes.png"
    Image.fromarray((np.indices((40, 50)).sum(0) % 7 * 36).astype(np.uint8)).convert("RGB").save(image)
    outputs = []
    for name in ("best.npz", "m.safetensors"):
        result = run("tinyeffnet.predict", image, "--checkpoint", run_checkpoint / name, "--json")
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_export_pretrained(name, tmp_path):
    path = tmp_path / f"{name}.safetensors"
    result = run("tinyeffnet.export", "--pretrained", name, path)
    assert result.returncode == 0, result.stderr
    resolution = config_for_variant(name).resolution                 # 224, 240, 260: each variant's own
    assert f"efficientnet_lite_pytorch.EfficientNet.from_name('efficientnet-{name}', image_size={resolution}" \
        in result.stdout
    model, training = read_model(path)
    reference = pretrained.load_pretrained(name).state_dict()
    assert all(np.array_equal(model.state_dict()[k], v) for k, v in reference.items())
    assert training["classes"] == pretrained.imagenet_classes() and training["preprocess"] == pretrained.PREPROCESS


# --- bad input: one clear line, exit status 2, nothing written -----------------------------------------
@pytest.fixture(scope="module")
def exported_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("e") / "m.safetensors"
    save_safetensors(path, trained_like(TINY))
    return path.read_bytes()


@pytest.mark.parametrize("cut", [0, 7, 100, -1, -1000])
def test_truncated_file_is_a_clear_error(exported_bytes, tmp_path, cut):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(exported_bytes[:cut])
    with pytest.raises(TinyEffNetError, match="not a readable safetensors file.*truncated"):
        open_weights(path)


def test_garbage_through_the_command_line_exits_2(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    result = run("tinyeffnet.export", "--checkpoint", path, tmp_path / "out.safetensors")
    assert result.returncode == 2 and "not a readable safetensors file" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.safetensors").exists()


def test_another_variant_names_the_first_mismatching_tensor(exported_bytes, tmp_path):
    lite0 = tmp_path / "lite0.safetensors"
    save_safetensors(lite0, EfficientNet(config_for_variant("lite0")))
    result = run("tinyeffnet.export", "--checkpoint", lite0, "--variant", "b0", tmp_path / "out.safetensors")
    assert result.returncode == 2, result.stderr
    assert "tensor '_blocks.0._se_reduce.weight' of b0 is missing" in result.stderr
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(exported_bytes)
    with pytest.raises(TinyEffNetError, match=r"'_conv_stem.weight' has shape \(8, 3, 3, 3\) in it but "
                                              r"\(32, 3, 3, 3\) in b0"):
        read_model(tiny, variant="b0")


def test_unknown_architecture_without_metadata_asks_for_the_variant(tmp_path):
    path = tmp_path / "no_meta.safetensors"
    path.write_bytes(safetensors_numpy.save(to_torch_state(EfficientNet(TINY).state_dict())))
    with pytest.raises(TinyEffNetError, match="are no official variant's.*--variant NAME"):
        open_weights(path)


def test_metadata_that_contradicts_the_tensors_is_refused_before_building(tmp_path):
    """A file whose metadata asks for an enormous network is refused before any memory is allocated for it."""
    meta = dict(format="tinyeffnet-safetensors", version=1, config={**TINY.to_dict(), "width": 1e6})
    path = tmp_path / "huge.safetensors"
    path.write_bytes(safetensors_numpy.save(to_torch_state(EfficientNet(TINY).state_dict()),
                                            metadata={"tinyeffnet": json.dumps(meta)}))
    with pytest.raises(TinyEffNetError, match="inconsistent: its metadata describes tiny"):
        open_weights(path)


def test_newer_format_version_is_refused(tmp_path):
    meta = dict(format="tinyeffnet-safetensors", version=99, config=TINY.to_dict())
    path = tmp_path / "new.safetensors"
    path.write_bytes(safetensors_numpy.save(to_torch_state(EfficientNet(TINY).state_dict()),
                                            metadata={"tinyeffnet": json.dumps(meta)}))
    with pytest.raises(TinyEffNetError, match="newer than this tinyeffnet reads"):
        open_weights(path)


def test_out_must_be_a_safetensors_file(run_checkpoint, tmp_path):
    result = run("tinyeffnet.export", "--checkpoint", run_checkpoint, tmp_path / "out.npz")
    assert result.returncode == 2 and "must end in .safetensors" in result.stderr


def test_variant_is_refused_for_a_checkpoint_that_names_its_own(run_checkpoint, tmp_path):
    result = run("tinyeffnet.export", "--checkpoint", run_checkpoint, "--variant", "b0", tmp_path / "o.safetensors")
    assert result.returncode == 2 and "names its own architecture" in result.stderr


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(TinyEffNetError, match="No space left on device"):
        save_safetensors(tmp_path / "m.safetensors", EfficientNet(TINY))
    assert list(tmp_path.iterdir()) == []

