"""A watcher killed without a word (SIGKILL, a crash, power loss) leaves its last period
neither running on nor counted as down: its mark says until when it was alive. The real app
and `portwatch watch` as child processes, killed for real; a controlled clock where waiting for
a mark to go stale would take minutes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.test_timeline import Clock, ClockScanner, free_port, listening
from tests.ui_support import start_server
from trayapp.core import alive, timeline
from trayapp.core.events import iso_time
from trayapp.core.history import EventLog
from trayapp.core.watcher import Watcher

pytestmark = pytest.mark.posix("kills its children with SIGKILL")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout} s")


def logged(home: Path) -> list[dict[str, Any]]:
    path = home / "data" / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def history_json(home: Path, port: int) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "trayapp", "history", str(port), "--json"],
        env={**os.environ, "PORTWATCH_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def start_app(home: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PORTWATCH_HOME": str(home),
        "QT_QPA_PLATFORM": "offscreen",
        "PORTWATCH_TRAY_WAIT": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "trayapp"], env=env, stderr=subprocess.PIPE, text=True
    )


def test_the_app_killed_and_started_again_leaves_the_gap_unwatched(portwatch_home: Path) -> None:
    port = free_port().number
    config = portwatch_home / "config" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"ports": [{"port": port}], "interval": 0.5}))
    mark = portwatch_home / "data" / alive.FOLDER / "tray.json"
    server = start_server(port)
    assert server is not None
    app = start_app(portwatch_home)
    try:
        wait_for(
            "watch-began", lambda: any(e["event"] == "watch-began" for e in logged(portwatch_home))
        )
        wait_for("the mark", mark.exists)  # written right after the record
        server.terminate()
        server.wait(10)
        wait_for("stopped", lambda: any(e["event"] == "stopped" for e in logged(portwatch_home)))
        time.sleep(1.0)
        app.kill()  # SIGKILL: no watch-ended
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        app.kill()
        app.communicate(timeout=10)
    assert app.returncode == -signal.SIGKILL
    killed = time.time()
    assert mark.exists()  # what the dead app left behind
    last_alive = mark.stat().st_mtime
    time.sleep(1.5)
    again = start_app(portwatch_home)
    try:
        wait_for(
            "a second watch-began",
            lambda: sum(e["event"] == "watch-began" for e in logged(portwatch_home)) == 2,
        )
    finally:
        again.send_signal(signal.SIGTERM)
        _out, err = again.communicate(timeout=15)
    assert again.returncode == 0, err
    assert not mark.exists()  # a clean quit takes its mark away

    rows = history_json(portwatch_home, port)
    assert [r["state"] for r in rows] == ["up", "down", "unwatched", "down"], rows
    up, down, gap, after = rows
    assert up["end"] == down["start"]
    # Watched until the last sign of life (the "stopped" it wrote), then not watched until
    # the app ran again: never "down" for the seconds nobody looked.
    assert down["end"] == iso_time(last_alive) == gap["start"]
    assert gap["event"] == "watch-ended" and gap["reason"] == "lost"
    assert gap["end"] == after["start"] and gap["duration_s"] >= 2.5
    assert iso_time(killed) < after["start"]
    assert after["end"] is not None  # it quit cleanly: watch-ended, reason quit
    assert "Traceback" not in err


def test_a_killed_watch_is_not_watching_once_its_mark_is_stale(portwatch_home: Path) -> None:
    """`portwatch watch --log` killed: while its mark is fresh nobody can tell it from a slow
    one; once stale, readers end its watch at the mark, and the next watcher to start writes
    that end into the log."""
    port = free_port()
    events_file = portwatch_home / "data" / "events.jsonl"
    with listening(port):
        child = subprocess.Popen(
            [sys.executable, "-m", "trayapp", "watch", str(port.number), "--log"],
            env={**os.environ, "PORTWATCH_HOME": str(portwatch_home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for("watch-began", lambda: logged(portwatch_home))
            mark_path = portwatch_home / "data" / alive.FOLDER / f"watch-{child.pid}.json"
            wait_for("the mark", mark_path.exists)
        finally:
            child.kill()
            child.wait(10)
    last_alive = mark_path.stat().st_mtime
    events = EventLog(events_file).read().events
    assert [e.kind for e in events] == ["watch-began"]

    # Now: the mark is fresh, the watch may be alive; the period goes on.
    now = time.time()
    spans = timeline.periods(events, alive.dead_watchers(events_file, now))[port]
    assert [(s.state, s.end) for s in spans] == [("up", None)]
    # Minutes later (the test's clock), nothing kept the mark fresh: watched until then.
    later = last_alive + alive.STALE_AFTER_S + 1
    spans = timeline.periods(events, alive.dead_watchers(events_file, later))[port]
    assert [(s.state, s.end) for s in spans] == [("up", last_alive)]
    assert timeline.unwatched_since(spans) == last_alive

    # A watcher that starts then ends the dead one's watch in the log, at the mark's time.
    clock = Clock()
    clock.wall = later
    log = EventLog(events_file)
    watcher = Watcher(ClockScanner(clock), [free_port()], log=log, clock=clock, watcher_id="w2")
    watcher.poll()
    watcher.close()
    watcher.scanner.close()
    lost = [e for e in log.read().events if e.code == "lost"]
    # (The log keeps times to the millisecond.)
    assert [(e.port, iso_time(e.time), e.watcher) for e in lost] == [
        (port, iso_time(last_alive), f"watch-{child.pid}")
    ]
    assert not mark_path.exists()
    spans = timeline.periods(log.read().events)[port]
    assert [(s.state, s.end) for s in spans] == [("up", lost[0].time)]


def test_the_mark_is_touched_at_most_once_a_minute(tmp_path: Path) -> None:
    port = free_port()
    clock = Clock()
    log = EventLog(tmp_path / "events.jsonl")
    watcher = Watcher(ClockScanner(clock), [port], log=log, clock=clock, watcher_id="w")
    mark = tmp_path / alive.FOLDER / "w.json"
    touched = []
    for _ in range(150):  # 150 s of polls, once a second, nothing changing
        watcher.poll()
        touched.append(mark.stat().st_mtime)
        clock.sleep(1)
    # The first poll (watch-began written), then every 60 s.
    assert sorted(set(touched)) == [clock.wall - 150, clock.wall - 90, clock.wall - 30]
    watcher.set_ports([], "paused")
    watcher.scanner.close()
    assert not mark.exists()  # nothing watched: nothing to vouch for


def test_a_watch_ended_by_sigterm_says_so(portwatch_home: Path) -> None:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "watch", str(port.number), "--log"],
        env={**os.environ, "PORTWATCH_HOME": str(portwatch_home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for("watch-began", lambda: logged(portwatch_home))
    finally:
        child.terminate()
        _out, err = child.communicate(timeout=15)
    assert child.returncode == 0, err
    assert [(e["event"], e["reason"]) for e in logged(portwatch_home)] == [
        ("watch-began", "start"),
        ("watch-ended", "quit"),
    ]
    assert not (portwatch_home / "data" / alive.FOLDER / f"watch-{child.pid}.json").exists()
