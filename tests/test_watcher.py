"""Change detection: snapshots in, events out; and the watch loop's timing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from tests.support import free_port
from trayapp.core.events import Event
from trayapp.core.history import EventLog
from trayapp.core.model import Listener, Owner, Port, PortState, Snapshot
from trayapp.core.scanning import ScanError, Scanner
from trayapp.core.watcher import Watcher, diff, primary_owner
from trayapp.platforms.scanners import create_scanner

P = Port(60610)


def owner(pid: int, started: float = 100.0, name: str = "srv") -> Owner:
    return Owner(pid=pid, name=name, create_time=started, username="alice")


def snap(*owners: Owner, hidden_uid: int | None = None, when: float = 1.0) -> Snapshot:
    listeners: tuple[Listener, ...] = ()
    if owners:
        listeners = (Listener(P.number, "tcp", "127.0.0.1", "ipv4", owners=tuple(owners)),)
    elif hidden_uid is not None:
        listeners = (Listener(P.number, "tcp", "0.0.0.0", "ipv4", uid=hidden_uid, username="bob"),)
    return Snapshot((PortState(P, listeners),), time=when)


def kinds(events: Iterable[Event]) -> list[str]:
    return [e.kind for e in events]


def test_first_snapshot_is_not_a_change() -> None:
    assert diff(None, snap(owner(1))) == []


def test_started_and_stopped_carry_the_owner() -> None:
    [started] = diff(snap(), snap(owner(42, name="uvicorn"), when=5.0))
    assert (started.kind, started.pid, started.name, started.time) == (
        "started",
        42,
        "uvicorn",
        5.0,
    )
    assert started.addresses == ("127.0.0.1",)
    [stopped] = diff(snap(owner(42, name="uvicorn")), snap())
    assert (stopped.kind, stopped.pid, stopped.name) == ("stopped", 42, "uvicorn")


def test_owner_change_and_pid_reuse() -> None:
    assert kinds(diff(snap(owner(1)), snap(owner(2)))) == ["owner-changed"]
    # Same pid, new process (pid reused after a restart): still a new owner.
    assert kinds(diff(snap(owner(1, 100.0)), snap(owner(1, 200.0)))) == ["owner-changed"]


def test_worker_churn_is_not_an_owner_change() -> None:
    master = owner(1, 10.0)
    before = snap(master, owner(2, 20.0), owner(3, 21.0))
    after = snap(master, owner(4, 30.0))
    assert diff(before, after) == []
    assert primary_owner(after.states[0]) == master


def test_hidden_owner_events() -> None:
    [started] = diff(snap(), snap(hidden_uid=1001))
    assert started.kind == "started" and started.pid is None and started.username == "bob"
    assert diff(snap(hidden_uid=1001), snap(hidden_uid=1001)) == []
    assert kinds(diff(snap(hidden_uid=1001), snap(hidden_uid=1002))) == ["owner-changed"]


def test_new_ports_are_first_sightings() -> None:
    other = Port(8080)
    before = snap(owner(1))
    after = Snapshot((*snap(owner(1)).states, PortState(other, before.states[0].listeners)))
    assert diff(before, after) == []


class FlakyScanner(Scanner):
    """A scanner whose backend breaks on demand: the watcher must keep the last state."""

    name = "flaky"

    def __init__(self, results: list[Snapshot | None]) -> None:
        self.results = results

    def scan(self, ports: Iterable[Port], *, connections: bool = False) -> Snapshot:
        result = self.results.pop(0)
        if result is None:
            raise ScanError("backend broke")
        return result


def test_a_failed_scan_is_not_a_stop(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    watcher = Watcher(FlakyScanner([snap(owner(1)), None, snap(owner(1))]), [P], log=log)
    assert watcher.poll()[1] == []
    snapshot, events = watcher.poll()
    assert snapshot is None and events == [] and watcher.last_error == "backend broke"
    assert watcher.poll()[1] == []
    assert watcher.last_error is None
    # Only the record that watching began: no stop, no start.
    assert [e.kind for e in log.read().events] == ["watch-began"]


def test_run_uses_monotonic_time_and_stops() -> None:
    watcher = Watcher(FlakyScanner([snap()] * 1000), [P])
    stop = threading.Event()
    polls: list[float] = []

    def on_poll(_s: Snapshot | None, _e: list[Event]) -> None:
        polls.append(time.monotonic())
        if len(polls) == 5:
            stop.set()

    started = time.monotonic()
    watcher.run(0.02, on_poll, stop)
    assert len(polls) == 5
    assert time.monotonic() - started < 2.0


def test_real_listener_start_stop_is_logged(tmp_path: Path) -> None:
    port = Port(free_port())
    log = EventLog(tmp_path / "events.jsonl")
    watcher = Watcher(create_scanner(), [port], log=log)
    try:
        assert watcher.poll()[1] == []
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port.number))
        server.listen()
        try:
            [started] = watcher.poll()[1]
        finally:
            server.close()
        [stopped] = watcher.poll()[1]
    finally:
        watcher.scanner.close()
    assert (started.kind, stopped.kind) == ("started", "stopped")
    assert started.pid is not None and stopped.pid == started.pid
    assert [e.kind for e in log.read().events] == ["watch-began", "started", "stopped"]
