"""Truthful history: up, down, unhealthy and not watched, from what a real watcher logs on a
real listener, with a clock the test controls (start while up, pause, quit, suspend, clock
jumps), and from old logs that have no watch records."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from trayapp.core import timeline
from trayapp.core.events import Event, iso_time
from trayapp.core.history import EventLog
from trayapp.core.model import Port, Snapshot
from trayapp.core.scanning import Scanner
from trayapp.core.watcher import Watcher
from trayapp.platforms.scanners import create_scanner

T0 = 1_790_000_000.0  # 2026-09-21, any fixed moment will do


class Clock:
    """Wall and monotonic time as the test sets them: sleeping is moving both, suspending
    moves the wall clock only (Linux's monotonic clock stops while suspended), and setting the
    clock moves the wall clock only, too."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0

    def sleep(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def __call__(self) -> float:
        return self.wall


class ClockScanner(Scanner):
    """The real scanner, its snapshots stamped with the test's clock."""

    name = "clock"

    def __init__(self, clock: Clock) -> None:
        self.inner = create_scanner()
        self.clock = clock

    def scan(self, ports: Iterable[Port], *, connections: bool = False) -> Snapshot:
        snapshot = self.inner.scan(ports, connections=connections)
        return dataclasses.replace(snapshot, time=self.clock.wall, monotonic=self.clock.mono)

    def close(self) -> None:
        self.inner.close()


def free_port() -> Port:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return Port(int(s.getsockname()[1]))


@contextmanager
def listening(port: Port) -> Iterator[None]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port.number))
    server.listen()
    try:
        yield
    finally:
        server.close()


def watcher_for(port: Port, clock: Clock, log: EventLog) -> Watcher:
    return Watcher(ClockScanner(clock), [port], log=log, clock=clock, gap_s=5.0)


def keep_watching(watcher: Watcher, clock: Clock, seconds: int) -> None:
    """Poll once a second for `seconds` seconds of the test's clock."""
    for _ in range(seconds):
        clock.sleep(1)
        watcher.poll()


def states(spans: list[timeline.Period]) -> list[tuple[str, float, float | None]]:
    return [(s.state, s.start - T0, None if s.end is None else s.end - T0) for s in spans]


def test_start_while_up_counts_the_time_before_the_first_change(tmp_path: Path) -> None:
    """The issue's new user: watch a port that is up, 8 s, stop the server, stop watching."""
    clock, port = Clock(), free_port()
    log = EventLog(tmp_path / "events.jsonl")
    with listening(port):
        watcher = watcher_for(port, clock, log)
        watcher.poll()
        for _ in range(8):
            clock.sleep(1)
            watcher.poll()
    clock.sleep(1)
    watcher.poll()  # stopped, at 9 s
    clock.sleep(1)
    watcher.set_ports([])  # stop watching, at 10 s
    watcher.scanner.close()
    spans = timeline.periods(log.read().events)[port]
    assert states(spans) == [("up", 0, 9), ("down", 9, 10)]
    assert spans[0].pid == os.getpid() and spans[0].name  # the owner of the period
    clock.sleep(3600)
    totals = timeline.totals(spans, T0 - 60, clock.wall)
    assert (totals.up, totals.down) == (9, 1)
    assert totals.unwatched == 60 + 3600  # before the start and after the end
    assert totals.uptime_ratio == 0.9


def test_pause_resume_and_quit_are_not_counted_as_down(tmp_path: Path) -> None:
    clock, port = Clock(), free_port()
    log = EventLog(tmp_path / "events.jsonl")
    watcher = watcher_for(port, clock, log)
    watcher.poll()  # down from 0
    clock.sleep(10)
    watcher.set_ports([], "paused")  # 10
    clock.sleep(100)
    with listening(port):
        watcher.set_ports([port], "resumed")
        watcher.poll()  # up from 110
        clock.sleep(20)
        watcher.close("quit")  # 130
    watcher.scanner.close()
    events = log.read().events
    assert [(e.kind, e.code) for e in events] == [
        ("watch-began", "start"),
        ("watch-ended", "paused"),
        ("watch-began", "resumed"),
        ("watch-ended", "quit"),
    ]
    spans = timeline.periods(events)[port]
    assert states(spans) == [("down", 0, 10), ("unwatched", 10, 110), ("up", 110, 130)]
    assert timeline.unwatched_since(spans) == T0 + 130
    totals = timeline.totals(spans, T0, T0 + 200)
    assert (totals.up, totals.down, totals.unwatched) == (20, 10, 170)
    table = timeline.rows({port: spans}, T0 + 200)
    assert [row["state"] for row in table] == ["down", "unwatched", "up"]
    assert all(row["end"] is not None for row in table), "nothing watches: nothing is ongoing"
    assert [row["duration_s"] for row in table] == [10, 100, 20]
    assert table[1]["pid"] is None and table[1]["name"] is None  # nobody seen: no owner


