"""Datasets: parsing both CIFAR layouts, structure checks, safe download and extraction, augmentation.

Every file here is made by the tests in a temporary folder, with a few records per file instead of
10000 (the ``small_layouts`` fixture shrinks the record counts in ``data.LAYOUTS``). Downloads are
served from ``file://`` URLs or a local HTTP server on 127.0.0.1.
"""

import dataclasses
import functools
import hashlib
import http.server
import io
import os
import pickle
import pickletools
import re
import tarfile
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyeffnet import data
from tinyeffnet.download import download_and_extract, extract_folder
from tinyeffnet.errors import TinyEffNetError

TRAIN_RECORDS, TEST_RECORDS = 3, 2
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------------------------------------------
# Writing small CIFAR folders


@pytest.fixture
def small_layouts(monkeypatch):
    for name, layouts in data.LAYOUTS.items():
        small = tuple(dataclasses.replace(layout, train_records=TRAIN_RECORDS, test_records=TEST_RECORDS)
                      for layout in layouts)
        monkeypatch.setitem(data.LAYOUTS, name, small)


def random_split(n, num_classes, rng):
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, num_classes, n).astype(np.int64)


def to_rows(images):
    """NHWC → the file order: R plane, G plane, B plane, each row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def binary_bytes(images, labels, label_bytes=1):
    label_columns = [labels // 5, labels] if label_bytes == 2 else [labels]  # CIFAR-100: coarse, fine
    return np.column_stack([*label_columns, to_rows(images)]).astype(np.uint8).tobytes()


def python2_pickle(obj):
    """Pickle ``obj`` the way the official python-layout files were written (Python 2, NumPy 1): byte
    strings as Python 2 ``str`` opcodes, and NumPy's ``_reconstruct`` under ``numpy.core``."""
    raw = bytearray(pickle.dumps(obj, protocol=3).replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    for opcode, _, position in pickletools.genops(bytes(raw)):  # same length layout, Python 2 names
        python2 = {"SHORT_BINBYTES": b"U", "BINBYTES": b"T", "BINUNICODE": b"T"}.get(opcode.name)
        if python2:
            raw[position] = python2[0]
    raw[1] = 2  # protocol 2
    return bytes(raw)


def write_cifar(folder, name="cifar10", kind="binary", seed=0):
    """Write a complete small CIFAR folder; returns the (train, test) arrays it holds and the class names."""
    rng = np.random.default_rng(seed)
    layout = next(layout for layout in data.LAYOUTS[name] if layout.kind == kind)
    num_classes = data.NUM_CLASSES[name]
    names = CIFAR10_NAMES if name == "cifar10" else [f"fine_{i}" for i in range(num_classes)]
    folder.mkdir(parents=True, exist_ok=True)
    splits = [(f, random_split(layout.train_records, num_classes, rng)) for f in layout.train_files]
    splits.append((layout.test_file, random_split(layout.test_records, num_classes, rng)))
    labels_key, names_key = data.PICKLE_KEYS[name]
    for filename, (images, labels) in splits:
        if kind == "binary":
            (folder / filename).write_bytes(binary_bytes(images, labels, data.LABEL_BYTES[name]))
        else:
            batch = {b"batch_label": b"test", labels_key: labels.tolist(), b"data": to_rows(images),
                     b"filenames": [b"x.png"] * len(labels)}
            (folder / filename).write_bytes(python2_pickle(batch))
    if kind == "binary":
        (folder / layout.names_file).write_text("\n".join(names) + "\n\n")
    else:
        (folder / layout.names_file).write_bytes(python2_pickle({names_key: [n.encode() for n in names]}))
    train = [split for _, split in splits[:-1]]
    return ((np.concatenate([i for i, _ in train]), np.concatenate([lab for _, lab in train])),
            splits[-1][1], names)


def assert_loaded(dataset, written):
    (train_images, train_labels), (test_images, test_labels), names = written
    np.testing.assert_array_equal(dataset.train_images, train_images)
    np.testing.assert_array_equal(dataset.train_labels, train_labels)
    np.testing.assert_array_equal(dataset.test_images, test_images)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int64
    assert dataset.classes == names


# ---------------------------------------------------------------------------------------------------
# Both layouts, and the structure checks


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("kind", ["binary", "python"])
def test_round_trip(tmp_path, small_layouts, name, kind):
    layout = next(layout for layout in data.LAYOUTS[name] if layout.kind == kind)
    written = write_cifar(tmp_path / layout.folder, name, kind)
    dataset = data.load_cifar(name, tmp_path, download=False)
    assert_loaded(dataset, written)
    assert dataset.source == f"{tmp_path / layout.folder} ({kind} layout)"


def test_binary_layout_is_preferred(tmp_path, small_layouts):
    write_cifar(tmp_path / "cifar-10-batches-py", kind="python", seed=1)
    written = write_cifar(tmp_path / "cifar-10-batches-bin", kind="binary", seed=2)
    assert_loaded(data.load_cifar("cifar10", tmp_path, download=False), written)


@pytest.mark.parametrize("kind", ["binary", "python"])
def test_folder_given_directly(tmp_path, small_layouts, kind):
    written = write_cifar(tmp_path / "renamed", kind=kind)
    dataset = data.load_cifar("cifar10", tmp_path / "renamed", download=False)
    assert_loaded(dataset, written)
    assert dataset.source == f"{tmp_path / 'renamed'} ({kind} layout)"


def test_truncated_file(tmp_path, small_layouts):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar(folder)
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(TinyEffNetError, match=r"data_batch_3\.bin is 9119 bytes.*truncated.*download again"):
        data.load_cifar("cifar10", tmp_path, download=False)


def test_wrong_record_count(tmp_path, small_layouts):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar(folder)
    path = folder / "test_batch.bin"
    path.write_bytes(path.read_bytes() * 2)
    with pytest.raises(TinyEffNetError, match=r"test_batch\.bin holds 4 records; expected 2"):
        data.load_cifar("cifar10", tmp_path, download=False)


@pytest.mark.parametrize("kind", ["binary", "python"])
def test_bad_label(tmp_path, small_layouts, kind):
    folder = tmp_path / "batches"
    write_cifar(folder, kind=kind)
    path = folder / ("data_batch_2.bin" if kind == "binary" else "data_batch_2")
    if kind == "binary":
        raw = bytearray(path.read_bytes())
        raw[3073] = 10  # the label byte of record 1
        path.write_bytes(bytes(raw))
    else:
        batch = data.load_pickle(path)
        batch[b"labels"][1] = 10
        path.write_bytes(python2_pickle(batch))
    with pytest.raises(TinyEffNetError, match=r"data_batch_2(\.bin)? has label 10 at record 1; labels must be 0\.\.9"):
        data.load_cifar("cifar10", folder, download=False)


def test_missing_file(tmp_path, small_layouts):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar(folder)
    (folder / "data_batch_2.bin").unlink()
    (folder / "batches.meta.txt").unlink()
    with pytest.raises(TinyEffNetError, match=r"binary layout\) is missing data_batch_2\.bin, batches\.meta\.txt"):
        data.load_cifar("cifar10", tmp_path, download=False)


def test_empty_folder_says_where_it_looked(tmp_path):
    with pytest.raises(TinyEffNetError) as caught:
        data.load_cifar("cifar10", tmp_path, download=False)
    message = str(caught.value)
    for place in [tmp_path / "cifar-10-batches-bin", tmp_path / "cifar-10-batches-py", tmp_path]:
        assert str(place) in message
    assert "--data-dir" in message and "TINYEFFNET_DATA" in message and "cifar-10-batches-bin" in message


def test_download_failure_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    url = (tmp_path / "no-such-archive.tar.gz").as_uri()
    monkeypatch.setitem(data.ARCHIVES, "cifar10", (url, "0" * 32))
    data_dir = tmp_path / "data"
    with pytest.raises(TinyEffNetError) as caught:
        data.load_cifar("cifar10", data_dir)
    message = str(caught.value)
    assert str(data_dir / "cifar-10-batches-bin") in message and str(data_dir / "cifar-10-batches-py") in message
    assert f"download of {url} failed" in message
    assert "--data-dir" in message and "TINYEFFNET_DATA" in message
    assert not data_dir.exists()              # the folder the failed download created is gone again


def test_failed_download_keeps_an_existing_data_folder_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setitem(data.ARCHIVES, "cifar10", ((tmp_path / "missing.tar.gz").as_uri(), "0" * 32))
    data_dir = tmp_path / "data"
    (data_dir / "other").mkdir(parents=True)
    with pytest.raises(TinyEffNetError, match="download of .* failed"):
        data.load_cifar("cifar10", data_dir / "deeper" / "still")
    assert [p.name for p in data_dir.iterdir()] == ["other"]   # only what it created went
    with pytest.raises(TinyEffNetError, match="download of .* failed"):
        data.load_cifar("cifar10", data_dir)
    assert [p.name for p in data_dir.iterdir()] == ["other"]


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYEFFNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.resolve_data_dir() == tmp_path / "xdg" / "tinyeffnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.resolve_data_dir() == Path.home() / ".cache" / "tinyeffnet"
    monkeypatch.setenv("TINYEFFNET_DATA", str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(TinyEffNetError, match="unknown dataset 'mnist'; choose one of: cifar10, cifar100, synthetic"):
        data.load_dataset("mnist")


# ---------------------------------------------------------------------------------------------------
# The restricted unpickler


def test_unpickler_refuses_other_globals_and_never_runs_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")  # protocol 0: os.system("touch pwned")
    with pytest.raises(TinyEffNetError, match=r"data_batch_1 references the global os\.system, which is refused"):
        data.read_python_file(evil, 1)
    assert not (tmp_path / "pwned").exists()


def test_pickles_written_by_numpy_2_load_too(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(valid_pickle())
    images, labels = data.read_python_file(path, 2)
    assert images.shape == (2, 32, 32, 3) and labels.shape == (2,)


def test_malformed_dtype_state_never_reaches_numpy(tmp_path):
    raw = valid_pickle()
    assert raw.count(b"NNNJ") == 1  # the dtype state (3, '|', None, None, None, -1, -1, 0)
    path = tmp_path / "data_batch_1"
    path.write_bytes(raw.replace(b"NNNJ", b"NN0J"))  # POP one None: NumPy's own __setstate__ segfaults
    images, _ = data.read_python_file(path, 2)  # the stand-in only reads the byte order
    assert images.dtype == np.uint8


def test_unpickler_refuses_reduce_to_builtins(tmp_path):
    class Payload:
        def __reduce__(self):
            return eval, ("1 + 1",)

    path = tmp_path / "meta"
    path.write_bytes(pickle.dumps({b"label_names": Payload()}))
    with pytest.raises(TinyEffNetError, match=r"builtins\.eval"):
        data.read_python_names(path, b"label_names", 10)


# ---------------------------------------------------------------------------------------------------
# Download and safe extraction


def make_archive(path, folder, arcname="cifar-10-batches-bin"):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return hashlib.md5(path.read_bytes()).hexdigest()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path):
    """``serve(path)`` → an http://127.0.0.1 URL for a file, served by a local server for this test."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield lambda path: f"http://127.0.0.1:{server.server_address[1]}/{path.relative_to(tmp_path)}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_download_verifies_and_extracts(tmp_path, small_layouts, monkeypatch, serve, capfd, scheme):
    written = write_cifar(tmp_path / "made" / "cifar-10-batches-bin")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    md5 = make_archive(archive, tmp_path / "made" / "cifar-10-batches-bin")
    url = archive.as_uri() if scheme == "file" else serve(archive)
    monkeypatch.setitem(data.ARCHIVES, "cifar10", (url, md5))
    data_dir = tmp_path / "data"
    assert_loaded(data.load_cifar("cifar10", data_dir), written)
    assert [p.name for p in data_dir.iterdir()] == ["cifar-10-batches-bin"]  # archive and scratch gone
    assert f"downloading {url}" in capfd.readouterr().err
    assert_loaded(data.load_cifar("cifar10", data_dir, download=False), written)


def test_checksum_mismatch_leaves_nothing(tmp_path, small_layouts):
    write_cifar(tmp_path / "made")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    actual = make_archive(archive, tmp_path / "made")
    data_dir = tmp_path / "data"
    with pytest.raises(TinyEffNetError, match=f"expected MD5 {'f' * 32}, got {actual}"):
        download_and_extract(archive.as_uri(), "f" * 32, data_dir, "cifar-10-batches-bin")
    assert not data_dir.exists()          # not even the folder it created for the download


def tar_with(path, info, payload=b"pwned"):
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        ok.size = 3
        tar.addfile(ok, io.BytesIO(b"cat"))
        info.size = len(payload) if info.isreg() else 0
        tar.addfile(info, io.BytesIO(payload) if info.isreg() else None)


def link(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("make_member, refusal", [
    (lambda root: tarfile.TarInfo("cifar-10-batches-bin/../../evil"), r"has a '\.\.' component"),
    (lambda root: tarfile.TarInfo(str(root / "evil")), "is an absolute path"),
    (lambda root: link("cifar-10-batches-bin/x", str(root / "evil"), tarfile.SYMTYPE), "is not a plain file"),
    (lambda root: link("cifar-10-batches-bin/x", "../../evil", tarfile.LNKTYPE), "is not a plain file"),
    (lambda root: link("cifar-10-batches-bin/tty", "", tarfile.CHRTYPE), "is not a plain file"),
], ids=["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_unsafe_archives_are_refused(tmp_path, make_member, refusal):
    member = make_member(tmp_path)
    archive = tmp_path / "archive.tar.gz"
    tar_with(archive, member)
    data_dir = tmp_path / "data"
    with pytest.raises(TinyEffNetError, match=re.escape(f"refusing to unpack {archive.as_uri()}: member {member.name!r} ") + refusal):
        download_and_extract(archive.as_uri(), hashlib.md5(archive.read_bytes()).hexdigest(), data_dir,
                             "cifar-10-batches-bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.tar.gz"]   # the data folder it created is gone again
    assert not data_dir.exists()          # not even the folder it created for the download


def test_archive_without_the_folder(tmp_path):
    (tmp_path / "other").mkdir()
    archive = tmp_path / "archive.tar.gz"
    make_archive(archive, tmp_path / "other", arcname="other")
    (tmp_path / "data").mkdir()
    with pytest.raises(TinyEffNetError, match="has no folder cifar-10-batches-bin/"):
        extract_folder(archive, tmp_path / "data", "cifar-10-batches-bin")
    assert list((tmp_path / "data").iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# Fuzz: damaged bytes give data or a TinyEffNetError, never another exception


def valid_binary(records=2):
    images, labels = random_split(records, 10, np.random.default_rng(0))
    return binary_bytes(images, labels)


def valid_pickle():
    images, labels = random_split(2, 10, np.random.default_rng(0))
    return pickle.dumps({b"data": to_rows(images), b"labels": labels.tolist()}, protocol=3)


def valid_tar(compress):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as tar:
        for name, payload in [("cifar-10-batches-bin/batches.meta.txt", b"cat\ndog\n"), ("readme", b"hi")]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def mutated(valid):
    """Bytes from ``valid`` with a few bytes overwritten and possibly cut short."""
    edits = st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), max_size=8)
    return st.builds(lambda e, cut: bytes(_apply(valid, e))[:cut], edits, st.integers(0, len(valid)))


def _apply(valid, edits):
    raw = bytearray(valid)
    for i, value in edits:
        raw[i] = value
    return raw


def fuzz_file(raw, check):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "file"
        path.write_bytes(raw)
        try:
            check(path, Path(tmp))
        except TinyEffNetError:
            pass


@given(st.one_of(st.binary(max_size=7000), mutated(valid_binary())), st.integers(0, 3))
def test_fuzz_binary_parser(raw, records):
    def check(path, _):
        images, labels = data.read_binary_file(path, records)
        assert images.shape == (records, 32, 32, 3) and labels.max(initial=0) < 10
    fuzz_file(raw, check)


@given(st.one_of(st.binary(max_size=2000), mutated(valid_pickle())))
def test_fuzz_python_loader(raw):
    def check(path, _):
        images, labels = data.read_python_file(path, 2)
        assert images.shape == (2, 32, 32, 3) and labels.max() < 10
    fuzz_file(raw, check)


@given(st.one_of(st.binary(max_size=3000), mutated(valid_tar(compress=False)), mutated(valid_tar(compress=True))))
def test_fuzz_tar_extraction(raw):
    def check(path, tmp):
        dest = tmp / "data"
        dest.mkdir()
        try:
            extract_folder(path, dest, "cifar-10-batches-bin")
        finally:
            assert all(p.name == "cifar-10-batches-bin" for p in dest.iterdir())
    fuzz_file(raw, check)


# ---------------------------------------------------------------------------------------------------
# Augmentation, normalisation, resizing, batching, synthetic data


def coordinate_images(n, h, w):
    """Images whose pixel (i, j) holds (i + 1, j + 1, 1), so a crop reveals where it came from."""
    images = np.ones((n, h, w, 3), dtype=np.float32)
    images[..., 0] = np.arange(1, h + 1)[:, None]
    images[..., 1] = np.arange(1, w + 1)[None, :]
    return images


def test_random_crop_shifts_within_pad_and_flips():
    n, h, w = 200, 12, 16
    out = data.random_crop_flip(coordinate_images(n, h, w), np.random.default_rng(0))
    assert out.shape == (n, h, w, 3) and out.dtype == np.float32
    i, j = np.arange(h)[:, None], np.arange(w)[None, :]
    shifts, flips = set(), []
    for image in out:
        inside = image[..., 2] == 1  # padding is zero in every channel
        row_shift = np.unique((image[..., 0] - 1 - i)[inside])
        col_shift = np.unique((image[..., 1] - 1 - j)[inside])
        flipped = len(col_shift) > 1
        if flipped:  # a mirrored crop reads its source columns backwards
            col_shift = np.unique((image[..., 1] - 1 - (w - 1 - j))[inside])
        assert len(row_shift) == 1 and len(col_shift) == 1
        dy, dx = int(row_shift[0]), int(col_shift[0])
        assert -4 <= dy <= 4 and -4 <= dx <= 4
        src_i, src_j = i + dy, (w - 1 - j if flipped else j) + dx
        np.testing.assert_array_equal(inside, (src_i >= 0) & (src_i < h) & (src_j >= 0) & (src_j < w))
        shifts.add((dy, dx))
        flips.append(flipped)
    assert len(shifts) > 40 and 0.3 < np.mean(flips) < 0.7


def test_flip_is_an_exact_mirror():
    images = np.random.default_rng(1).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    out = data.random_crop_flip(images, np.random.default_rng(2), pad=0)
    assert out.dtype == np.uint8
    same = (out == images).all(axis=(1, 2, 3))
    mirrored = (out == images[:, :, ::-1]).all(axis=(1, 2, 3))
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_augmentation_is_reproducible():
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    first = data.random_crop_flip(images, np.random.default_rng(7))
    np.testing.assert_array_equal(first, data.random_crop_flip(images, np.random.default_rng(7)))
    assert not np.array_equal(first, data.random_crop_flip(images, np.random.default_rng(8)))


def test_channel_stats_and_normalize():
    images = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    images[..., 2] //= 4
    mean, std = data.channel_stats(images, chunk=3)
    x = images.reshape(-1, 3) / 255.0
    assert mean.dtype == np.float32 and std.dtype == np.float32
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=0), rtol=1e-5)
    normalized = data.normalize(images, mean, std)
    assert normalized.dtype == np.float32 and normalized.shape == images.shape
    np.testing.assert_allclose(normalized.reshape(-1, 3).mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(normalized.reshape(-1, 3).std(axis=0), 1, rtol=1e-5)


def test_resize_images():
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert data.resize_images(images, 32) is images
    flat = np.full((2, 32, 32, 3), 77, dtype=np.uint8)
    bigger = data.resize_images(flat, 40)
    assert bigger.shape == (2, 40, 40, 3) and bigger.dtype == np.uint8 and (bigger == 77).all()


def test_iterate_batches():
    images, labels = np.arange(10)[:, None] * np.ones((10, 2)), np.arange(10)
    batches = list(data.iterate_batches(images, labels, 4))
    assert [len(b) for b, _ in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([lab for _, lab in batches]), labels)
    assert [len(b) for b, _ in data.iterate_batches(images, labels, 4, drop_last=True)] == [4, 4]
    shuffled = list(data.iterate_batches(images, labels, 4, rng=np.random.default_rng(0)))
    order = np.concatenate([lab for _, lab in shuffled])
    assert sorted(order) == list(range(10)) and list(order) != list(range(10))
    for batch_images, batch_labels in shuffled:
        np.testing.assert_array_equal(batch_images[:, 0], batch_labels)


def test_synthetic_dataset_is_balanced_reproducible_and_separable():
    dataset = data.load_dataset("synthetic")
    assert dataset.train_images.shape == (2000, 32, 32, 3) and dataset.train_images.dtype == np.uint8
    assert dataset.test_images.shape == (500, 32, 32, 3) and dataset.source.startswith("synthetic")
    assert np.bincount(dataset.train_labels).tolist() == [200] * 10 and len(dataset.classes) == 10
    again = data.synthetic_dataset()
    np.testing.assert_array_equal(again.train_images, dataset.train_images)
    small = data.synthetic_dataset(num_classes=4, train_size=8, test_size=4, size=20, seed=3)
    assert small.train_images.shape == (8, 20, 20, 3) and small.test_labels.max() < 4

    def colour(images):
        return images.reshape(len(images), -1, 3).mean(axis=1)
    # Even the nearest mean colour separates the classes: a CNN has an easy start.
    centroids = np.stack([colour(dataset.train_images[dataset.train_labels == k]).mean(0) for k in range(10)])
    distance = ((colour(dataset.test_images)[:, None] - centroids) ** 2).sum(-1)
    assert (distance.argmin(1) == dataset.test_labels).mean() > 0.9


def test_first_per_class_is_balanced_and_in_order():
    labels = np.array([2, 0, 0, 1, 2, 0, 1, 1, 2, 2])
    assert data.first_per_class(labels, 2).tolist() == [0, 1, 2, 3, 4, 6]


def test_prepare_dataset_selects_then_measures_then_resizes():
    full = data.synthetic_dataset()
    ds = data.prepare_dataset("synthetic", subset=300, per_class=5, test_subset=20, resolution=40)
    keep = data.first_per_class(full.train_labels[:300], 5)
    np.testing.assert_array_equal(ds.train_labels, full.train_labels[keep])
    np.testing.assert_array_equal(ds.test_labels, full.test_labels[:20])
    assert ds.train_images.shape == (50, 40, 40, 3) and ds.test_images.shape == (20, 40, 40, 3)
    mean, std = data.channel_stats(full.train_images[keep])        # of the selection, at the stored 32×32
    np.testing.assert_array_equal(ds.mean, mean)
    np.testing.assert_array_equal(ds.std, std)
    assert ds.classes == full.classes and ds.source == full.source
    given_stats = (np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32))
    stored = data.prepare_dataset("synthetic", test_subset=20, stats=given_stats)
    assert stored.mean is given_stats[0] and stored.std is given_stats[1]
    assert stored.train_images.shape == full.train_images.shape and full.mean is None


# ---------------------------------------------------------------------------------------------------
# The real copy


def test_real_cifar10_copy():
    folder = os.environ.get("TINYEFFNET_DATA")
    if not folder or data.find_cifar("cifar10", Path(folder)) is None:
        pytest.skip("set TINYEFFNET_DATA to a folder holding cifar-10-batches-bin to test the real files")
    dataset = data.load_cifar("cifar10", download=False)
    assert dataset.train_images.shape == (50000, 32, 32, 3) and dataset.test_images.shape == (10000, 32, 32, 3)
    assert set(np.unique(dataset.train_labels)) == set(range(10)) == set(np.unique(dataset.test_labels))
    assert dataset.classes == CIFAR10_NAMES
