"""The datasets: where CIFAR lives on disk, how its files are parsed, and what happens to the images on
their way into training (augment, normalise, resize, batch). Also a synthetic dataset for tests and lessons.

A CIFAR image is stored as 3072 bytes: a red, a green and a blue plane of 32×32 bytes, each row-major.
Everything here hands images around as NHWC: ``(N, H, W, 3) uint8``, labels as ``(N,) int64``.

Two layouts of the same data are understood, searched in this order:

* binary (``cifar-10-batches-bin/``, ``cifar-100-binary/``): fixed-size records of label byte(s) then
  the 3072 pixel bytes, read straight into NumPy;
* python (``cifar-10-batches-py/``, ``cifar-100-python/``): pickled dicts, read with an unpickler that
  can only rebuild NumPy arrays (a pickle can otherwise name any function and have it called).

If neither is found, the official binary archive is downloaded (see ``tinyeffnet/download.py``).
An extracted folder is checked by its structure (file sizes, record counts, label range), not by
checksums, so a re-encoded copy such as the offline one in ``shared/data`` loads too.
"""

import io
import math
import os
import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from tinyeffnet.download import download_and_extract
from tinyeffnet.errors import TinyEffNetError

DATA_ENV = "TINYEFFNET_DATA"
IMAGE_SIZE = 32
CHANNELS = 3
PIXEL_BYTES = CHANNELS * IMAGE_SIZE * IMAGE_SIZE  # 3072: R plane, G plane, B plane
CROP_PAD = 4


@dataclass
class Dataset:
    """A train/test split. Images ``(N, H, W, 3) uint8``, labels ``(N,) int64`` in ``0..len(classes)-1``.

    ``mean`` and ``std`` are the per-channel ``(3,) float32`` statistics (0..1 scale) that ``normalize``
    applies on the way into the model: set by ``prepare_dataset``, None in a dataset as loaded."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list
    source: str
    mean: Optional[np.ndarray] = None
    std: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Layout:
    """Where one CIFAR variant keeps its files in one layout, and how many images each file holds."""

    kind: str  # "binary" or "python"
    folder: str
    train_files: tuple
    test_file: str
    names_file: str
    train_records: int  # images in each train file
    test_records: int

    @property
    def files(self):
        return (*self.train_files, self.test_file, self.names_file)


CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
LAYOUTS = {  # per dataset, in the order they are searched
    "cifar10": (
        Layout("binary", "cifar-10-batches-bin", tuple(f"{b}.bin" for b in CIFAR10_BATCHES), "test_batch.bin",
               "batches.meta.txt", 10000, 10000),
        Layout("python", "cifar-10-batches-py", CIFAR10_BATCHES, "test_batch", "batches.meta", 10000, 10000),
    ),
    "cifar100": (
        Layout("binary", "cifar-100-binary", ("train.bin",), "test.bin", "fine_label_names.txt", 50000, 10000),
        Layout("python", "cifar-100-python", ("train",), "test", "meta", 50000, 10000),
    ),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
LABEL_BYTES = {"cifar10": 1, "cifar100": 2}  # binary records: CIFAR-100 has a coarse, then the fine label
PICKLE_KEYS = {"cifar10": (b"labels", b"label_names"), "cifar100": (b"fine_labels", b"fine_label_names")}
ARCHIVES = {  # the official binary archives and their published MD5s
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),
}
DATASETS = (*LAYOUTS, "synthetic")


# ---------------------------------------------------------------------------------------------------
# Finding the data


def resolve_data_dir(data_dir=None):
    """The data folder: ``data_dir`` if given, else ``$TINYEFFNET_DATA``, else ``$XDG_CACHE_HOME/tinyeffnet``
    (``~/.cache/tinyeffnet`` when XDG_CACHE_HOME is unset)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "tinyeffnet"