def test_a_suspend_is_noticed_and_left_unwatched(tmp_path: Path) -> None:
    clock, port = Clock(), free_port()
    log = EventLog(tmp_path / "events.jsonl")
    watcher = watcher_for(port, clock, log)
    with listening(port):
        watcher.poll()
        clock.sleep(2)
        watcher.poll()  # last poll before the lid closes: 2
        clock.wall += 3600  # suspended an hour: the monotonic clock stood still
        clock.sleep(1)
    changes = watcher.poll()[1]  # woke at 3603, the server gone meanwhile
    watcher.scanner.close()
    assert [e.kind for e in changes] == ["stopped"]  # still notified as a change
    events = log.read().events
    assert [(e.kind, e.code) for e in events] == [
        ("watch-began", "start"),
        ("watch-ended", "suspended"),
        ("watch-began", "woke"),
        ("stopped", None),
    ]
    spans = timeline.periods(events)[port]
    assert states(spans) == [("up", 0, 2), ("unwatched", 2, 3603), ("down", 3603, None)]


def test_a_stopped_process_is_noticed_too(tmp_path: Path) -> None:
    """SIGSTOP (or a hung scan): both clocks move, nothing looked."""
    clock, port = Clock(), free_port()
    log = EventLog(tmp_path / "events.jsonl")
    watcher = watcher_for(port, clock, log)
    watcher.poll()
    clock.sleep(4)
    watcher.poll()  # 4 s apart: within gap_s, watched
    clock.sleep(90)
    watcher.poll()
    watcher.scanner.close()
    spans = timeline.periods(log.read().events)[port]
    assert states(spans) == [("down", 0, 4), ("unwatched", 4, 94), ("down", 94, None)]


def test_clock_jumps_back_and_forward(tmp_path: Path) -> None:
    clock, port = Clock(), free_port()
    log = EventLog(tmp_path / "events.jsonl")
    watcher = watcher_for(port, clock, log)
    watcher.poll()  # down at 0
    clock.sleep(1)
    with listening(port):
        watcher.poll()  # up at 1
        clock.sleep(1)
        clock.wall -= 7200  # set back two hours
        watcher.poll()
        clock.sleep(1)
    watcher.poll()  # stopped, at 3 - 7200
    clock.wall += 7200 * 2  # set forward: no time passed, but the wall clock says hours
    clock.sleep(1)
    watcher.poll()
    watcher.scanner.close()
    events = log.read().events
    spans = timeline.periods(events)[port]
    # Log order wins: the stop (logged later, stamped earlier) still ends the up period.
    assert [s.state for s in spans] == ["down", "up", "down", "unwatched", "down"]
    assert spans[1].duration(T0) == 0  # clamped, never negative
    assert spans[-1].end is None
    # The jump forward is time nobody saw: not counted as down.
    now = clock.wall
    totals = timeline.totals(spans, now - 7200, now)
    assert totals.down < 10 and totals.unwatched > 7190


def test_unhealthy_is_a_state_of_its_own(tmp_path: Path) -> None:
    port = Port(60610)
    events = [
        Event(T0, port, "watch-began", pid=5, name="uvicorn", listening=True, code="start"),
        Event(T0 + 10, port, "unhealthy", code="manager-unreachable", detail="RE Manager gone"),
        Event(T0 + 30, port, "service", code="plan-failed", detail="aborted"),
        Event(T0 + 40, port, "healthy", code="healthy"),
        Event(T0 + 50, port, "unhealthy", code="http-5xx"),
        Event(T0 + 60, port, "stopped", pid=5, name="uvicorn"),  # ends unhealthy too
        Event(T0 + 70, port, "started", pid=6, name="uvicorn"),
        Event(T0 + 80, port, "watch-ended", code="quit"),
    ]
    spans = timeline.periods(events)[port]
    assert states(spans) == [
        ("up", 0, 10),
        ("unhealthy", 10, 40),
        ("up", 40, 50),
        ("unhealthy", 50, 60),
        ("down", 60, 70),
        ("up", 70, 80),
    ]
    assert [s.pid for s in spans] == [5, 5, 5, 5, None, 6]
    totals = timeline.totals(spans, T0, T0 + 80)
    assert (totals.up, totals.unhealthy, totals.down) == (30, 40, 10)
    assert totals.uptime_ratio == 30 / 80


