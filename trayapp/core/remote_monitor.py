"""Remote entries checked on their own schedule, each on its own thread.

One thread per entry, so a dead host (2 s per connect, more for a slow health check) delays
only its own next check: never local polling, the GUI, or another entry; and a check is never
started while the entry's previous one runs. Changes come out as the same events as local
ports (started/stopped, healthy/unhealthy), keyed by a Port that carries the entry's title,
with the same watch records around them ("watch-began" with an entry's first check,
"watch-ended" when the monitor closes), so history tells "down" from "not watched". What a
Bluesky server last said is kept in the ServiceStore under the entry (memory_key), so a
restart of the app does not tell its old news again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from trayapp.core.events import Event
from trayapp.core.model import Port
from trayapp.core.probe import UNHEALTHY
from trayapp.core.remote import (
    RemoteCheck,
    RemoteSettings,
    RemoteTarget,
    check_remote,
    remote_history,
)
from trayapp.core.service_check import ServiceMemory, ServiceStore, queue_news
from trayapp.core.watcher import late_after

log = logging.getLogger(__name__)


def port_of(target: RemoteTarget) -> Port:
    return Port(target.port, "tcp", target.title)


def memory_key(target: RemoteTarget) -> str:
    """The entry's name in service-state.json: host, port and path prefix (the scheme may
    change from http to https without the server being another one). Local ports are kept
    under "60610/tcp", so the two never meet."""
    return f"remote {target.host_text}:{target.port}{target.prefix}"


@dataclass(frozen=True)
class RemoteEntry:
    target: RemoteTarget
    interval: float
    settings: RemoteSettings


def change_events(
    before: RemoteCheck | None, now: RemoteCheck, remembered: str | None = None
) -> list[Event]:
    """What a check adds to the history: the port came up or went down, and health news.
    `remembered`: the health last seen before this run (service-state.json), which a first
    check compares with, so that an unchanged health is not news after a restart."""
    port = port_of(now.target)
    events: list[Event] = []
    if before is None or before.up != now.up:
        if now.up:
            events.append(Event(now.time, port, "started", addresses=_addresses(now)))
        elif before is not None:
            events.append(
                Event(now.time, port, "stopped", code=now.reach.code, detail=now.reach.text)
            )
    result, previous = now.result, before.result if before is not None else None
    if result is not None and now.up:
        before_health = remembered if before is None else None
        if previous is not None:
            before_health = previous.health
        if result.verdict == "unhealthy" and result.health != before_health:
            events.append(
                Event(now.time, port, "unhealthy", code=result.health, detail=result.summary)
            )
        elif result.verdict == "healthy" and before_health in UNHEALTHY:
            events.append(
                Event(now.time, port, "healthy", code=result.health, detail=result.summary)
            )
    return events


def _addresses(check: RemoteCheck) -> tuple[str, ...]:
    return (check.reach.address,) if check.reach.address else ()


def _slept(ended: tuple[float, float], wall: float, monotonic: float, interval: float) -> bool:
    """Whether the time from the end of one check to the start of the next (normally at most
    the interval) means the app was stopped or the machine slept: the watcher's rule."""
    return max(wall - ended[0], monotonic - ended[1]) > late_after(interval)


def watch_began(check: RemoteCheck, reason: str, watcher: str) -> Event:
    return Event(
        check.time,
        port_of(check.target),
        "watch-began",
        addresses=_addresses(check),
        code=reason,
        listening=check.up,
        watcher=watcher,
    )


