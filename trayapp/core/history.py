"""The events log: events.jsonl, one JSON object per line, bounded by rotation.

Appends are single O_APPEND writes of whole lines (all or nothing, also on a full disk), so
the tray and a `portwatch watch --log` can share the file without interleaving. Reading never
fails on what it finds: a truncated, garbage or oversized line is skipped and counted.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from trayapp.core.events import Event
from trayapp.core.model import Port
from trayapp.fileio import append_whole, rotate_files

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
DEFAULT_BACKUPS = 3
# A real event line is a few hundred bytes; anything this long is damage, not data.
MAX_LINE_BYTES = 64 * 1024


@dataclass
class ReadResult:
    events: list[Event] = field(default_factory=list)
    skipped: int = 0  # lines that were not a valid event


class EventLog:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self._lock = threading.Lock()

    def files(self) -> list[Path]:
        """Existing log files, oldest first."""
        olds = [self._backup(i) for i in range(self.backups, 0, -1)]
        return [p for p in [*olds, self.path] if p.is_file()]

    def append(self, events: Iterable[Event]) -> None:
        data = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in events)
        if not data:
            return
        encoded = data.encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_if_needed(len(encoded))
            if not _ends_with_newline(self.path):
                # A crash mid-write left half a line: end it, so it costs one line, not two.
                encoded = b"\n" + encoded
            append_whole(self.path, encoded)

    def read(
        self, *, since: float | None = None, ports: Iterable[Port] | None = None
    ) -> ReadResult:
        wanted = set(ports) if ports is not None else None
        result = ReadResult()
        for path in self.files():
            for line in _lines(path, result):
                try:
                    event = Event.from_json(json.loads(line))
                except (ValueError, UnicodeDecodeError, RecursionError):
                    result.skipped += 1
                    continue
                if since is not None and event.time < since:
                    continue
                if wanted is not None and event.port not in wanted:
                    continue
                result.events.append(event)
        # Append order, not time order: after the clock is set back a later event carries an
        # earlier time, and sorting would put a stop before the start it ends.
        return result

    def read_new(self, cursor: Cursor | None) -> tuple[ReadResult, Cursor | None, bool]:
        """The events appended since `cursor` (None: all of them), the cursor to pass next
        time, and whether this is everything (the file was new, rotated or replaced, so the
        caller starts over). Lines still being written are left for the next call."""
        try:
            inode = self.path.stat().st_ino
        except OSError:
            inode = None
        result = ReadResult()
        if cursor is not None and inode == cursor.inode:
            offset = self._parse_from(self.path, cursor.offset, result)
            if offset is not None:
                return result, Cursor(cursor.inode, offset), False
            result = ReadResult()  # shrank: replaced in place; start over
        for path in self.files():
            if path != self.path:
                self._parse_from(path, 0, result, whole=True)
        offset = self._parse_from(self.path, 0, result) if inode is not None else None
        return (
            result,
            Cursor(inode, offset) if inode is not None and offset is not None else None,
            True,
        )

    @staticmethod
    def _parse_from(
        path: Path, offset: int, result: ReadResult, *, whole: bool = False
    ) -> int | None:
        """Parse the complete lines from `offset` on; the offset after the last one, or None
        if the file is now shorter than `offset`."""
        try:
            with path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() < offset:
                    return None
                handle.seek(offset)
                while True:
                    line = handle.readline(MAX_LINE_BYTES + 1)
                    if not line:
                        break
                    if not line.endswith(b"\n"):
                        if len(line) > MAX_LINE_BYTES:
                            result.skipped += 1
                            while line and not line.endswith(b"\n"):
                                line = handle.readline(MAX_LINE_BYTES)
                            offset = handle.tell()
                            continue
                        if not whole:
                            break  # being written: next time
                    offset = handle.tell()
                    if line.strip():
                        _parse_into(line, result)
        except OSError:
            return offset
        return offset

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        rotate_files(self.path, self.backups)


@dataclass(frozen=True)
class Cursor:
    """Where a reader of the current log file got to."""

    inode: int
    offset: int


def _parse_into(line: bytes, result: ReadResult) -> None:
    try:
        result.events.append(Event.from_json(json.loads(line)))
    except (ValueError, UnicodeDecodeError, RecursionError):
        result.skipped += 1


def _ends_with_newline(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return True
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"
    except OSError:
        return True


def _lines(path: Path, result: ReadResult) -> Iterator[bytes]:
    try:
        handle = path.open("rb")
    except OSError:
        return
    with handle:
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                result.skipped += 1
                # Skip the rest of the oversized line without holding it in memory.
                while line and not line.endswith(b"\n"):
                    line = handle.readline(MAX_LINE_BYTES)
                continue
            if line.strip():
                yield line