def _candidates(name, data_dir):
    """(folder, layout) pairs to try, in order: each layout's folder inside ``data_dir``, then ``data_dir``
    itself (for a ``data_dir`` that points straight at the batches folder)."""
    for layout in LAYOUTS[name]:
        yield data_dir / layout.folder, layout
        yield data_dir, layout


def find_cifar(name, data_dir):
    """The first (folder, layout) whose folder holds at least one of the layout's files, or None."""
    for folder, layout in _candidates(name, data_dir):
        if any((folder / f).is_file() for f in layout.files):
            return folder, layout
    return None


def load_cifar(name, data_dir=None, download=True):
    """Load CIFAR-10 or CIFAR-100 (fine labels) from the data folder, downloading it there if it is missing
    and ``download`` is true."""
    if name not in LAYOUTS:
        raise TinyEffNetError(f"unknown CIFAR dataset {name!r}; choose one of: {', '.join(LAYOUTS)}")
    data_dir = resolve_data_dir(data_dir)
    found = find_cifar(name, data_dir)
    if found is None:
        looked = dict.fromkeys(str(folder) for folder, _ in _candidates(name, data_dir))
        binary = LAYOUTS[name][0]
        where = f"no {name} data found; looked in: " + ", ".join(looked)
        supply = (f"To supply the data, pass --data-dir (or set {DATA_ENV}) to a folder containing "
                  f"{binary.folder}/ ({', '.join(binary.files)}).")
        if not download:
            raise TinyEffNetError(f"{where}.\n{supply}")
        url, md5 = ARCHIVES[name]
        try:
            folder = download_and_extract(url, md5, data_dir, binary.folder)
        except TinyEffNetError as err:
            raise TinyEffNetError(f"{where}.\n{err}.\n{supply}") from None
        found = folder, binary
    return read_cifar(name, *found)


def read_cifar(name, folder, layout):
    """Parse and check every file of ``layout`` in ``folder`` into a Dataset."""
    missing = [f for f in layout.files if not (folder / f).is_file()]
    if missing:
        raise TinyEffNetError(f"{folder} ({layout.kind} layout) is missing {', '.join(missing)}. "
                              f"Delete the folder and download again, or point --data-dir elsewhere.")
    num_classes = NUM_CLASSES[name]
    if layout.kind == "binary":
        read = partial(read_binary_file, label_bytes=LABEL_BYTES[name], num_classes=num_classes)
        classes = read_names_txt(folder / layout.names_file, num_classes)
    else:
        labels_key, names_key = PICKLE_KEYS[name]
        read = partial(read_python_file, labels_key=labels_key, num_classes=num_classes)
        classes = read_python_names(folder / layout.names_file, names_key, num_classes)
    train = [read(folder / f, layout.train_records) for f in layout.train_files]
    test_images, test_labels = read(folder / layout.test_file, layout.test_records)
    return Dataset(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images, test_labels=test_labels, classes=classes,
        source=f"{folder} ({layout.kind} layout)",
    )


# ---------------------------------------------------------------------------------------------------
# Parsing and checking files


def _corrupt(path, problem):
    return TinyEffNetError(f"{path} {problem}. Delete the folder {Path(path).parent} and download again, "
                           f"or point --data-dir (or {DATA_ENV}) at a good copy.")


def planes_to_nhwc(rows):
    """``(N, 3072) uint8`` rows of R, G, B planes (each 32×32 row-major) → ``(N, 32, 32, 3)`` images."""
    planes = rows.reshape(len(rows), CHANNELS, IMAGE_SIZE, IMAGE_SIZE)  # N, C, H, W
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1))


def _check_labels(path, labels, num_classes):
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise _corrupt(path, f"has label {labels[i]} at record {i}; labels must be 0..{num_classes - 1}")


