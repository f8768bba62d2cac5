"""Health checks on a schedule, off the caller's thread: the tray and `portwatch watch` share it.

Each listening TCP port is checked right after it starts listening (or the monitor starts),
then every `interval_for(port)` seconds. A port whose service turned out to have no health check
(not HTTP) is not asked again until its owner changes. At most one check per port is in flight,
and checks run on a small pool, so a server that hangs (each request has its timeout) delays
only its own next check: never the polling, the GUI, or other ports.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from trayapp.core.apikey import KeyChoice
from trayapp.core.events import Event
from trayapp.core.model import Port, PortState
from trayapp.core.service_check import CheckOutcome, ServiceStore, run_check
from trayapp.core.watcher import owner_identity
from trayapp.core.writeback import HistoryWriter

log = logging.getLogger(__name__)
MAX_WORKERS = 4


@dataclass
class _Tracked:
    state: PortState
    identity: tuple[object, ...]
    due: float | None  # monotonic time of the next check; None: no more checks
    running: bool = False


def outcome_events(port: Port, outcome: CheckOutcome) -> list[Event]:
    """What a check adds to the events log: a change of health, and the service's news."""
    result = outcome.result
    events = []
    if outcome.health_news is not None:
        events.append(
            Event(
                time=result.time,
                port=port,
                kind=outcome.health_news,
                code=result.health,
                detail=result.summary,
            )
        )
    for notice in outcome.notices:
        events.append(
            Event(time=result.time, port=port, kind="service", code=notice.kind, detail=notice.text)
        )
    return events


class HealthMonitor:
    def __init__(
        self,
        on_outcome: Callable[[Port, PortState, CheckOutcome], None],
        *,
        interval_for: Callable[[Port], float | None],
        key_for: Callable[[Port], KeyChoice],
        expected_http_for: Callable[[PortState], bool] = lambda _state: False,
        store: ServiceStore | None = None,
        history: HistoryWriter | None = None,
        check: Callable[..., CheckOutcome] = run_check,
        clock: Callable[[], float] = time.monotonic,
        workers: int = MAX_WORKERS,
    ) -> None:
        self._on_outcome = on_outcome
        self._interval_for = interval_for
        self._key_for = key_for
        self._expected_http_for = expected_http_for
        self.store = store or ServiceStore(None)
        self._history = history
        self._check = check
        self._clock = clock
        self._tracked: dict[Port, _Tracked] = {}
        self._wake = threading.Condition()
        self._paused = False
        self._closed = False
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="portwatch-health")
        self._thread = threading.Thread(target=self._run, name="portwatch-health", daemon=True)
        self._thread.start()

    # -- what callers say ------------------------------------------------------------------
    def update(self, states: Iterable[PortState]) -> None:
        """The latest scan. New listeners and new owners are checked at once."""
        now = self._clock()
        with self._wake:
            seen = set()
            for state in states:
                if not state.listening or state.port.protocol != "tcp":
                    continue
                seen.add(state.port)
                identity = owner_identity(state)
                tracked = self._tracked.get(state.port)
                if tracked is None or tracked.identity != identity:
                    self._tracked[state.port] = _Tracked(
                        state, identity, self._first_due(state.port, now)
                    )
                else:
                    tracked.state = state
            for port in list(self._tracked):
                if port not in seen:
                    del self._tracked[port]
                    self.store.memory(str(port)).forget_owner()
            self._wake.notify()

    def recheck(self, port: Port) -> None:
        """Check now (Settings changed, the user asked)."""
        with self._wake:
            tracked = self._tracked.get(port)
            if tracked is not None:
                tracked.due = self._first_due(port, self._clock())
                self._wake.notify()

    def recheck_all(self) -> None:
        """Check every port now (settings changed: intervals, keys)."""
        with self._wake:
            now = self._clock()
            for port, tracked in self._tracked.items():
                tracked.due = self._first_due(port, now)
            self._wake.notify()

    def _first_due(self, port: Port, now: float) -> float | None:
        return None if self._interval_for(port) is None else now

    def set_paused(self, paused: bool) -> None:
        with self._wake:
            self._paused = paused
            if not paused:
                now = self._clock()
                for port, tracked in self._tracked.items():
                    tracked.due = self._first_due(port, now)
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(5)
        # Checks still running end within their timeouts; nobody waits for them.
        self._pool.shutdown(wait=False, cancel_futures=True)

    def in_flight(self) -> int:
        with self._wake:
            return sum(t.running for t in self._tracked.values())

    # -- the scheduling thread -------------------------------------------------------------
    def _run(self) -> None:
        with self._wake:
            while not self._closed:
                now = self._clock()
                wait: float | None = None
                if not self._paused:
                    for port, tracked in self._tracked.items():
                        if tracked.running or tracked.due is None:
                            continue
                        if tracked.due <= now:
                            tracked.running = True
                            self._submit(port, tracked.state)
                        else:
                            left = tracked.due - now
                            wait = left if wait is None else min(wait, left)
                # Sleeps until the next due check, or until told something: idle costs nothing.
                self._wake.wait(wait)

    def _submit(self, port: Port, state: PortState) -> None:
        try:
            future = self._pool.submit(self._one, port, state)
        except RuntimeError:  # the pool is shut down: we are closing
            return
        future.add_done_callback(functools.partial(self._done, port, state))

    def _one(self, port: Port, state: PortState) -> CheckOutcome:
        memory = self.store.memory(str(port))
        return self._check(
            state,
            memory,
            self._key_for(port),
            expected_http=self._expected_http_for(state),
        )

    def _done(self, port: Port, state: PortState, future: Future[CheckOutcome]) -> None:
        try:
            outcome = future.result()
        except Exception:  # a bug in one check must not end the checks
            log.exception("health check of %s failed", port)
            outcome = None
        with self._wake:
            tracked = self._tracked.get(port)
            current = tracked is not None and tracked.identity == owner_identity(state)
            if tracked is not None:
                tracked.running = False
                if current and outcome is not None:
                    interval = self._interval_for(port)
                    # Not HTTP (or silent): no health check, not asked again until the owner
                    # changes. Refused: it is stopping; the scan will say so, or ask again.
                    result = outcome.result
                    final = result.verdict == "unchecked" and result.health != "refused"
                    more = interval is not None and not final
                    tracked.due = self._clock() + interval if more and interval else None
                elif current:
                    interval = self._interval_for(port)
                    tracked.due = None if interval is None else self._clock() + interval
            self._wake.notify()
        if outcome is None or not current:
            return  # the port stopped or changed hands while we looked: stale news
        problem = self.store.save()
        if problem:
            log.warning("%s", problem)
        if outcome.problem:
            log.info("%s: %s", port, outcome.problem)
        events = outcome_events(port, outcome)
        if events and self._history is not None:
            # While the disk refuses, they wait in memory with the scan's changes, in order.
            self._history.write(events)
        self._on_outcome(port, state, outcome)
