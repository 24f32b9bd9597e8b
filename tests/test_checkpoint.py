"""Checkpoints survive crashes and refuse bad files with the project's own clear error."""

import errno
import io
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyeffnet.checkpoint as ckpt
from tinyeffnet.checkpoint import config_from_dict, load_checkpoint, save_checkpoint
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.files import atomic_write
from tinyeffnet.model import EfficientNet
from tinyeffnet.scaling import ModelConfig
from tinyeffnet.weights import open_weights

CONFIG = ModelConfig(name="tiny", width=0.25, depth=0.1, resolution=16, dropout=0.0, num_classes=3)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("c") / "m.npz"
    save_checkpoint(path, EfficientNet(CONFIG))
    return path.read_bytes()


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.npz"
    save_checkpoint(path, EfficientNet(CONFIG, seed=1))
    before = path.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.np, "savez", no_space)
    with pytest.raises(TinyEffNetError, match="No space left on device.*previous file, if any, is intact"):
        save_checkpoint(path, EfficientNet(CONFIG, seed=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.npz"]      # no temporary file left behind


def test_sigkill_while_writing_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "latest.npz"
    save_checkpoint(path, EfficientNet(CONFIG, seed=1))
    before = path.read_bytes()
    child = textwrap.dedent(f"""
        import sys, time
        from tinyeffnet.files import atomic_write
        def slow(f):
            f.write(b"half a checkpoint")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        atomic_write({str(path)!r}, slow)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert path.read_bytes() == before
    load_checkpoint(path)


def test_newer_format_version_is_refused(tmp_path, checkpoint_bytes):
    with np.load(io.BytesIO(checkpoint_bytes), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["version"] = ckpt.VERSION + 1
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path = tmp_path / "new.npz"
    np.savez(path, **arrays)
    with pytest.raises(TinyEffNetError, match="newer than this tinyeffnet reads"):
        load_checkpoint(path)


def test_another_architecture_names_the_first_mismatching_tensor(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, EfficientNet(CONFIG))
    _, state, _, _ = load_checkpoint(path)
    with pytest.raises(TinyEffNetError, match="'stem.weight' has shape"):
        EfficientNet(ModelConfig(**{**CONFIG.to_dict(), "width": 0.5})).load_state_dict(state, path)


@settings(max_examples=60)
@given(data=st.data())
def test_mutated_checkpoints_load_or_raise_our_error(tmp_path_factory, checkpoint_bytes, data):
    raw = bytearray(checkpoint_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    path = tmp_path_factory.mktemp("fuzz") / "m.npz"
    path.write_bytes(bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw))
    try:
        config, state, _, _ = load_checkpoint(path)
        EfficientNet(config).load_state_dict(state, path)
    except TinyEffNetError:
        pass


@given(st.binary(max_size=300))
def test_random_bytes_raise_our_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "m.npz"
    path.write_bytes(blob)
    with pytest.raises(TinyEffNetError):
        load_checkpoint(path)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=10)


@given(st.dictionaries(st.sampled_from(list(CONFIG.to_dict())), json_values, max_size=6) | json_values)
def test_config_json_is_validated(value):
    try:
        config = config_from_dict(value, "fuzz")
    except TinyEffNetError:
        return
    assert isinstance(config, ModelConfig)


def test_a_safetensors_name_is_read_as_safetensors(tmp_path, checkpoint_bytes):
    """``open_weights`` goes by the suffix: an .npz archive renamed .safetensors is refused as safetensors."""
    path = tmp_path / "m.safetensors"
    path.write_bytes(checkpoint_bytes)
    with pytest.raises(TinyEffNetError, match="safetensors"):
        open_weights(path)


def test_atomic_write_gives_the_file_the_mode_open_would(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644


def test_a_config_saved_before_families_existed_loads_as_efficientnet():
    old = {k: v for k, v in CONFIG.to_dict().items() if k != "family"}
    assert config_from_dict(old, "old.npz") == CONFIG and CONFIG.family == "efficientnet"
    with pytest.raises(TinyEffNetError, match="malformed architecture config"):
        config_from_dict({**old, "family": "resnet"}, "other.npz")


def no_checkpoint(kind, checkpoint_bytes):
    """The bytes of a file named .npz that is not a tinyeffnet checkpoint."""
    if kind == "text":
        return b"epoch 1: loss 2.30\nepoch 2: loss 1.95\n"
    if kind == "random bytes":
        return np.random.default_rng(0).bytes(4096)
    if kind == "pickle":
        return pickle.dumps({"weights": [1.0, 2.0]})
    if kind == "zip of pickled arrays":
        buffer = io.BytesIO()
        np.savez(buffer, weights=np.array([{"w": 1.0}], dtype=object))
        return buffer.getvalue()
    return checkpoint_bytes[: len(checkpoint_bytes) // 2]          # a truncated zip


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("kind", ["text", "random bytes", "pickle", "zip of pickled arrays", "truncated zip"])
def test_a_file_that_is_no_checkpoint_gets_one_line_saying_what_is_expected(tmp_path, checkpoint_bytes, kind,
                                                                           command):
    """Never NumPy's own refusal, which advises loading the file as a pickle (``allow_pickle=True``)."""
    path = tmp_path / "m.npz"
    path.write_bytes(no_checkpoint(kind, checkpoint_bytes))
    argv = [path] if command == "evaluate" else [tmp_path / "cat.png", "--checkpoint", path]
    result = subprocess.run([sys.executable, "-m", f"tinyeffnet.{command}", *map(str, argv)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    message = result.stderr.replace(str(path), "PATH")
    assert message.startswith("error: PATH is not a readable tinyeffnet checkpoint") and message.count("\n") == 1
    assert "expected a tinyeffnet .npz checkpoint, a .safetensors export or a run folder" in message
    assert "pickle" not in message.lower(), message
