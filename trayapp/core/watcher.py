"""Turns successive snapshots into change events. Qt-free: the tray runs it on a worker
thread, the command line in its own loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from trayapp.core import alive
from trayapp.core.events import Event, EventKind, WatchKind
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


LATE_S = 5.0  # a poll this much later than due means the app was stopped or the machine slept


def late_after(interval: float) -> float:
    """How long between two polls means nobody was watching in between."""
    return max(LATE_S, 3 * interval)


def _event(kind: EventKind | WatchKind, state: PortState, when: float) -> Event:
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
        watcher_id: str = "tray",
        gap_s: float = LATE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scanner = scanner
        self._ports = list(dict.fromkeys(ports))
        self.history = HistoryWriter(log) if isinstance(log, EventLog) else log
        self.last: Snapshot | None = None
        self.last_error: str | None = None
        # Who writes the watch events, so that a `portwatch watch --log` ending does not end
        # the tray's watch of the same port in the history.
        self.watcher_id = watcher_id
        self.gap_s = gap_s  # polls further apart than this leave the time between unwatched
        self.clock = clock
        # Ports whose "watch-began" is written with the next scan (that sees their state).
        self._beginning: dict[Port, str] = dict.fromkeys(self._ports, "start")
        self._watching: set[Port] = set()
        # Where this watcher says it is alive, and whether dead watchers' marks were looked at.
        self._mark = (
            alive.AliveMark(alive.marks_folder(self.history.log.path), watcher_id)
            if self.history is not None
            else None
        )
        self._looked_for_dead = False

    @property
    def ports(self) -> list[Port]:
        return list(self._ports)

    @property
    def history_problem(self) -> str | None:
        """Why the events log cannot be written right now (its events wait in memory)."""
        return self.history.problem if self.history is not None else None

    def set_ports(self, ports: Iterable[Port], reason: str = "") -> None:
        """Watch these ports from now on. `reason` names why ports come or go ("paused",
        "resumed"); without one they were added or removed."""
        new = list(dict.fromkeys(ports))
        gone = [port for port in self._ports if port not in new]
        self._end(gone, reason or "removed", self.clock())
        for port in new:
            if port not in self._ports or port not in self._watching:
                self._beginning.setdefault(port, reason or "added")
        for port in gone:
            self._beginning.pop(port, None)
        self._ports = new

    def close(self, reason: str = "quit") -> None:
        """Watching ends: say so in the history (a crash says nothing; see timeline)."""
        self._end(list(self._ports), reason, self.clock())
        self._beginning = dict.fromkeys(self._ports, "start")

    def _end(self, ports: list[Port], reason: str, when: float) -> None:
        ended = [
            Event(when, port, "watch-ended", code=reason, watcher=self.watcher_id)
            for port in ports
            if port in self._watching
        ]
        self._watching.difference_update(ports)
        if ended and self.history is not None:
            self.history.write(ended)
            self._mark_alive(when, wrote=True)

    def _mark_alive(self, when: float, wrote: bool = False) -> None:
        if self._mark is None:
            return
        self._mark.stale_after = max(alive.STALE_AFTER_S, 3 * self.gap_s)
        self._mark.watching(sorted(self._watching), when)
        if wrote:
            self._mark.touch(when, force=True)  # no record of ours is later than the mark

    def _dead_watchers_ends(self, now: float) -> list[Event]:
        """Once, before our own first record: the watches of watchers that died unannounced
        (their marks), ended when they were last known alive."""
        if self._mark is None or self._looked_for_dead:
            return []
        self._looked_for_dead = True
        folder = self._mark.path.parent
        return [
            Event(mark.alive, port, "watch-ended", code="lost", watcher=mark.watcher)
            for mark in alive.dead_marks(folder, self.watcher_id, now)
            if alive.claim(mark)
            for port in mark.ports
        ]

    def _watch_events(self, snapshot: Snapshot) -> list[Event]:
        """The "watch-ended"/"watch-began" pairs a gap between polls calls for, and the
        "watch-began" of ports that start being watched with this scan."""
        events: list[Event] = []
        last = self.last
        if last is not None and self._watching:
            gap = max(snapshot.time - last.time, snapshot.monotonic - last.monotonic)
            if gap > self.gap_s:
                # Asleep or stopped: nothing was seen since the last poll.
                for port in self._ports:
                    if port in self._watching:
                        events.append(
                            Event(
                                last.time,
                                port,
                                "watch-ended",
                                code="suspended",
                                watcher=self.watcher_id,
                            )
                        )
                        self._beginning.setdefault(port, "woke")
                self._watching.clear()
        for state in snapshot.states:
            reason = self._beginning.pop(state.port, None)
            if reason is None:
                continue
            began = replace(
                _event("watch-began", state, snapshot.time),
                code=reason,
                watcher=self.watcher_id,
                listening=state.listening,
            )
            events.append(began)
            self._watching.add(state.port)
        return events

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
        # A port watched afresh (added, resumed) has no "before" to differ from; one that
        # woke from a suspend has, and its change is news.
        fresh = {port for port, reason in self._beginning.items() if reason != "woke"}
        watch_events = [*self._dead_watchers_ends(snapshot.time), *self._watch_events(snapshot)]
        events = [e for e in diff(self.last, snapshot) if e.port not in fresh]
        self.last = snapshot
        if self.history is not None:
            # A full disk must neither stop the watch nor lose the change: it waits in memory.
            if events or watch_events:
                self.history.write([*watch_events, *events])
            else:
                self.history.retry()
            self._mark_alive(snapshot.time, wrote=bool(events or watch_events))
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
        self.gap_s = late_after(interval)
        next_at = time.monotonic()
        while not stop.is_set():
            on_poll(*self.poll())
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # we overslept (suspend, stall): don't try to catch up
                next_at = now + interval
            stop.wait(next_at - now)
