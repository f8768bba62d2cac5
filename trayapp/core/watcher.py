"""Turns successive snapshots into change events. Qt-free: the tray runs it on a worker
thread, the command line in its own loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from trayapp.core.events import Event, EventKind
from trayapp.core.history import EventLog
from trayapp.core.model import Owner, Port, PortState, Snapshot
from trayapp.core.scanning import ScanError, Scanner, timed_scan
from trayapp.core.writeback import HistoryWriter


def primary_owner(state: PortState) -> Owner | None:
    """The process that stands for the service: the oldest owner.

    A prefork server (gunicorn, uvicorn --workers) shares its socket with workers that come
    and go; comparing the oldest process keeps worker churn from looking like a new owner.
    """
    owners = state.owners
    if not owners:
        return None
    return min(owners, key=lambda o: (o.create_time or float("inf"), o.pid))


def owner_identity(state: PortState) -> tuple[object, ...]:
    """Who holds the port, as far as we can see: a new identity means a new service."""
    owner = primary_owner(state)
    if owner is not None:
        return ("pid", owner.pid, owner.create_time)
    return ("hidden", tuple(sorted({str(listener.uid) for listener in state.listeners})))


def _event(kind: EventKind, state: PortState, when: float) -> Event:
    owner = primary_owner(state)
    username = owner.username if owner else None
    if username is None and state.listeners:
        username = state.listeners[0].username
    return Event(
        time=when,
        port=state.port,
        kind=kind,
        pid=owner.pid if owner else None,
        name=owner.full_name if owner else None,
        username=username,
        addresses=tuple(dict.fromkeys(listener.address for listener in state.listeners)),
    )


def diff(previous: Snapshot | None, current: Snapshot) -> list[Event]:
    """Events that lead from one snapshot to the next. Ports new in `current` are a first
    sighting, not a change, so they produce nothing."""
    if previous is None:
        return []
    before = {state.port: state for state in previous.states}
    events: list[Event] = []
    for now in current.states:
        was = before.get(now.port)
        if was is None:
            continue
        if now.listening and not was.listening:
            events.append(_event("started", now, current.time))
        elif was.listening and not now.listening:
            events.append(_event("stopped", was, current.time))
        elif now.listening and owner_identity(now) != owner_identity(was):
            events.append(_event("owner-changed", now, current.time))
    return events


def carry_owners(previous: Snapshot | None, current: Snapshot) -> Snapshot:
    """Keep the known owners of a socket whose owner the scan could not find this time.

    The kernel lists a socket, then its process closes it before /proc is read: for one poll
    the socket seems ownerless, which would read as an owner change and then a stop naming
    no one. A socket (same inode) cannot change hands without some process holding it, so an
    empty owner list on a known inode means "closing", not "someone else".
    """
    if previous is None:
        return current
    known = {
        listener.inode: listener.owners
        for state in previous.states
        for listener in state.listeners
        if listener.inode and listener.owners
    }
    if not known:
        return current
    states = []
    changed = False
    for state in current.states:
        listeners = []
        for listener in state.listeners:
            owners = known.get(listener.inode) if listener.inode and not listener.owners else None
            if owners:
                listener = replace(listener, owners=owners)
                changed = True
            listeners.append(listener)
        states.append(replace(state, listeners=tuple(listeners)))
    return replace(current, states=tuple(states)) if changed else current


class Watcher:
    """Scans the watched ports and remembers the last good snapshot.

    A scan that fails as a whole (ScanError) keeps the previous state: a broken backend must
    never make a busy port look free, nor produce a stopped/started pair.
    """

    def __init__(
        self,
        scanner: Scanner,
        ports: Iterable[Port],
        *,
        log: EventLog | HistoryWriter | None = None,
    ) -> None:
        self.scanner = scanner
        self._ports = list(dict.fromkeys(ports))
        self.history = HistoryWriter(log) if isinstance(log, EventLog) else log
        self.last: Snapshot | None = None
        self.last_error: str | None = None

    @property
    def ports(self) -> list[Port]:
        return list(self._ports)

    @property
    def history_problem(self) -> str | None:
        """Why the events log cannot be written right now (its events wait in memory)."""
        return self.history.problem if self.history is not None else None

    def set_ports(self, ports: Iterable[Port]) -> None:
        self._ports = list(dict.fromkeys(ports))

    def poll(self) -> tuple[Snapshot | None, list[Event]]:
        if not self._ports:
            # Nothing to look at: no OS call (psutil's backend would list every socket).
            self.last, self.last_error = Snapshot(()), None
            return self.last, []
        try:
            snapshot = timed_scan(self.scanner, self._ports)
        except ScanError as exc:
            self.last_error = str(exc)
            return None, []
        self.last_error = None
        snapshot = carry_owners(self.last, snapshot)
        events = diff(self.last, snapshot)
        self.last = snapshot
        if self.history is not None:
            # A full disk must neither stop the watch nor lose the change: it waits in memory.
            if events:
                self.history.write(events)
            else:
                self.history.retry()
        return snapshot, events

    def run(
        self,
        interval: float,
        on_poll: Callable[[Snapshot | None, list[Event]], None],
        stop: threading.Event,
    ) -> None:
        """Poll every `interval` seconds until `stop` is set.

        Scheduling uses the monotonic clock, so a wall-clock jump neither stalls the loop nor
        makes it spin; after a suspend it simply polls once and carries on.
        """
        next_at = time.monotonic()
        while not stop.is_set():
            on_poll(*self.poll())
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # we overslept (suspend, stall): don't try to catch up
                next_at = now + interval
            stop.wait(next_at - now)
