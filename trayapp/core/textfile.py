"""The metrics file for node_exporter's (and windows_exporter's) textfile collector.

The collector reads every `*.prom` file in its folder on each scrape, so the file is replaced
in one rename: a scrape sees the old version or the new one, never half of one. The temporary
file is `.portwatch.prom.*.tmp`, which the collector ignores.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from trayapp.fileio import atomic_write

FILE_NAME = "portwatch.prom"
REFRESH_S = 60.0  # rewritten at least this often, so its age tells a live watch from a dead one
FILE_MODE = 0o644  # the exporter runs as another user and must read it; it holds no secret


class TextfileError(ValueError):
    """The folder cannot take the metrics file; the message says why and what would."""


def check_folder(text: str) -> Path:
    """The folder to write into; TextfileError unless it exists and we may write there."""
    if not text.strip():
        raise TextfileError("the textfile folder is empty: give the folder node_exporter reads")
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise TextfileError(
            f"'{text}' is not a folder: give the folder of node_exporter's "
            "--collector.textfile.directory"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TextfileError(f"'{text}' is not writable for this user")
    return folder


def write(folder: Path, text: str) -> Path:
    """Replace FOLDER/portwatch.prom with `text` (which must end in a line feed). OSError if
    the write fails; the previous file then stays as it was."""
    path = folder / FILE_NAME
    atomic_write(path, text.encode("utf-8"), FILE_MODE)
    return path


class Refresh:
    """When to rewrite: on every change, and when the last write is REFRESH_S old."""

    def __init__(self, every: float = REFRESH_S) -> None:
        self.every = every
        self._last: float | None = None

    def due(self, changed: bool, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return changed or self._last is None or now - self._last >= self.every

    def done(self, now: float | None = None) -> None:
        self._last = time.monotonic() if now is None else now
