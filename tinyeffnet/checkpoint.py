"""Checkpoints: one ``.npz`` file holding the weights, the batch-norm buffers, the architecture and,
for training runs, everything needed to resume exactly (optimiser state, the weight average, random-generator
states and the position in the schedule).

Layout of the archive (read with ``allow_pickle=False``: nothing in it can run code):

    __meta__            uint8 bytes of a JSON object: format name and version, the ModelConfig, training state
    model/<name>        one array per parameter or buffer, by the model's dotted names: the weights trained
    optimizer/<name>    the optimiser's arrays (``Optimizer.state_dict``), when saved from training
    average/<name>      with ``--ema``, the weights' moving average (``WeightAverage.state_dict``: average.<name>
                        and its step): the weights the run evaluated, which ``evaluated_state`` puts in place
                        of ``model/``

Writes are atomic: the archive goes to a temporary file in the same folder, is flushed and fsynced,
then renamed over the old one, so a crash or a full disk never leaves a half-written checkpoint.

A ``.safetensors`` file (EfficientNet-PyTorch's names and layouts, ``tinyeffnet.export``) loads too:
``load_checkpoint`` tells the two apart by the file name's suffix.
"""

import json
import math
import os
import tempfile
import zipfile
from dataclasses import fields

import numpy as np

from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.layers import ACTIVATIONS
from tinyeffnet.model import EfficientNet
from tinyeffnet.scaling import INITS, ModelConfig

FORMAT = "tinyeffnet-checkpoint"
VERSION = 1
META = "__meta__"
AVERAGE = "average/"
SAFETENSORS_SUFFIX = ".safetensors"
FILE_MODE = 0o666                                   # before the umask, as open() would create the file


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it and rename it to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        os.fchmod(fd, FILE_MODE & ~current_umask())     # mkstemp makes it owner-only; give it a normal file's mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise TinyEffNetError(f"could not write {path}: {e.strerror or e}; the previous file, if any, is intact. "
                              "Free some disk space or choose another --out folder.") from e
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path, model, optimizer=None, training=None, average=None):
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        arrays.update({f"optimizer/{k}": v for k, v in optimizer.state_dict().items()})
    if average is not None:
        arrays.update({f"{AVERAGE}{k}": v for k, v in average.state_dict().items()})
    meta = dict(format=FORMAT, version=VERSION, config=model.config.to_dict(), training=training)
    arrays[META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def checkpoint_path(path):
    """A run folder means its best checkpoint."""
    return os.path.join(path, "best.npz") if os.path.isdir(path) else path


def check_header(meta, path, format_name, newest):
    """Refuse file metadata ``meta`` that is not of ``format_name`` or is newer than version ``newest``."""
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        raise TinyEffNetError(f"{path} is not a tinyeffnet file of this kind (no '{format_name}' header)")
    version = meta.get("version")
    if not isinstance(version, int) or version > newest:
        raise TinyEffNetError(f"{path} has {format_name} format version {version!r}, newer than this tinyeffnet "
                              f"reads (up to {newest}); upgrade tinyeffnet to load it")


def load_checkpoint(path):
    """Read a checkpoint: ``(config, model_state, optimizer_state, training)``; any problem is a TinyEffNetError.

    ``optimizer_state`` holds the optimiser's arrays and, from a run with ``--ema``, the average's under
    ``average/<name>`` (``average_state`` picks them out)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TinyEffNetError(f"checkpoint {path} does not exist (give a .npz or {SAFETENSORS_SUFFIX} file or a "
                              "run folder)")
    if path.endswith(SAFETENSORS_SUFFIX):
        from tinyeffnet.export import load_safetensors   # export builds on this module: imported when needed
        return load_safetensors(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop(META).tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, AttributeError) as e:
        raise TinyEffNetError(f"{path} is not a readable tinyeffnet checkpoint ({type(e).__name__}: {e}); "
                              "it may be truncated or from another program") from e
    check_header(meta, path, FORMAT, VERSION)
    config = config_from_dict(meta.get("config"), path)
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optimizer_state = {k[len("optimizer/"):]: v for k, v in arrays.items() if k.startswith("optimizer/")}
    optimizer_state.update({k: v for k, v in arrays.items() if k.startswith(AVERAGE)})
    return config, model_state, optimizer_state, meta.get("training")


def average_state(optimizer_state):
    """The weight average's state (``WeightAverage.state_dict``) in what ``load_checkpoint`` returns as
    ``optimizer_state``: empty for a run without ``--ema``."""
    return {k[len(AVERAGE):]: v for k, v in optimizer_state.items() if k.startswith(AVERAGE)}


def evaluated_state(model_state, optimizer_state):
    """The weights a checkpoint's run evaluated: ``model_state``, with the moving average's arrays in place of
    the trained ones when the run kept one (``--ema``: every epoch's evaluation used the average)."""
    average = average_state(optimizer_state)
    prefix = "average."                     # WeightAverage.state_dict's names: average.<name>, and its step
    return {**model_state, **{k[len(prefix):]: v for k, v in average.items() if k.startswith(prefix)}}


def config_from_dict(d, source):
    """A ``ModelConfig`` from JSON, every field checked for its type and range."""
    types = {f.name: f.type for f in fields(ModelConfig)}

    def bad(why):
        return TinyEffNetError(f"{source} has a malformed architecture config ({why}): {d!r}")

    if not isinstance(d, dict) or "name" not in d:
        raise bad("not an object with a name")
    for key, value in d.items():
        kind = types.get(key)
        if kind is None:
            raise bad(f"unknown field {key!r}")
        if kind in (int, float):
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not numeric or not math.isfinite(value) or value < 0 or (kind is int and value != int(value)):
                raise bad(f"{key} must be a non-negative {kind.__name__}")
        elif not isinstance(value, kind):
            raise bad(f"{key} must be a {kind.__name__}")
    try:
        config = ModelConfig(**d)
        if config.width <= 0 or config.depth <= 0 or config.resolution < 1 or config.num_classes < 1 \
                or config.stem_stride not in (1, 2) or config.activation not in ACTIVATIONS \
                or config.init not in INITS:
            raise ValueError("out of range")
    except (TypeError, ValueError) as e:
        raise bad(str(e)) from e
    return config


def load_into(model, state, source):
    """Load a state dict into ``model``; a mismatch names the first differing tensor."""
    try:
        model.load_state_dict(state)
    except ValueError as e:
        raise TinyEffNetError(f"{source} does not fit this model: {e}") from e


def load_model(path, dtype=np.float32):
    """Build the model a checkpoint describes and load the weights its run evaluated (``evaluated_state``)."""
    config, state, optimizer_state, _ = load_checkpoint(path)
    model = EfficientNet(config, dtype=dtype)
    load_into(model, evaluated_state(state, optimizer_state), path)
    return model