def read_binary_file(path, num_records, label_bytes=1, num_classes=10):
    """Read ``num_records`` records of ``label_bytes + 3072`` bytes: label byte(s), then the R, G, B planes.

    The label used is the last label byte (CIFAR-100's fine label). Returns ``(images, labels)``."""
    record = label_bytes + PIXEL_BYTES
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise _corrupt(path, f"cannot be read ({err})") from None
    if raw.size % record:
        raise _corrupt(path, f"is {raw.size} bytes, not a whole number of {record}-byte records (truncated?)")
    if raw.size // record != num_records:
        raise _corrupt(path, f"holds {raw.size // record} records; expected {num_records}")
    records = raw.reshape(num_records, record)
    labels = records[:, label_bytes - 1].astype(np.int64)
    _check_labels(path, labels, num_classes)
    return planes_to_nhwc(records[:, label_bytes:]), labels


def read_names_txt(path, num_classes):
    """Class names, one per line (blank lines ignored), as in ``batches.meta.txt``."""
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise _corrupt(path, f"cannot be read as text ({err})") from None
    if len(names) != num_classes:
        raise _corrupt(path, f"lists {len(names)} class names; expected {num_classes}")
    return names


# The python layout is pickled, and a pickle is a small program: it names globals ("module.name") and
# calls them, so an ordinary unpickler runs whatever the file asks for. CIFAR's pickles name only the
# three globals that rebuild a NumPy array: numpy.ndarray, numpy.dtype and _reconstruct. Even those are
# not handed over as they are, because NumPy's own __setstate__ trusts its input (a malformed dtype
# state crashes the interpreter). The unpickler gets stand-ins instead, which record what the pickle
# asks for, check it, and only then build the array.


