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

Writes are atomic (``files.atomic_write``), so a crash or a full disk never leaves a half-written checkpoint.

This module reads ``.npz`` checkpoints only; ``tinyeffnet.weights.open_weights`` opens any weights file
(this, a ``.safetensors`` export or a legacy PyTorch ``.pth``) by its name.
"""

import json
import math
import os
import zipfile
from dataclasses import fields

import numpy as np

from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.files import atomic_write, check_header
from tinyeffnet.layers import ACTIVATIONS
from tinyeffnet.kernels.padding import PADDINGS
from tinyeffnet.model import EfficientNet
from tinyeffnet.scaling import FAMILIES, INITS, ModelConfig

FORMAT = "tinyeffnet-checkpoint"
VERSION = 1
META = "__meta__"
AVERAGE = "average/"
SAFETENSORS_SUFFIX = ".safetensors"
ZIP_MAGIC = b"PK\x03\x04"                           # the first bytes of a zip archive, as np.load checks
EXPECTED = f"expected a tinyeffnet .npz checkpoint, a {SAFETENSORS_SUFFIX} export or a run folder"


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


def require_file(path):
    """Refuse a ``path`` that is not a file, saying what to give instead."""
    if not os.path.isfile(path):
        raise TinyEffNetError(f"checkpoint {path} does not exist (give a .npz or {SAFETENSORS_SUFFIX} file or a "
                              "run folder)")


def load_checkpoint(path):
    """Read a ``.npz`` checkpoint: ``(config, model_state, optimizer_state, training)``; any problem is a
    TinyEffNetError.

    The file must start as a zip archive before NumPy sees it: ``np.load`` reads anything else as a
    pickle (or a lone ``.npy`` array), and its refusal would advise loading the pickle.

    ``optimizer_state`` holds the optimiser's arrays and, from a run with ``--ema``, the average's under
    ``average/<name>`` (``average_state`` picks them out)."""
    path = os.fspath(path)
    require_file(path)
    try:
        with open(path, "rb") as f:
            is_zip = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    except OSError as e:
        raise TinyEffNetError(f"cannot read {path}: {e.strerror or e}") from e
    if not is_zip:
        raise TinyEffNetError(f"{path} is not a readable tinyeffnet checkpoint: it is not a zip archive (.npz); "
                              f"{EXPECTED}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop(META).tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise TinyEffNetError(f"{path} is not a readable tinyeffnet checkpoint: a zip archive, but not of "
                              f"tinyeffnet's plain arrays and header (truncated, damaged or from another program); "
                              f"{EXPECTED}") from e
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
                or config.family not in FAMILIES or config.init not in INITS or config.padding not in PADDINGS:
            raise ValueError("out of range")
    except (TypeError, ValueError) as e:
        raise bad(str(e)) from e
    return config


def load_model(path, dtype=np.float32):
    """Build the model a ``.npz`` checkpoint describes and load the weights its run evaluated (``evaluated_state``)."""
    config, state, optimizer_state, _ = load_checkpoint(path)
    model = EfficientNet(config, dtype=dtype)
    model.load_state_dict(evaluated_state(state, optimizer_state), path)
    return model
