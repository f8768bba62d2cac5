"""The periods cache beside the log: a reader that finds it parses only what came after, gives
exactly the periods a full read gives, and never trusts it over a log that changed under it
(edited in place, truncated, rotated past it) or a damaged cache. And the History window with
100,000 events filled within 200 ms (real Qt, offscreen; benchmarks/history_bench.py)."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path
from types import ModuleType

import pytest
from PySide6.QtWidgets import QApplication

from trayapp.core import period_cache, timeline
from trayapp.core.events import Event
from trayapp.core.history import EventLog
from trayapp.core.model import Port

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_790_000_000.0
PORTS = [Port(60610), Port(6379), Port(53, "udp")]


def history(count: int, first: int = 0) -> list[Event]:
    """Watching, flapping, health news, a quit and a restart: every kind of record."""
    events = []
    for i in range(first, first + count):
        port = PORTS[i % len(PORTS)]
        when = T0 + i * 10
        kind = ("watch-began", "unhealthy", "healthy", "stopped", "started", "watch-ended")[
            (i // len(PORTS)) % 6
        ]
        if kind == "watch-began":
            events.append(Event(when, port, kind, pid=i, name="srv", listening=True, code="start"))
        elif kind == "watch-ended":
            events.append(Event(when, port, kind, code="quit", watcher=None))
        elif kind in ("unhealthy", "healthy"):
            events.append(Event(when, port, kind, code="http-5xx", detail="HTTP 503"))
        else:
            events.append(Event(when, port, kind, pid=i, name=f"srv{i % 7}", username="alice"))
    return events


def full_read(log: EventLog) -> dict[Port, list[timeline.Period]]:
    return timeline.periods(log.read().events)


def cached_read(
    log: EventLog,
) -> tuple[dict[Port, list[timeline.Period]], period_cache.PeriodReader]:
    reader = period_cache.PeriodReader(log)
    reader.read_more()
    return reader.builder.periods(), reader


def test_a_reader_with_the_cache_parses_only_what_is_new_and_agrees(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", max_bytes=20_000, backups=3)
    log.append(history(120))
    first, reader = cached_read(log)
    assert reader.parsed == 120 and first == full_read(log)
    assert period_cache.cache_file(log.path).exists()
    log.append(history(7, first=120))
    second, reader = cached_read(log)
    assert reader.parsed == 7  # the rest came from the cache
    assert second == full_read(log)
    # Appended into a new file by a rotation that dropped nothing: still only what is new.
    files, added = len(log.files()), 127
    while len(log.files()) == files:
        log.append(history(1, first=added))
        added += 1
    third, reader = cached_read(log)
    # (The 7 were not written to the cache: it is written again after 1,000 new events.)
    assert reader.parsed == added - 120 and third == full_read(log)


def test_the_cache_is_not_trusted_over_a_changed_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append(history(60))
    before, _reader = cached_read(log)
    data = log.path.read_bytes()
    # Edited in place, same length: another owner's name.
    log.path.write_bytes(data.replace(b'"name": "srv4"', b'"name": "srvX"'))
    edited, reader = cached_read(log)
    assert reader.parsed == 60
    assert edited == full_read(log) != before
    assert any(span.name == "srvX" for spans in edited.values() for span in spans)
    # Truncated: the periods of what is left, not of the cache.
    log.path.write_bytes(data[: data.index(b"\n", len(data) // 2) + 1])
    truncated, reader = cached_read(log)
    assert reader.parsed == len(log.read().events) < 60 and truncated == full_read(log)
    # Replaced by another file (a new inode).
    log.path.unlink()
    log.append(history(5, first=500))
    replaced, reader = cached_read(log)
    assert reader.parsed == 5 and replaced == full_read(log)


def test_a_rotation_that_drops_the_oldest_file_reads_everything_again(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", max_bytes=3000, backups=1)
    log.append(history(10))
    cached_read(log)
    for i in range(10, 60):
        log.append(history(1, first=i))
    periods, reader = cached_read(log)
    assert reader.parsed == len(log.read().events)
    assert periods == full_read(log)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # cut short
        lambda data: b"garbage\n" + data,  # not ours
        lambda data: data + b"\x00" * 8,  # too long
        lambda data: data.replace(b'"skipped": 0', b'"skipped": "x"'),  # a wrong field
        lambda data: data.replace(  # another version's
            f"portwatch-periods {period_cache.VERSION}".encode(), b"portwatch-periods 99"
        ),
    ],
)
def test_a_damaged_cache_is_read_again_and_rewritten(tmp_path: Path, damage: object) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append(history(40))
    cached_read(log)
    cache = period_cache.cache_file(log.path)
    cache.write_bytes(damage(cache.read_bytes()))  # type: ignore[operator]
    periods, reader = cached_read(log)
    assert reader.parsed == 40 and periods == full_read(log)
    _again, reader = cached_read(log)
    assert reader.parsed == 0  # written anew


def test_numbers_that_name_no_text_are_damage(tmp_path: Path) -> None:
    """A cache whose columns point past its texts would fail when a row is shown: refused."""
    log = EventLog(tmp_path / "events.jsonl")
    log.append(history(12))
    _periods, reader = cached_read(log)
    table = next(iter(reader.builder.tables.values()))
    table.columns["names"][0] = 10_000
    period_cache.save(reader.path, reader.builder, reader.position or (), 0)
    assert period_cache.load(reader.path) is None


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "portwatch_history_bench", ROOT / "benchmarks" / "history_bench.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(300)
def test_the_history_window_with_100000_events_fills_within_200_ms(
    qapp: QApplication, tmp_path: Path
) -> None:
    from tests.ui_support import make_controller

    history_bench = bench()
    log = EventLog(tmp_path / "events.jsonl", max_bytes=8 * 1024 * 1024, backups=3)
    history_bench.write_log(log, 100_000)
    controller = make_controller(tmp_path, [], log=log)
    history_bench.one_run(qapp, controller, log, cached=False)  # writes the cache
    runs = [history_bench.one_run(qapp, controller, log, cached=True) for _ in range(3)]
    filled = statistics.median(run[1] for run in runs)
    appended = statistics.median(run[2] for run in runs)
    assert filled <= 0.200, f"filled in {filled * 1000:.0f} ms"
    assert appended <= 0.100, f"an appended event shown in {appended * 1000:.0f} ms"


def test_what_a_column_cannot_hold_is_no_crash(tmp_path: Path) -> None:
    """A log line with a pid beyond 64 bits (damage, or a hand edit): its period has no pid,
    and the command line shows the history instead of a traceback."""
    log = EventLog(tmp_path / "events.jsonl")
    log.append([Event(T0, PORTS[0], "started", pid=10**30, name="big")])
    [span] = full_read(log)[PORTS[0]]
    assert (span.state, span.pid, span.name) == ("up", None, "big")
    periods, _reader = cached_read(log)
    assert periods == full_read(log)
