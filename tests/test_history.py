"""The events log: append, read back, skip damage, rotate without loss."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from trayapp.core.events import Event
from trayapp.core.history import MAX_LINE_BYTES, EventLog
from trayapp.core.model import Port


def event(i: int, port: int = 60610) -> Event:
    return Event(
        time=1_700_000_000.0 + i,
        port=Port(port),
        kind="started" if i % 2 == 0 else "stopped",
        pid=1000 + i,
        name="uvicorn",
        addresses=("127.0.0.1",),
    )


def test_lines_have_the_documented_fields(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append([event(0)])
    [line] = (tmp_path / "events.jsonl").read_text().splitlines()
    data = json.loads(line)
    assert {"time", "port", "protocol", "event", "pid", "name"} <= set(data)
    assert data["port"] == 60610 and data["protocol"] == "tcp" and data["event"] == "started"
    assert data["time"].endswith(("+00:00", "Z")) or data["time"][-6] in "+-"  # has an offset


def test_round_trip(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    events = [event(i) for i in range(10)]
    log.append(events)
    assert log.read().events == events


def test_garbage_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append([event(0)])
    with path.open("ab") as handle:
        handle.write(b"garbage\n{}\n[1,2]\n\xff\xfe\n")
        handle.write(b'{"port": 99999, "event": "started", "time": "2026-01-01T00:00:00+00:00"}\n')
        handle.write(b"x" * (MAX_LINE_BYTES * 3) + b"\n")
        handle.write(b'{"time": "2026-01-01T00:00:00+00:00", "port": 1, "event": "star')
    log.append([event(1)])  # appended after a truncated line: must still be read
    result = log.read()
    assert [e.pid for e in result.events] == [1000, 1001]
    assert result.skipped == 7


def test_filters(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append([event(0, 80), event(1, 81), event(2, 80)])
    assert [e.pid for e in log.read(ports=[Port(80)]).events] == [1000, 1002]
    assert [e.pid for e in log.read(since=1_700_000_001.0).events] == [1001, 1002]


def test_rotation_keeps_every_event_of_the_rotated_file(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", max_bytes=2000, backups=50)
    written = [event(i) for i in range(200)]
    for e in written:
        log.append([e])
    files = log.files()
    assert len(files) > 5
    assert all(p.stat().st_size <= 2000 for p in files)
    assert log.read().events == written


def test_rotation_drops_only_the_oldest_files(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", max_bytes=1000, backups=2)
    for i in range(100):
        log.append([event(i)])
    events = log.read().events
    assert len(log.files()) == 3
    assert events[-1] == event(99)
    pids = [e.pid for e in events]
    assert pids == sorted(pids) and pids == list(range(pids[0], 1100))  # a contiguous tail


def test_concurrent_appends_do_not_interleave(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")

    def writer(base: int) -> None:
        for i in range(200):
            log.append([event(base + i)])

    threads = [threading.Thread(target=writer, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = log.read()
    assert len(result.events) == 800 and result.skipped == 0


def test_unreadable_or_missing_log_reads_empty(tmp_path: Path) -> None:
    assert EventLog(tmp_path / "nope.jsonl").read().events == []
    (tmp_path / "dir.jsonl").mkdir()
    assert EventLog(tmp_path / "dir.jsonl").read().events == []


def test_read_since_reads_only_what_was_appended(tmp_path: Path) -> None:
    """What the History window does every 2 s: no second read of what it has."""
    log = EventLog(tmp_path / "events.jsonl", max_bytes=2000, backups=3)
    log.append([event(i) for i in range(3)])
    first, position, everything = log.read_since(None)
    assert everything and first.events == [event(i) for i in range(3)]
    nothing, position, everything = log.read_since(position)
    assert not everything and nothing.events == [] and nothing.skipped == 0
    log.append([event(3)])
    with log.path.open("ab") as handle:
        handle.write(b'{"time": "half a line being writ')  # another writer, mid-line
    more, position, everything = log.read_since(position)
    assert not everything and more.events == [event(3)]
    with log.path.open("ab") as handle:
        handle.write(b'ten"}\n')
    damaged, position, everything = log.read_since(position)
    assert not everything and damaged.events == [] and damaged.skipped == 1
    # A rotation that keeps every file read so far goes on where it was: nothing twice.
    log.append([event(i) for i in range(4, 12)])
    assert len(log.files()) == 2
    rotated, position, everything = log.read_since(position)
    assert not everything and rotated.events == [event(i) for i in range(4, 12)]
    # One that drops the oldest file starts over: everything again, nothing lost.
    for i in range(12, 60):
        log.append([event(i)])
    assert len(log.files()) == 4
    again, position, everything = log.read_since(position)
    assert everything
    assert again.events == [event(i) for i in range(60)][-len(again.events) :]
    assert again.events[-1] == event(59)


def test_a_kept_position_is_checked_against_the_bytes(tmp_path: Path) -> None:
    """A position kept on disk (the periods cache) goes on only over the very same bytes: an
    edit in place, even of the same length, means reading everything again."""
    log = EventLog(tmp_path / "events.jsonl")
    log.append([event(i) for i in range(5)])
    _first, position, _everything = log.read_since(None)
    log.append([event(5)])
    more, _same, everything = log.read_since(position, verify=True)
    assert not everything and more.events == [event(5)]
    data = log.path.read_bytes()
    log.path.write_bytes(data.replace(b'"pid": 1001,', b'"pid": 1007,', 1))  # same length
    assert log.path.stat().st_size == len(data)
    edited, _position, everything = log.read_since(position, verify=True)
    assert everything and len(edited.events) == 6 and edited.events[1].pid == 1007
    unchecked, _position, everything = log.read_since(position)
    # Without verify only the inode and the size are compared.
    assert not everything and [e.pid for e in unchecked.events] == [1005]
