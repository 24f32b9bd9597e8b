"""Fetching a dataset archive: download it, check its MD5, and unpack it safely.

Three rules keep a bad download from doing harm:

1. the archive goes to a temporary file beside its destination and is deleted afterwards, whatever happens;
2. its MD5 must match the published one before a single byte is unpacked;
3. every member is checked before anything is written: only plain files and folders, only relative
   paths without ``..``. The files are unpacked into a temporary folder that is renamed into place
   once complete, so a failure leaves nothing half-made.

``url`` may be ``https://…``, ``http://…`` or ``file://…`` (the tests serve archives they build).
"""

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.files import outermost_missing

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30


def download_and_extract(url, md5, data_dir, folder):
    """Download the ``.tar.gz`` at ``url``, check it against ``md5``, and unpack its ``folder`` into
    ``data_dir``. Returns ``data_dir / folder``. Nothing is left in ``data_dir`` if any step fails, and a
    ``data_dir`` (or parent) that this call had to create is removed again."""
    data_dir = Path(data_dir)
    created = outermost_missing(data_dir)
    try:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            handle, archive = tempfile.mkstemp(dir=data_dir, prefix=".download-", suffix=".tar.gz")
            os.close(handle)
        except OSError as err:
            raise TinyEffNetError(f"cannot write to the data folder {data_dir} ({err}); "
                                  "point --data-dir or TINYEFFNET_DATA at a writable folder") from None
        try:
            download_file(url, archive, md5)
            return extract_folder(archive, data_dir, folder, name=url)
        finally:
            Path(archive).unlink(missing_ok=True)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def download_file(url, path, md5):
    """Stream ``url`` into ``path`` with a progress line on stderr, then check the file's MD5.

    On a mismatch the file is deleted and the error gives both checksums."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(path, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                _progress(url, done, total)
    except (OSError, http.client.HTTPException, ValueError) as err:
        Path(path).unlink(missing_ok=True)
        raise TinyEffNetError(f"download of {url} failed ({err})") from None
    finally:
        print(file=sys.stderr)  # end the progress line
    actual = digest.hexdigest()
    if actual != md5:
        Path(path).unlink(missing_ok=True)
        raise TinyEffNetError(f"checksum mismatch for {url}: expected MD5 {md5}, got {actual}; "
                              "the file was deleted, try again (or fetch it by hand)")


def _progress(url, done, total):
    mb = done / 1e6
    line = f"{mb:.1f}/{total / 1e6:.1f} MB ({100 * done // total}%)" if total else f"{mb:.1f} MB"
    print(f"\rdownloading {url}: {line}", end="", file=sys.stderr, flush=True)


def extract_folder(archive, dest_dir, folder, name=None):
    """Unpack ``archive`` (a tar, optionally gzip'd) and move its top-level ``folder`` to
    ``dest_dir / folder``; returns that path. Messages call the archive ``name`` (default: its path).

    Refuses, naming the member, any absolute path, any ``..`` component and anything that is not a
    plain file or folder (symlinks, hard links, devices, FIFOs)."""
    dest_dir, name = Path(dest_dir), name or archive
    target = dest_dir / folder
    scratch = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, name)
            for member in members:
                _write_member(tar, member, scratch)
        if not (scratch / folder).is_dir():
            raise TinyEffNetError(f"archive {name} has no folder {folder}/; is it the right archive?")
        os.replace(scratch / folder, target)
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as err:
        raise TinyEffNetError(f"could not unpack {name} into {target} ({err}); "
                              "it is damaged: download it again") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _check_member(member, name):
    path = PurePosixPath(member.name)
    if path.is_absolute():
        problem = "is an absolute path"
    elif ".." in path.parts:
        problem = "has a '..' component"
    elif not (member.isreg() or member.isdir()):
        problem = "is not a plain file or folder (a link, device or FIFO)"
    else:
        return
    raise TinyEffNetError(f"refusing to unpack {name}: member {member.name!r} {problem}")


def _write_member(tar, member, root):
    path = root / member.name
    if member.isdir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tar.extractfile(member) as source, open(path, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)