class RemoteMonitor:
    """Checks each entry now and then every `interval` seconds until closed.

    `reason` goes into each entry's "watch-began" ("start", "added", "resumed"; `reasons`
    for some entries: those a replaced monitor had not yet checked keep theirs); an entry in
    `carried` (its last check under a monitor this one replaces) goes on being watched: no
    new record, and its next change is measured against that check."""

    def __init__(
        self,
        entries: Iterable[RemoteEntry],
        on_check: Callable[[RemoteCheck, list[Event]], None],
        *,
        check: Callable[[RemoteTarget, RemoteSettings], RemoteCheck] = check_remote,
        store: ServiceStore | None = None,
        watcher: str = "tray",
        reason: str = "start",
        carried: Mapping[RemoteTarget, RemoteCheck] | None = None,
        reasons: Mapping[RemoteTarget, str] | None = None,
    ) -> None:
        entries = list(entries)
        self._on_check = on_check
        self._check = check
        self._store = store or ServiceStore(None)
        self._watcher = watcher
        self._reasons = {**{entry.target: reason for entry in entries}, **(reasons or {})}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.last: dict[RemoteTarget, RemoteCheck] = dict(carried or {})
        self.targets = [entry.target for entry in entries]
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(entry,),
                name=f"portwatch-remote-{entry.target}",
                daemon=True,
            )
            for entry in entries
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, entry: RemoteEntry) -> None:
        # This entry's health, queue and plan history as last seen, kept across restarts.
        memory = self._store.memory(memory_key(entry.target))
        ended: tuple[float, float] | None = None  # when the last check ended: wall, monotonic
        while not self._stop.is_set():
            started, started_wall = time.monotonic(), time.time()
            try:
                now = self._check(entry.target, entry.settings)
                with self._lock:
                    before = self.last.get(entry.target)
                remembered = memory.health
                events = change_events(before, now, remembered) + self._news(entry, now, memory)
                if before is None:
                    events.insert(0, watch_began(now, self._reasons[entry.target], self._watcher))
                elif ended is not None and _slept(ended, started_wall, started, entry.interval):
                    # Stopped or asleep in between: nobody watched, as for a local port.
                    events[:0] = [
                        Event(
                            ended[0],
                            port_of(entry.target),
                            "watch-ended",
                            code="suspended",
                            watcher=self._watcher,
                        ),
                        watch_began(now, "woke", self._watcher),
                    ]
                problem = self._store.save()
                if problem:
                    log.warning("%s", problem)
            except Exception:  # a bug in one check must not end the checks
                log.exception("check of %s failed", entry.target)
            else:
                with self._lock:
                    if self._stop.is_set():
                        return  # closed meanwhile: the next monitor measures from `before`
                    self.last[entry.target] = now
                self._on_check(now, events)
            ended = (time.time(), time.monotonic())
            self._stop.wait(max(0.0, entry.interval - (time.monotonic() - started)))

    @staticmethod
    def _news(entry: RemoteEntry, check: RemoteCheck, memory: ServiceMemory) -> list[Event]:
        """A Bluesky server's news, as for a local one: a run paused, a plan that failed, the
        queue stopped with items left."""
        result = check.result
        if result is None or not check.up:
            memory.health = None
            return []
        previous, memory.health = memory.health, result.health
        key, _held_back = entry.settings.key_for(entry.target)
        notices, problem = queue_news(
            result,
            memory,
            previous,
            key,
            lambda _port, _host, _key: remote_history(entry.target, entry.settings),
        )
        if problem:
            log.info("%s: %s", entry.target, problem)
        port = port_of(entry.target)
        return [
            Event(check.time, port, "service", code=notice.kind, detail=notice.text)
            for notice in notices
        ]

    def not_begun(self) -> dict[RemoteTarget, str]:
        """The entries whose first check has not come yet, and the reason it will give."""
        with self._lock:
            return {t: self._reasons[t] for t in self.targets if t not in self.last}

    def close(self, reason: str = "quit") -> list[Event]:
        """Stop checking; the "watch-ended" records of the entries that were watched (for the
        caller to write, or to drop for the entries a new monitor goes on with)."""
        with self._lock:
            self._stop.set()
            watched = [target for target in self.targets if target in self.last]
        # A check still running ends within its timeouts; nobody waits longer for it.
        for thread in self._threads:
            thread.join(0.2)
        when = time.time()
        return [
            Event(when, port_of(target), "watch-ended", code=reason, watcher=self._watcher)
            for target in watched
        ]
