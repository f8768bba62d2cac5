"""The periods read from the events log, kept beside it (`events.jsonl.periods`), so that a
History window opens at once instead of parsing 100,000 lines again.

The cache holds the period builder as it was after reading the log up to a position: which
files (inode), how many bytes of each and their CRC-32. It is used only if the log still
starts with exactly those bytes (core/history.py checks them all); a rotation that dropped a
file, a truncated or edited log, a damaged or foreign cache file: everything is read again and
the cache written anew. So it can be deleted at any time, and never gives a wrong answer.

Format: a line `portwatch-periods <version> <byte order>`, a line of JSON (the position, the
texts, and per port its state and number of periods), then each port's columns as raw arrays.
"""

from __future__ import annotations

import json
import sys
from array import array
from pathlib import Path
from typing import Any

from trayapp.core.history import EventLog, FilePosition, Position
from trayapp.core.model import PROTOCOLS, Port, is_port_number
from trayapp.core.timeline import (
    COLUMN_TYPES,
    STATES,
    PeriodBuilder,
    PortPeriods,
    Strings,
    Tracker,
)
from trayapp.fileio import atomic_write

# Events read beyond what the cache holds before it is written again: the next reader then
# parses at most about this many lines itself.
SAVE_AFTER_EVENTS = 1000
VERSION = 2  # 2: each port's remembered owner and health
MAGIC = f"portwatch-periods {VERSION} {sys.byteorder}\n".encode()


def cache_file(events_file: Path) -> Path:
    return events_file.with_name(events_file.name + ".periods")


class PeriodReader:
    """The periods of a log, read from the cache first, then only what is new. Not thread-safe:
    one thread reads (the History window's reading thread)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.path = cache_file(log.path)
        self.builder = PeriodBuilder()
        self.skipped = 0  # damaged lines, so far
        self.parsed = 0  # lines parsed by this reader (not those the cache stood for)
        self.position: Position | None = None
        self._unsaved = 0

    def read_more(self) -> tuple[bool, bool]:
        """Read what is new: whether anything changed, and whether that was everything (the
        log was read from its start)."""
        verify = False
        if self.position is None:
            cached = load(self.path)
            if cached is not None:
                self.builder, self.position, self.skipped = cached
                verify = True  # the log may have been edited since
        result, self.position, everything = self.log.read_since(self.position, verify=verify)
        if everything:
            self.builder = PeriodBuilder()
            self.skipped = 0
            self._unsaved = 0
        self.builder.add(result.events)
        self.skipped += result.skipped
        self.parsed += len(result.events) + result.skipped
        self._unsaved += len(result.events)
        if (everything and self.position) or self._unsaved >= SAVE_AFTER_EVENTS:
            try:
                save(self.path, self.builder, self.position, self.skipped)
                self._unsaved = 0
            except OSError:
                pass  # a full disk costs only the next window's speed
        return everything or bool(result.events or result.skipped), everything


def save(path: Path, builder: PeriodBuilder, position: Position, skipped: int) -> None:
    """Write the cache atomically (a reader never sees half of one)."""
    ports = []
    blobs: list[bytes] = []
    for port, table in builder.tables.items():
        tracker = builder.trackers[port]
        ports.append(
            {
                "port": [port.number, port.protocol, port.host],
                "size": table.size,
                "watchers": sorted(tracker.watchers),
                "listening": tracker.listening,
                "healthy": tracker.healthy,
                "owner": list(tracker.owner),
                "seen": tracker.seen,
                "remembered": (
                    [list(tracker.remembered[0]), tracker.remembered[1]]
                    if tracker.remembered is not None
                    else None
                ),
            }
        )
        blobs.extend(table.columns[name][: table.size].tobytes() for name in COLUMN_TYPES)
    header = {
        "position": [[f.inode, f.offset, f.crc] for f in position],
        "skipped": skipped,
        "strings": builder.strings.texts,
        "ports": ports,
    }
    data = b"".join([MAGIC, json.dumps(header).encode("utf-8"), b"\n", *blobs])
    atomic_write(path, data, 0o600)


def load(path: Path) -> tuple[PeriodBuilder, Position, int] | None:
    """The builder, the position it has read to and the damaged lines it skipped; None if
    there is no cache or it cannot be trusted to be whole."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(MAGIC):
        return None
    try:
        return _parse(data)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError):
        return None


def _parse(data: bytes) -> tuple[PeriodBuilder, Position, int] | None:
    end = data.index(b"\n", len(MAGIC))
    header: dict[str, Any] = json.loads(data[len(MAGIC) : end])
    position = tuple(FilePosition(int(i), int(o), int(c)) for i, o, c in header["position"])
    skipped = int(header["skipped"])
    builder = PeriodBuilder()
    strings = header["strings"]
    if not isinstance(strings, list) or not all(isinstance(t, str) for t in strings):
        return None
    builder.strings = Strings(strings)
    offset = end + 1
    for entry in header["ports"]:
        number, protocol, host = entry["port"]
        if not is_port_number(number) or protocol not in PROTOCOLS or not isinstance(host, str):
            return None
        port = Port(number, protocol, host)
        size = int(entry["size"])
        table = PortPeriods(port, builder.strings)
        for name, code in COLUMN_TYPES.items():
            column = array(code)
            length = size * column.itemsize
            if offset + length > len(data):
                return None
            column.frombytes(data[offset : offset + length])
            offset += length
            table.columns[name] = column
        table.size = size
        if not _sound(table, len(strings)):
            return None
        tracker = Tracker()
        tracker.watchers = {str(w) for w in entry["watchers"]}
        tracker.listening = bool(entry["listening"])
        tracker.healthy = bool(entry["healthy"])
        tracker.owner = _owner(entry["owner"])
        tracker.seen = bool(entry["seen"])
        tracker.remembered = _remembered(entry["remembered"])
        builder.trackers[port] = tracker
        builder.tables[port] = table
    if offset != len(data):
        return None
    return builder, position, skipped


def _owner(value: object) -> tuple[int | None, str | None, str | None]:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError("an owner is [pid, name, user]")  # the cache is not used
    pid, name, user = value
    return (
        pid if isinstance(pid, int) else None,
        name if isinstance(name, str) else None,
        user if isinstance(user, str) else None,
    )


def _remembered(
    value: object,
) -> tuple[tuple[int | None, str | None, str | None], bool] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], bool):
        raise ValueError("a remembered health is [owner, true or false]")
    return (_owner(value[0]), value[1])


def _sound(table: PortPeriods, texts: int) -> bool:
    """Every number in the columns names a state or a text that exists."""
    if not table.size:
        return True
    c = table.columns
    states = c["states"]
    if min(states) < 0 or max(states) >= len(STATES):
        return False
    return all(
        min(c[n]) >= -1 and max(c[n]) < texts for n in ("began", "reasons", "names", "users")
    )