def _text(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


class _PickledDtype:
    """Stands in for ``numpy.dtype(spec, align, copy)``; BUILD then gives ``(version, byte order, …)``."""

    dtype = None

    def __init__(self, spec, align=False, copy=True):
        self.spec = spec

    def __setstate__(self, state):
        dtype = np.dtype(_text(state[1]) + _text(self.spec))  # e.g. "|" + "u1"
        if dtype.kind not in "biuf":
            raise ValueError(f"dtype {dtype} is not a plain number type")
        self.dtype = dtype


class _PickledArray:
    """Stands in for ``numpy.ndarray``; BUILD then gives ``(version, shape, dtype, is_fortran, raw bytes)``."""

    array = None

    def __setstate__(self, state):
        _, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise ValueError(f"array shape {shape!r} is not a tuple of sizes")
        if not (isinstance(dtype, _PickledDtype) and dtype.dtype and isinstance(raw, bytes)):
            raise ValueError("array has no number dtype or no raw bytes")
        if len(raw) != math.prod(shape) * dtype.dtype.itemsize:
            raise ValueError(f"array of shape {shape} has {len(raw)} bytes of data")
        self.array = np.frombuffer(raw, dtype.dtype).reshape(shape, order="F" if fortran is True else "C")


def _reconstruct(subtype, shape, typecode):
    """Stands in for NumPy's ``_reconstruct(ndarray, (0,), b"b")``: the empty array that BUILD fills."""
    if subtype is not _PickledArray:
        raise ValueError("_reconstruct only makes arrays")
    return _PickledArray()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for the CIFAR python files that cannot run code: it resolves only the globals that
    rebuild NumPy arrays (to the checking stand-ins above) and refuses every other one."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # name in pickles from NumPy 1
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # name in pickles from NumPy 2
        ("numpy", "ndarray"): _PickledArray,
        ("numpy", "dtype"): _PickledDtype,
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise TinyEffNetError(f"references the global {module}.{name}, which is refused: CIFAR files "
                                  "only need NumPy arrays, and loading it could run code")
        return self.ALLOWED[module, name]


def load_pickle(path):
    """Unpickle ``path`` with RestrictedUnpickler; byte strings stay bytes (keys like ``b"data"``).

    Arrays that are values of a top-level dict (as in the CIFAR files) come back as ``numpy.ndarray``."""
    try:  # from memory: a damaged length field then cannot make the unpickler allocate gigabytes
        loaded = RestrictedUnpickler(io.BytesIO(Path(path).read_bytes()), encoding="bytes").load()
    except TinyEffNetError as err:
        raise TinyEffNetError(f"{path} {err}. Delete it and use the binary layout "
                              f"(cifar-10-batches-bin).") from None
    except Exception as err:  # whatever the bytes made the unpickler do, the file is damaged
        raise _corrupt(path, f"is not a readable pickle ({type(err).__name__}: {err})") from None
    if isinstance(loaded, dict):
        loaded = {key: value.array if isinstance(value, _PickledArray) else value for key, value in loaded.items()}
    return loaded


def read_python_file(path, num_records, labels_key=b"labels", num_classes=10):
    """Read a pickled batch: a dict with ``b"data"`` ``(num_records, 3072) uint8`` and a label list."""
    batch = load_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or labels_key not in batch:
        raise _corrupt(path, f"is not a CIFAR batch (a dict with keys b'data' and {labels_key!r})")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (num_records, PIXEL_BYTES):
        shape = getattr(data, "shape", type(data).__name__)
        raise _corrupt(path, f"has data {shape}; expected a uint8 array of shape ({num_records}, {PIXEL_BYTES})")
    try:
        labels = np.asarray(batch[labels_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise _corrupt(path, "has labels that are not integers") from None
    if labels.shape != (num_records,):
        raise _corrupt(path, f"has labels of shape {labels.shape}; expected ({num_records},)")
    _check_labels(path, labels, num_classes)
    return planes_to_nhwc(data), labels


def read_python_names(path, names_key, num_classes):
    """Class names from a pickled meta file (``batches.meta`` or ``meta``)."""
    meta = load_pickle(path)
    names = meta.get(names_key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != num_classes or not all(isinstance(n, bytes) for n in names):
        raise _corrupt(path, f"has no list of {num_classes} class names under {names_key!r}")
    return [n.decode("utf-8", "replace") for n in names]


# ---------------------------------------------------------------------------------------------------
# Synthetic data


def synthetic_dataset(num_classes=10, train_size=2000, test_size=500, size=IMAGE_SIZE, seed=0):
    """A dataset a small CNN learns in a few dozen steps.

    Class k is drawn as stripes of hue ``k / num_classes`` at angle ``180° · k / num_classes``; each
    image gets a random stripe phase and Gaussian pixel noise (σ = 0.1 of full scale)."""
    rng = np.random.default_rng(seed)
    k = np.arange(num_classes)
    colours = 0.5 + 0.5 * np.cos(2 * np.pi * (k[:, None] / num_classes - np.array([0, 1, 2]) / 3))  # (K, 3)
    angles = np.pi * k / num_classes
    yy, xx = np.mgrid[0:size, 0:size] / (size / 4)  # four stripes across the image

    def make(n):
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        a, phase = angles[labels, None, None], rng.uniform(0, 2 * np.pi, (n, 1, 1))
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) + phase)  # (n, H, W)
        images = colours[labels, None, None, :] * (0.3 + 0.7 * stripes[..., None])
        images += rng.normal(0, 0.1, images.shape)
        return np.clip(images * 255, 0, 255).round().astype(np.uint8), labels

    train_images, train_labels = make(train_size)
    test_images, test_labels = make(test_size)
    return Dataset(train_images, train_labels, test_images, test_labels,
                   classes=[f"class_{i}" for i in k], source=f"synthetic ({num_classes} classes, seed {seed})")


def load_dataset(name, data_dir=None, download=True):
    """``"cifar10"``, ``"cifar100"`` (see load_cifar) or ``"synthetic"`` (default synthetic_dataset)."""
    if name == "synthetic":
        return synthetic_dataset()
    if name in LAYOUTS:
        return load_cifar(name, data_dir, download)
    raise TinyEffNetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


# ---------------------------------------------------------------------------------------------------
# On the way into training


def prepare_dataset(name, data_dir=None, subset=None, per_class=None, test_subset=None, resolution=None, stats=None):
    """The dataset as training takes it, prepared once.

    ``load_dataset(name, data_dir)`` cut to its first ``subset`` training images (of those, the first
    ``per_class`` of each class) and its first ``test_subset`` test images (None: all; more than there are is
    a TinyEffNetError), resized to
    ``resolution`` (None: as stored), with ``mean`` and ``std`` set to ``stats`` (a (mean, std) pair) or, by
    default, to the selected training images' own (``channel_stats``, at the stored size)."""
    ds = load_dataset(name, data_dir)
    for flag, asked, have, what in (("--subset", subset, len(ds.train_labels), "training"),
                                    ("--test-subset", test_subset, len(ds.test_labels), "test")):
        if asked is not None and asked > have:       # refused rather than quietly shrunk by the slice below
            raise TinyEffNetError(f"{flag} {asked} is more than the {have:,} {what} images of {name}; give at most "
                                  f"{flag} {have}, or leave it out for all of them")
    train_x, train_y = ds.train_images[:subset], ds.train_labels[:subset]
    if per_class is not None:
        keep = first_per_class(train_y, per_class)
        train_x, train_y = train_x[keep], train_y[keep]
    test_x, test_y = ds.test_images[:test_subset], ds.test_labels[:test_subset]
    mean, std = channel_stats(train_x) if stats is None else stats
    if resolution is not None:
        train_x, test_x = resize_images(train_x, resolution), resize_images(test_x, resolution)
    return Dataset(train_x, train_y, test_x, test_y, list(ds.classes), ds.source, mean, std)


def first_per_class(labels, k):
    """Indices of the first ``k`` examples of each class in ``labels`` (N,), in the dataset's order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c in np.unique(labels)]))


def random_crop_flip(images, rng, pad=CROP_PAD):
    """Standard CIFAR augmentation, for the whole batch at once.

    ``images: (N, H, W, C)`` (any dtype) → same shape: pad ``pad`` zero pixels on each side, take an
    H×W crop at a random offset in ``0..2·pad`` per image (a shift of ±pad), and mirror it left-right
    with probability 1/2. ``rng`` is a ``numpy.random.Generator``."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    top, left = rng.integers(0, 2 * pad + 1, size=(2, n))
    flip = rng.random(n) < 0.5
    rows = top[:, None] + np.arange(h)  # (N, H): source row of each output row
    cols = left[:, None] + np.arange(w)  # (N, W)
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def channel_stats(train_images, chunk=1024):
    """Per-channel mean and standard deviation of ``(N, H, W, C) uint8`` images, on the 0..1 scale.

    Accumulates Σx and Σx² in float64 over chunks of images, so memory stays small:
    mean = Σx / n, std = sqrt(Σx² / n − mean²). Returns two ``(C,) float32`` arrays."""
    channels = train_images.shape[-1]
    total, total_sq = np.zeros(channels), np.zeros(channels)
    for start in range(0, len(train_images), chunk):
        x = train_images[start:start + chunk].reshape(-1, channels) / 255.0
        total += x.sum(axis=0)
        total_sq += (x * x).sum(axis=0)
    count = train_images.size // channels
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(images, mean, std):
    """``(N, H, W, C) uint8`` (or float on the same 0…255 scale, as Mixup's) → float32 ``(x / 255 − mean) / std``
    per channel."""
    return ((images.astype(np.float32) / 255 - mean) / std).astype(np.float32, copy=False)


def resize_images(images, size):
    """Resize ``(N, H, W, 3) uint8`` images to ``(N, size, size, 3)`` with bicubic interpolation (Pillow).

    Done once per dataset, for the resolutions of the compound-scaled models; returns ``images``
    itself when they already have that size."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, images.shape[-1]), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
    return out


def iterate_batches(images, labels, batch_size, rng=None, drop_last=False):
    """Yield ``(images, labels)`` batches of ``batch_size``, in a random order when ``rng`` is given.

    The last, smaller batch is yielded unless ``drop_last``."""
    n = len(images)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield images[idx], labels[idx]
