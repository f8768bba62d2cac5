"""Writing files so that a crash or a full disk leaves whole records: the old version or the
new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write to a temp file beside `path`, fsync it, give it `mode`, rename it over `path`.

    The temp name is `.NAME.*.tmp`, so nothing that looks for NAME's suffix (.json, .desktop,
    .plist) ever picks up a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    # The rename is only durable once the directory entry is on disk (POSIX; no-op elsewhere).
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def append_whole(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Append `data` with one O_APPEND write, all of it or none of it.

    On a disk that fills up mid-write the kernel takes what fits and reports a short write; that
    tail is cut off again, so the file never ends in half a record and the caller can keep the
    data and try again later. Raises OSError (ENOSPC for a short write).
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        start = os.fstat(fd).st_size
        written = os.write(fd, data)
        if written != len(data):
            # Only our own bytes: another appender (portwatch watch --log) may have written since.
            if os.fstat(fd).st_size == start + written:
                os.ftruncate(fd, start)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    finally:
        os.close(fd)


def rotate_files(path: Path, backups: int) -> None:
    """path -> path.1 -> path.2 ... -> path.<backups>; the oldest is dropped. Whole files move,
    so each keeps every record it had."""
    for index in range(backups, 1, -1):
        older = path.with_name(f"{path.name}.{index - 1}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def mount_point(path: Path) -> Path:
    """The mount the (possibly not yet existing) `path` lives on, e.g. /home."""
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return here


def _nearest_existing(path: Path) -> Path:
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    return here


def describe_write_error(exc: OSError, path: Path) -> str:
    """Why `path` could not be written, as a user would say it."""
    code = exc.errno
    if code == errno.ENOSPC:
        return f"no space left on {mount_point(path)}"
    if code == errno.EDQUOT:
        return f"disk quota exceeded on {mount_point(path)}"
    if code == errno.EROFS:
        return f"{mount_point(path)} is read-only"
    if code in (errno.EACCES, errno.EPERM):
        # The file itself (exists, read-only) or the folder a new file would go in.
        denied = Path(exc.filename) if isinstance(exc.filename, str) else path
        if denied.exists() and not denied.is_dir():
            return f"no permission to write {denied}"
        return f"no permission to write in {_nearest_existing(denied.parent)}"
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = _nearest_existing(path.parent)
        return f"{blocker} is not a folder" if not blocker.is_dir() else exc.strerror or str(exc)
    if code == errno.ENOENT:
        return f"{path.parent} is gone"
    if code == errno.EIO:
        return f"input/output error on {mount_point(path)}"
    return exc.strerror or str(exc)