def test_a_restart_on_the_same_owner_keeps_its_health() -> None:
    """The health checks remember a service's health per owner across restarts and record
    only a change, so after a restart (or a suspend) a service still unhealthy writes no new
    record: the history must not call it "up" until its health changes."""
    port = Port(60610)

    def began(at: float, pid: int, watcher: str = "tray") -> Event:
        return Event(at, port, "watch-began", pid=pid, name="uvicorn", listening=True,
                     code="start", watcher=watcher)  # fmt: skip

    def ended(at: float, watcher: str = "tray") -> Event:
        return Event(at, port, "watch-ended", code="quit", watcher=watcher)

    unhealthy = Event(T0 + 10, port, "unhealthy", code="manager-unreachable")
    same_owner = [began(T0, 5), unhealthy, ended(T0 + 20), began(T0 + 30, 5), ended(T0 + 40)]
    assert states(timeline.periods(same_owner)[port]) == [
        ("up", 0, 10),
        ("unhealthy", 10, 20),
        ("unwatched", 20, 30),
        ("unhealthy", 30, 40),
    ]
    # Healthy again at the first check after the restart: recorded, and so it reads.
    back = [*same_owner[:4], Event(T0 + 32, port, "healthy", code="healthy"), ended(T0 + 40)]
    assert states(timeline.periods(back)[port])[-2:] == [("unhealthy", 30, 32), ("up", 32, 40)]
    # Another owner is another service: its health is checked afresh (a first look that
    # finds it unhealthy is recorded; one that finds it healthy is not).
    other = [began(T0, 5), unhealthy, ended(T0 + 20), began(T0 + 30, 6), ended(T0 + 40)]
    assert states(timeline.periods(other)[port])[-1] == ("up", 30, 40)
    # Stopped before the restart: nothing carried.
    stopped = Event(T0 + 15, port, "stopped", pid=5, name="uvicorn")
    gone = [began(T0, 5), unhealthy, stopped, ended(T0 + 20), began(T0 + 30, 5), ended(T0 + 40)]
    assert states(timeline.periods(gone)[port])[-1] == ("up", 30, 40)
    # A second watcher beginning while the tray watches does not make it healthy either.
    second = [began(T0, 5), unhealthy, began(T0 + 30, 5, "watch-9"), ended(T0 + 40, "watch-9"),
              ended(T0 + 50)]  # fmt: skip
    assert states(timeline.periods(second)[port]) == [("up", 0, 10), ("unhealthy", 10, 50)]


def test_two_watchers_one_ending_leaves_the_port_watched() -> None:
    """The tray and a `portwatch watch --log` share the log: one quitting is not the end."""
    port = Port(8000)
    events = [
        Event(T0, port, "watch-began", listening=False, code="start", watcher="tray"),
        Event(T0 + 5, port, "watch-began", listening=False, code="start", watcher="watch-9"),
        Event(T0 + 9, port, "watch-ended", code="quit", watcher="watch-9"),
        Event(T0 + 20, port, "watch-ended", code="quit", watcher="tray"),
    ]
    assert states(timeline.periods(events)[port]) == [("down", 0, 20)]


