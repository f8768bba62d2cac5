"""The events log: events.jsonl, one JSON object per line, bounded by rotation.

Appends are single O_APPEND writes of whole lines (all or nothing, also on a full disk), so
the tray and a `portwatch watch --log` can share the file without interleaving. Reading never
fails on what it finds: a truncated, garbage or oversized line is skipped and counted.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections.abc import Iterable
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
            _parse_file(path, FilePosition(0, 0, 0), result, whole=True)
        if since is not None or wanted is not None:
            result.events = [
                event
                for event in result.events
                if (since is None or event.time >= since)
                and (wanted is None or event.port in wanted)
            ]
        # Append order, not time order: after the clock is set back a later event carries an
        # earlier time, and sorting would put a stop before the start it ends.
        return result

    def read_since(
        self, position: Position | None, *, verify: bool = False
    ) -> tuple[ReadResult, Position, bool]:
        """The events appended since `position` (None: all of them), the position to pass
        next time, and whether this is everything (the caller starts over).

        The position holds each file read, oldest first: its inode, the bytes read and their
        CRC-32. It goes on only while those files are still the oldest ones and have not
        shrunk (a rotation that keeps them just adds a file); with `verify`, also only if the
        bytes read are still the same (a position kept on disk, against an edited log). Lines
        still being written are left for the next call."""
        found = []
        for path in self.files():
            try:
                found.append((path, path.stat()))
            except OSError:
                continue
        kept = _still_valid(found, position or (), verify)
        result = ReadResult()
        files: list[FilePosition] = []
        for index, (path, info) in enumerate(found):
            start = kept[index] if index < len(kept) else FilePosition(info.st_ino, 0, 0)
            last = index == len(found) - 1
            files.append(_parse_file(path, start, result, whole=not last))
        return result, tuple(files), not kept

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
class FilePosition:
    """How far a reader got in one log file."""

    inode: int
    offset: int  # bytes read: whole lines only
    crc: int  # zlib.crc32 of those bytes


Position = tuple[FilePosition, ...]  # oldest file first
CHUNK_BYTES = 1024 * 1024
_decode = json.JSONDecoder().decode


def _still_valid(
    found: list[tuple[Path, os.stat_result]], position: Position, verify: bool
) -> Position:
    """`position` if it still describes the start of these files, else ()."""
    if len(position) > len(found):
        return ()
    for (path, info), known in zip(found, position, strict=False):
        if info.st_ino != known.inode or info.st_size < known.offset:
            return ()
        if verify and _crc(path, known.offset) != known.crc:
            return ()
    return position


def _crc(path: Path, length: int) -> int | None:
    crc = 0
    try:
        with path.open("rb") as handle:
            while length > 0:
                chunk = handle.read(min(CHUNK_BYTES, length))
                if not chunk:
                    return None
                crc = zlib.crc32(chunk, crc)
                length -= len(chunk)
    except OSError:
        return None
    return crc


def _parse_file(
    path: Path, start: FilePosition, result: ReadResult, *, whole: bool
) -> FilePosition:
    """Parse the lines of `path` after `start` into `result`; where that leaves the file.

    Reads in chunks of a MiB (a log of any size costs no more memory than that); a line longer
    than MAX_LINE_BYTES is damage, skipped without being held. `whole`: a last line without
    its newline is read too (a rotated file is never written again)."""
    reader = _Reader(start, result)
    try:
        handle = path.open("rb")
    except OSError:
        return start
    with handle:
        handle.seek(start.offset)
        while True:
            chunk = handle.read(CHUNK_BYTES)
            if not chunk:
                break
            reader.feed(chunk)
        if whole:
            reader.finish()
    return FilePosition(start.inode, reader.offset, reader.crc)


class _Reader:
    """Lines from chunks: what is whole is parsed and counted as read (offset, CRC)."""

    def __init__(self, start: FilePosition, result: ReadResult) -> None:
        self.offset, self.crc = start.offset, start.crc
        self.result = result
        self.rest = b""  # the start of a line whose end is in the next chunk
        self.oversized = False  # inside a damaged, too long line: skip to its end

    def _consume(self, data: bytes | memoryview) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.offset += len(data)

    def feed(self, chunk: bytes) -> None:
        data = self.rest + chunk if self.rest else chunk
        self.rest = b""
        if self.oversized:
            cut = data.find(b"\n")
            if cut < 0:
                self._consume(data)
                return
            self._consume(memoryview(data)[: cut + 1])
            data = data[cut + 1 :]
            self.oversized = False
        lines = data.split(b"\n")
        rest = lines.pop()
        self._consume(memoryview(data)[: len(data) - len(rest)])
        for line in lines:
            self._parse(line)
        if len(rest) > MAX_LINE_BYTES:
            self.result.skipped += 1
            self._consume(rest)
            self.oversized = True
        else:
            self.rest = rest

    def finish(self) -> None:
        """The last line has no newline, and will never get one."""
        if self.rest:
            self._consume(self.rest)
            self._parse(self.rest)
            self.rest = b""

    def _parse(self, line: bytes) -> None:
        if len(line) > MAX_LINE_BYTES:
            self.result.skipped += 1
        elif line.strip():
            try:
                self.result.events.append(Event.from_json(_decode(line.decode("utf-8"))))
            except (ValueError, UnicodeDecodeError, RecursionError):
                self.result.skipped += 1


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
