"""Marks that a watcher is still alive, so that history stays true when one dies unannounced.

A watcher that quits writes "watch-ended"; one that is killed (SIGKILL, a crash, power loss)
writes nothing, and its last period would run on as if watched. So while it watches, each
watcher keeps a small file, `watching/<watcher id>.json` beside the events log, naming the
ports it watches; its modification time says when the watcher was last known alive. It is
touched at most once a minute (and whenever the watcher writes to the log, so that no record
is later than the mark) and removed when the watcher stops watching.

A mark left behind is a watcher that died: its ports were watched until the mark's time and
not after. The next watcher to start ends those watches in the log ("watch-ended", reason
`lost`, at the mark's time); until then, readers of the history end them the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from trayapp.core.model import PROTOCOLS, Port, is_port_number
from trayapp.fileio import atomic_write

TOUCH_EVERY_S = 60.0
# A live watcher touches its mark at least this often (its poll interval may be longer than a
# minute: the mark says which); older than that, nothing has kept it fresh.
STALE_AFTER_S = 3 * TOUCH_EVERY_S
FOLDER = "watching"


def marks_folder(events_file: Path) -> Path:
    return events_file.parent / FOLDER


@dataclass(frozen=True)
class Mark:
    """A watcher's mark as found on disk."""

    path: Path
    watcher: str
    ports: tuple[Port, ...]
    alive: float  # last known alive (the file's modification time)
    stale_after: float

    def stale(self, now: float) -> bool:
        return now - self.alive > self.stale_after


class AliveMark:
    """The mark of one running watcher. Errors are ignored: a mark that cannot be written
    costs only the precision of the history after a crash, never the watch."""

    def __init__(self, folder: Path, watcher: str, interval: float = 0.0) -> None:
        self.path = folder / f"{watcher}.json"
        self.watcher = watcher
        self.stale_after = max(STALE_AFTER_S, 3 * interval)
        self._ports: tuple[Port, ...] = ()
        self._touched: float | None = None

    def watching(self, ports: list[Port], now: float) -> None:
        """These ports are watched from `now` on (none: the mark goes)."""
        ordered = tuple(sorted(set(ports)))
        if ordered == self._ports and self._touched is not None:
            self.touch(now)
            return
        self._ports = ordered
        if not ordered:
            self.remove()
            return
        data = {
            "watcher": self.watcher,
            "stale_after": self.stale_after,
            "ports": [[p.number, p.protocol, p.host] for p in ordered],
        }
        try:
            atomic_write(self.path, (json.dumps(data) + "\n").encode("utf-8"), 0o600)
        except OSError:
            self._touched = None
            return
        self._touched = None
        self.touch(now, force=True)

    def touch(self, now: float, *, force: bool = False) -> None:
        """Still alive at `now`; writes at most once a minute unless forced."""
        if not self._ports:
            return
        if not force and self._touched is not None and abs(now - self._touched) < TOUCH_EVERY_S:
            return
        try:
            os.utime(self.path, (now, now))
        except OSError:
            return
        self._touched = now

    def remove(self) -> None:
        self._ports = ()
        self._touched = None
        with contextlib.suppress(OSError):
            self.path.unlink()


def read_marks(folder: Path) -> list[Mark]:
    """Every readable mark in the folder; damaged ones are skipped."""
    marks = []
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            alive = path.stat().st_mtime
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        mark = _mark(path, data, alive)
        if mark is not None:
            marks.append(mark)
    return marks


def _mark(path: Path, data: object, alive: float) -> Mark | None:
    if not isinstance(data, dict):
        return None
    watcher, stale_after, ports = data.get("watcher"), data.get("stale_after"), data.get("ports")
    if not isinstance(watcher, str) or not isinstance(ports, list):
        return None
    if not isinstance(stale_after, (int, float)) or isinstance(stale_after, bool):
        stale_after = STALE_AFTER_S
    found = []
    for item in ports:
        if (
            isinstance(item, list)
            and len(item) == 3
            and is_port_number(item[0])
            and item[1] in PROTOCOLS
            and isinstance(item[2], str)
        ):
            found.append(Port(item[0], item[1], item[2]))
    return Mark(path, watcher, tuple(found), alive, float(stale_after))


def claim(mark: Mark) -> bool:
    """Take a dead watcher's mark away, so that one starter alone writes its end."""
    try:
        # Atomic: of two watchers starting at once, one removes it and the other fails.
        mark.path.unlink()
    except OSError:
        return False
    return True


def dead_marks(folder: Path, own_watcher: str, now: float | None = None) -> list[Mark]:
    """The marks of watchers that died: this watcher's own (one of a kind, like the tray: a
    mark left by an earlier run of it), and any other gone stale."""
    when = time.time() if now is None else now
    return [m for m in read_marks(folder) if m.watcher == own_watcher or m.stale(when)]


def dead_watchers(events_file: Path, now: float | None = None) -> dict[str, float]:
    """For readers of the history: the watchers whose marks went stale, and when each was
    last known alive."""
    when = time.time() if now is None else now
    found: dict[str, float] = {}
    for mark in read_marks(marks_folder(events_file)):
        if mark.stale(when):
            found[mark.watcher] = max(mark.alive, found.get(mark.watcher, mark.alive))
    return found
