"""A real, tiny tmpfs for full-disk and read-only tests (root only: it mounts).

with Tmpfs(tmp_path / "data", size_kib=16) as disk:
    disk.fill()       # every free block taken: the next new block fails with ENOSPC
    disk.free()
    disk.read_only()  # remount ro: EROFS
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

from tests.support import missing_part

FILLER = ".filler"


def require_mounting() -> None:
    """Skip (fail under CI=true) unless this process may mount a tmpfs."""
    if os.geteuid() != 0:
        missing_part("mounts a tmpfs to fill it up: needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        missing_part("needs mount and umount (Debian package mount)")


class Tmpfs:
    def __init__(self, path: Path, size_kib: int = 16) -> None:
        require_mounting()
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            missing_part(
                f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): "
                f"{result.stderr.strip()}"
            )

    def __enter__(self) -> Tmpfs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()

    def fill(self) -> int:
        """Take every free block; returns how many bytes that took."""
        written = 0
        chunk = b"\0" * 512
        with (self.path / FILLER).open("ab", buffering=0) as handle:
            while True:
                try:
                    n = handle.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += n or 0
                if not n:
                    break
        return written

    def free(self) -> None:
        (self.path / FILLER).unlink(missing_ok=True)

    def read_only(self, on: bool = True) -> None:
        mode = "ro" if on else "rw"
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True, timeout=30)

    def unmount(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            result = subprocess.run(["umount", str(self.path)], capture_output=True, timeout=30)
            if result.returncode != 0:  # still busy (an app that did not exit): detach it
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)
