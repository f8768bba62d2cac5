"""The metrics file for node_exporter's (and windows_exporter's) textfile collector.

The collector reads every `*.prom` file in its folder on each scrape, so the file is replaced
in one rename: a scrape sees the old version or the new one, never half of one. The temporary
file is `.portwatch.prom.*.tmp`, which the collector ignores.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from trayapp.core import metrics
from trayapp.core.events import Event
from trayapp.core.model import Port, Snapshot
from trayapp.core.probe import ProbeResult
from trayapp.core.remote import RemoteCheck
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


class WatchExport:
    """`portwatch watch --textfile`: the file rewritten on every change, every change of
    health (reported by the watch's health monitor, from its own threads), and at least every
    `refresh` seconds."""

    def __init__(
        self,
        folder: Path,
        labels: Mapping[Port, str],
        *,
        refresh: float = REFRESH_S,
    ) -> None:
        self.folder = folder
        self.labels = dict(labels)
        self.changes = metrics.ChangeCounter(self.labels)
        self.refresh = Refresh(refresh)
        self.probes: dict[Port, ProbeResult] = {}
        self.remote: dict[Port, RemoteCheck] = {}
        self._scanned = False
        self.error: str | None = None
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def update(self, snapshot: Snapshot | None, events: list[Event]) -> str | None:
        """After each poll, with the last good snapshot. Returns a write error the first time
        it happens, else None."""
        with self._lock:
            self.changes.add(events)
            if snapshot is None:
                return None  # nothing scanned yet: no file rather than one that says nothing
            # The first scan is written at once, even if an entry on another machine was
            # written a moment ago.
            first, self._scanned = not self._scanned, True
            self._snapshot = snapshot
            for state in snapshot.states:
                if not state.listening:
                    self.probes.pop(state.port, None)
            return self._write(first or self.refresh.due(bool(events)))

    def health(self, port: Port, result: ProbeResult) -> str | None:
        """A health check's result; the file changes when what it says changes."""
        with self._lock:
            before = self.probes.get(port)
            self.probes[port] = result
            said = (result.health, result.status, result.queue)
            changed = before is None or (before.health, before.status, before.queue) != said
            return self._write(changed)

    def remote_checked(self, port: Port, check: RemoteCheck, events: list[Event]) -> str | None:
        """An entry on another machine was checked (from the remote monitor's threads)."""
        with self._lock:
            self.changes.add(events)
            before = self.remote.get(port)
            self.remote[port] = check
            changed = before is None or (before.line, before.verdict) != (check.line, check.verdict)
            if self._snapshot is None:
                # Only other machines are watched: there is no scan to wait for.
                self._snapshot = Snapshot(())
            return self._write(changed or bool(events))

    def tick(self) -> str | None:
        """Rewrite if the file is `refresh` seconds old: a watch of other machines only has no
        poll to do it, and its checks may be further apart."""
        with self._lock:
            return self._write(self.refresh.due(False))

    def _write(self, due: bool) -> str | None:
        if not due or self._snapshot is None:
            return None
        text = metrics.render(
            self._snapshot,
            labels=self.labels,
            probes=self.probes,
            changes=self.changes,
            remote=[self.remote[port] for port in sorted(self.remote)],
        )
        try:
            write(self.folder, text)
        except OSError as exc:
            message = f"could not write {self.folder / FILE_NAME}: {exc}"
            new = message != self.error
            self.error = message
            return message if new else None
        self.error = None
        self.refresh.done()
        return None
