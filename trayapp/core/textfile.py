"""The metrics file for node_exporter's (and windows_exporter's) textfile collector.

The collector reads every `*.prom` file in its folder on each scrape, so the file is replaced
in one rename: a scrape sees the old version or the new one, never half of one. The temporary
file is `.portwatch.prom.*.tmp`, which the collector ignores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from trayapp.core import metrics
from trayapp.core.config import Config
from trayapp.core.events import Event
from trayapp.core.model import Port, Snapshot
from trayapp.core.probe import ProbeResult, probe_state
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
    """`portwatch watch --textfile`: the file rewritten on every change (and change of health),
    and at least every `refresh` seconds, when health is also checked again (a second or two
    per listening TCP port, in the watch's own loop)."""

    def __init__(
        self,
        folder: Path,
        labels: Mapping[Port, str],
        settings: Config,
        *,
        refresh: float = REFRESH_S,
        probe: bool = True,
    ) -> None:
        self.folder = folder
        self.labels = dict(labels)
        self.settings = settings  # the API keys for the probe
        self.changes = metrics.ChangeCounter(self.labels)
        self.refresh = Refresh(refresh)
        self.probe = probe
        self.probes: dict[Port, ProbeResult] = {}
        self.error: str | None = None

    def update(self, snapshot: Snapshot | None, scanned: bool, events: list[Event]) -> str | None:
        """After each poll: `snapshot` is the last good one, `scanned` says whether this poll
        made it. Returns a write error the first time it happens, else None."""
        self.changes.add(events)
        if snapshot is None:
            return None  # nothing scanned yet: no file rather than one that says nothing
        due = self.refresh.due(bool(events))
        if self.probe and scanned:
            before = {port: (r.health, r.status, r.bluesky) for port, r in self.probes.items()}
            self._probe(snapshot, recheck=due, changed={event.port for event in events})
            after = {port: (r.health, r.status, r.bluesky) for port, r in self.probes.items()}
            due = due or before != after
        if not due:
            return None
        text = metrics.render(
            snapshot, labels=self.labels, probes=self.probes, changes=self.changes
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

    def _probe(self, snapshot: Snapshot, recheck: bool, changed: set[Port]) -> None:
        for state in snapshot.states:
            port = state.port
            if not state.listening or port.protocol != "tcp":
                self.probes.pop(port, None)
            elif recheck or port in changed or port not in self.probes:
                entry = self.settings.watched(port)
                self.probes[port] = probe_state(state, entry.api_key if entry else None)
