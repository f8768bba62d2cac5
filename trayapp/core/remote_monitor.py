"""Remote entries checked on their own schedule, each on its own thread.

One thread per entry, so a dead host (2 s per connect, more for a slow health check) delays
only its own next check: never local polling, the GUI, or another entry; and a check is never
started while the entry's previous one runs. Changes come out as the same events as local
ports (started/stopped, healthy/unhealthy), keyed by a Port that carries the entry's title.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
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
from trayapp.core.service_check import ServiceMemory, queue_news

log = logging.getLogger(__name__)


def port_of(target: RemoteTarget) -> Port:
    return Port(target.port, "tcp", target.title)


@dataclass(frozen=True)
class RemoteEntry:
    target: RemoteTarget
    interval: float
    settings: RemoteSettings


def change_events(before: RemoteCheck | None, now: RemoteCheck) -> list[Event]:
    """What a check adds to the history: the port came up or went down, and health news."""
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
        before_health = previous.health if previous is not None else None
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


class RemoteMonitor:
    """Checks each entry now and then every `interval` seconds until closed."""

    def __init__(
        self,
        entries: Iterable[RemoteEntry],
        on_check: Callable[[RemoteCheck, list[Event]], None],
        *,
        check: Callable[[RemoteTarget, RemoteSettings], RemoteCheck] = check_remote,
    ) -> None:
        self._on_check = on_check
        self._check = check
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.last: dict[RemoteTarget, RemoteCheck] = {}
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
        memory = ServiceMemory()  # this entry's queue and plan history, as last seen
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                now = self._check(entry.target, entry.settings)
                with self._lock:
                    before = self.last.get(entry.target)
                    self.last[entry.target] = now
                events = change_events(before, now) + self._news(entry, now, memory)
            except Exception:  # a bug in one check must not end the checks
                log.exception("check of %s failed", entry.target)
            else:
                if not self._stop.is_set():
                    self._on_check(now, events)
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

    def close(self) -> None:
        self._stop.set()
        # A check still running ends within its timeouts; nobody waits longer for it.
        for thread in self._threads:
            thread.join(0.2)
