"""File primitives every writer and reader shares: atomic writes and the format header check.

Writes are atomic: the bytes go to a temporary file in the same folder, are flushed and fsynced, then
the file is renamed over the old one, so a crash or a full disk never leaves a half-written file.
"""

import os
import tempfile

from tinyeffnet.errors import TinyEffNetError

FILE_MODE = 0o666                                   # before the umask, as open() would create the file


def outermost_missing(path):
    """The outermost folder of ``path`` that does not exist yet (None if ``path`` exists): what
    ``os.makedirs(path)`` creates, and what a failed command removes again."""
    missing, parent = None, os.path.abspath(path)
    while not os.path.exists(parent):
        missing, parent = parent, os.path.dirname(parent)
    return missing


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


def check_header(meta, path, format_name, newest):
    """Refuse file metadata ``meta`` that is not of ``format_name`` or is newer than version ``newest``."""
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        raise TinyEffNetError(f"{path} is not a tinyeffnet file of this kind (no '{format_name}' header)")
    version = meta.get("version")
    if not isinstance(version, int) or version > newest:
        raise TinyEffNetError(f"{path} has {format_name} format version {version!r}, newer than this tinyeffnet "
                              f"reads (up to {newest}); upgrade tinyeffnet to load it")