def test_old_logs_without_watch_records_still_load(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    old = [
        {"time": iso_time(T0), "port": 8080, "protocol": "tcp", "event": "started", "pid": 7},
        {"time": iso_time(T0 + 60), "port": 8080, "protocol": "tcp", "event": "stopped"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in old))
    events = EventLog(path).read().events
    spans = timeline.periods(events)[Port(8080)]
    assert states(spans) == [("up", 0, 60), ("down", 60, None)]
    # The same port then watched by this version: the guessed watch ends with the first
    # real record, so a quit really ends it.
    events += [
        Event(T0 + 100, Port(8080), "watch-began", listening=False, code="start", watcher="tray"),
        Event(T0 + 200, Port(8080), "watch-ended", code="quit", watcher="tray"),
    ]
    spans = timeline.periods(events)[Port(8080)]
    assert states(spans) == [("up", 0, 60), ("down", 60, 200)]


def test_events_round_trip_through_the_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    began = Event(T0, Port(1234), "watch-began", pid=3, name="x", listening=True, code="added")
    ended = Event(T0 + 1, Port(1234), "watch-ended", code="removed", watcher="watch-77")
    log.append([dataclasses.replace(began, watcher="tray"), ended])
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert lines[0]["event"] == "watch-began" and lines[0]["reason"] == "added"
    assert lines[0]["listening"] is True and lines[0]["watcher"] == "tray"
    assert lines[1] == {**lines[1], "event": "watch-ended", "reason": "removed"}
    back = log.read().events
    assert back == [dataclasses.replace(began, watcher="tray", time=back[0].time), ended]


def test_the_strip_keeps_short_outages_visible() -> None:
    port = Port(9000)
    events = [
        Event(T0, port, "watch-began", listening=True, code="start"),
        Event(T0 + 3000, port, "stopped"),
        Event(T0 + 3001, port, "started"),
        Event(T0 + 3400, port, "unhealthy", code="http-5xx"),
        Event(T0 + 3500, port, "watch-ended", code="quit"),
    ]
    spans = timeline.periods(events)[port]
    cells = timeline.cells(spans, T0 - 100, T0 + 3600, 37)  # 100 s per cell
    assert cells[0] == "unwatched" and cells[1] == "up"
    assert cells[31] == "down", "a one-second outage must show in its cell"
    assert cells[35] == "unhealthy" and cells[36] == "unwatched"
    assert timeline.strip_text(cells[:3]) == "·██"
    assert timeline.strip_text(cells[30:33], ascii_only=True) == "#_#"
    segs = timeline.segments(spans, T0 - 100, T0 + 3600)
    assert segs[0].state == "unwatched" and segs[0].period is None
    assert sum(s.end - s.start for s in segs) == 3700
    assert [s.state for s in segs] == ["unwatched", "up", "down", "up", "unhealthy", "unwatched"]


def test_history_timeline_and_json_on_the_command_line(
    tmp_path: Path, portwatch_home: Path
) -> None:
    """A log written by a real watcher, read by `portwatch history` in a child process."""
    import time

    clock, port = Clock(), free_port()
    clock.wall = time.time() - 1800  # half an hour ago
    log = EventLog(portwatch_home / "data" / "events.jsonl")
    watcher = watcher_for(port, clock, log)
    with listening(port):
        watcher.poll()
        keep_watching(watcher, clock, 599)
    keep_watching(watcher, clock, 1)  # down at -20 min
    keep_watching(watcher, clock, 600)
    watcher.close("quit")  # at -10 min
    watcher.scanner.close()
    env = {**os.environ, "COLUMNS": "74", "PYTHONIOENCODING": "utf-8"}
    run = [sys.executable, "-m", "trayapp", "history", str(port.number)]
    out = subprocess.run([*run, "--json"], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["state"], r["duration_s"]) for r in rows] == [("up", 600), ("down", 600)]
    assert rows[-1]["end"] is not None and rows[0]["pid"] == os.getpid()
    assert set(rows[0]) >= {"state", "start", "end", "duration_s", "pid", "name", "user"}
    out = subprocess.run(
        [*run, "--timeline", "--since", "1h"], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    strip_line = next(line for line in lines if line.startswith(str(port)))
    strip = strip_line.split()[1]
    assert len(strip) == 60  # the terminal's 74 columns less the label and the share
    # An hour in 60 cells: 30 not watched, 10 up, 10 down, 10 not watched (a cell may blur).
    assert strip.startswith("·" * 29) and strip.endswith("·" * 9)
    assert strip.count("█") in (10, 11) and strip.count("▁") in (10, 11)
    assert "50.0% up" in strip_line
    assert "█ up" in lines[-1] and "· not watched" in lines[-1]
    human = subprocess.run(run, capture_output=True, text=True, env=env, timeout=30)
    assert "up 10 min 0 s, down 10 min 0 s" in human.stdout
    assert "not watched since" in human.stdout
