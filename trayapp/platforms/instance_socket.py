"""The single-instance channel's socket where the OS has Unix sockets (Linux, macOS).

A Unix socket in a folder only this user can enter, guarded by a lock file, so two launches at
the same moment cannot both become the first one and a crashed instance's socket file is
simply replaced. Plain `socket` and `fcntl`: Qt's QLocalServer does the same job but loads
QtNetwork (about 3 MiB more for the whole day). Windows, whose Python has no AF_UNIX, uses
QLocalServer's named pipe instead (ui/instance.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path

from trayapp.platforms import current_os

# sun_path holds 104 bytes on macOS, 108 on Linux: longer paths cannot be bound.
MAX_PATH_BYTES = 100


class ChannelUnsafe(OSError):
    """The channel's folder belongs to someone else or others may enter it."""


def supported() -> bool:
    return current_os() != "windows" and hasattr(socket, "AF_UNIX")


def channel_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user's runtime folder (XDG_RUNTIME_DIR) if there is one, else the temp folder, in
    a sub-folder `portwatch-<uid>` that only this user may enter (created so)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_RUNTIME_DIR", "")
    if not (base and os.path.isabs(base) and os.path.isdir(base)):
        base = env.get("TMPDIR", "") or tempfile.gettempdir()
    return Path(base) / f"portwatch-{os.getuid()}"


def socket_path(scope: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where the instance for `scope` (its settings folder) listens. One per settings folder,
    so test instances with their own PORTWATCH_HOME never meet the user's."""
    name = f"{zlib.crc32(scope.encode()):08x}.sock"
    path = channel_dir(environ) / name
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        path = Path(tempfile.gettempdir()) / f"portwatch-{os.getuid()}" / name
    return path


def _private_dir(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=False)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ChannelUnsafe(f"{path} is not a folder of this user's: not using it")
    if info.st_mode & 0o077:
        raise ChannelUnsafe(f"{path} may be entered by other users: not using it")


class Listener:
    """The first instance's end: a listening non-blocking socket, and the lock that says so.
    `close()` removes the socket file and lets the lock go."""

    def __init__(self, sock: socket.socket, lock_fd: int, path: Path) -> None:
        self.sock = sock
        self.path = path
        self._lock_fd = lock_fd

    def close(self) -> None:
        if self._lock_fd < 0:
            return
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._lock_fd)  # releases the lock
        self._lock_fd = -1


def listen(path: Path) -> Listener | None:
    """Become the first instance: None when another one holds the lock (it is running or just
    starting). Raises OSError when the folder is unsafe or the socket cannot be made."""
    import fcntl  # POSIX only; this module is used only where supported() says so

    _private_dir(path.parent)
    lock_fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        return None
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by an instance that crashed: the lock is ours now
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            sock.listen(8)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
    except OSError:
        os.close(lock_fd)
        raise
    return Listener(sock, lock_fd, path)


def ask(path: Path, message: bytes, timeout: float) -> bytes | None:
    """Send one line to the instance at `path` and return its one-line answer; None when no
    instance answers there."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(message)
            answer = b""
            while not answer.endswith(b"\n") and len(answer) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
            return answer
    except OSError:
        return None
