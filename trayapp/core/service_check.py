"""One health check of one port's service, and what is remembered between checks.

The memory makes checks cheap and news exact: whether the owner is a Bluesky server is found
out once per owner; the last queue status and the last plan-history item seen turn each new
look into "what changed", and survive a restart of the app (ServiceStore), so nothing is
notified twice.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from trayapp.core.apikey import KeyChoice
from trayapp.core.bluesky import Notice, QueueStatus, items_after, plan_notice, status_notices
from trayapp.core.model import PortState
from trayapp.core.probe import UNHEALTHY, ProbeResult, fetch_history, probe_state
from trayapp.core.watcher import owner_identity
from trayapp.fileio import atomic_write

MAX_STORE_BYTES = 1024 * 1024


@dataclass
class ServiceMemory:
    identity: tuple[object, ...] | None = None
    bluesky: bool | None = None  # None: not found out yet for this owner
    speaks_http: bool = False
    health: str | None = None  # the last check's health code; None: not checked yet
    queue: QueueStatus | None = None
    history_uid: str | None = None  # plan_history_uid when the history was last read
    last_item_uid: str | None = None
    last_item_time: float | None = None

    def forget_owner(self) -> None:
        """The port stopped or changed hands: what we knew of the process no longer holds.
        The queue and history cursor stay: they live in the RE Manager, not the process."""
        self.identity = None
        self.bluesky = None
        self.speaks_http = False
        self.health = None

    def to_json(self) -> dict[str, Any]:
        return {
            "health": self.health,
            "queue": self.queue.to_json() if self.queue else None,
            "history_uid": self.history_uid,
            "last_item_uid": self.last_item_uid,
            "last_item_time": self.last_item_time,
        }

    @classmethod
    def from_json(cls, data: object) -> ServiceMemory:
        if not isinstance(data, dict):
            return cls()

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) and len(value) <= 200 else None

        when = data.get("last_item_time")
        return cls(
            health=text("health"),
            queue=QueueStatus.from_json(data.get("queue")),
            history_uid=text("history_uid"),
            last_item_uid=text("last_item_uid"),
            last_item_time=float(when)
            if isinstance(when, int | float) and not isinstance(when, bool)
            else None,
        )


@dataclass(frozen=True)
class CheckOutcome:
    result: ProbeResult
    previous_health: str | None  # None: the first check of this owner
    notices: tuple[Notice, ...] = ()
    problem: str | None = None  # a part of the check that failed without making it unhealthy

    @property
    def health_news(self) -> Literal["healthy", "unhealthy"] | None:
        """Whether this check changed the health in a way worth telling: it became unhealthy
        (or unhealthy in another way), or it is healthy again. A first look that finds the
        service healthy is no news."""
        now, before = self.result, self.previous_health
        if now.verdict == "unhealthy" and now.health != before:
            return "unhealthy"
        if now.verdict == "healthy" and before in UNHEALTHY:
            return "healthy"
        return None


def run_check(
    state: PortState,
    memory: ServiceMemory,
    key: KeyChoice,
    *,
    expected_http: bool = False,
    timeout: float = 1.0,
    history: Callable[[int, str, str | None], Any] = fetch_history,
) -> CheckOutcome:
    """Check `state`'s service and update `memory` in place (one check per port at a time)."""
    identity = owner_identity(state)
    if memory.identity is not None and memory.identity != identity:
        memory.forget_owner()
    # Unknown (a memory read back after a restart): the last health seen still holds, so the
    # same state is not news again.
    memory.identity = identity
    result = probe_state(
        state,
        key,
        timeout,
        bluesky=memory.bluesky,
        expected_http=expected_http or memory.speaks_http,
        # Once this owner is known to be a Bluesky server, its status is the whole check.
        root=memory.bluesky is not True,
    )
    if result.status is not None or result.bluesky_server:
        memory.speaks_http = True
        memory.bluesky = result.bluesky_server
    previous = memory.health
    if result.health != "refused":  # a stop in progress is no change of health
        memory.health = result.health
    notices, problem = queue_news(result, memory, previous, key, history)
    return CheckOutcome(result, previous, tuple(notices), problem)


def queue_news(
    result: ProbeResult,
    memory: ServiceMemory,
    previous: str | None,
    key: KeyChoice,
    history: Callable[[int, str, str | None], Any],
) -> tuple[list[Notice], str | None]:
    """A Bluesky server's news since the last look (a run paused, a plan aborted, ...), and a
    part of it that could not be read; `memory` moves on. Local and remote checks share it."""
    notices: list[Notice] = []
    problem = None
    if result.queue is not None:
        problem = _read_history(result, memory, key, notices, history)
        # Changes count only between two looks in a row: after an outage the health line
        # ("healthy again: RE Manager idle, environment closed") already tells the state.
        seen_before = memory.queue if previous in ("ok", "environment-failed") else None
        notices.extend(status_notices(seen_before, result.queue))
        memory.queue = result.queue
    return notices, problem


def _read_history(
    result: ProbeResult,
    memory: ServiceMemory,
    key: KeyChoice,
    notices: list[Notice],
    history: Callable[[int, str, str | None], Any],
) -> str | None:
    queue = result.queue
    assert queue is not None
    if queue.plan_history_uid is None or queue.plan_history_uid == memory.history_uid:
        return None
    items = history(result.port, result.host, key.key)
    if isinstance(items, str):
        return items  # tried again at the next check: the uid is not taken as read
    notices.extend(
        plan_notice(item)
        for item in items_after(items, memory.last_item_uid, memory.last_item_time)
        if not item.completed
    )
    memory.history_uid = queue.plan_history_uid
    if items:
        memory.last_item_uid = items[-1].uid
        memory.last_item_time = items[-1].time_stop or memory.last_item_time or 0.0
    else:
        # Empty (or cleared): whatever finishes from now on is new.
        memory.last_item_uid, memory.last_item_time = None, 0.0
    return None


@dataclass
class ServiceStore:
    """What the checks remember, per port, in one small JSON file (written atomically)."""

    path: Path | None
    memories: dict[str, ServiceMemory] = field(default_factory=dict)
    _saved: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, path: Path | None) -> ServiceStore:
        store = cls(path)
        if path is None:
            return store
        with contextlib.suppress(OSError, ValueError, RecursionError, UnicodeDecodeError):
            if path.stat().st_size <= MAX_STORE_BYTES:
                data = json.loads(path.read_bytes().decode("utf-8"))
                if isinstance(data, dict):
                    for name, value in data.items():
                        store.memories[str(name)] = ServiceMemory.from_json(value)
                    store._saved = {k: m.to_json() for k, m in store.memories.items()}
        return store

    def memory(self, name: str) -> ServiceMemory:
        with self._lock:
            return self.memories.setdefault(name, ServiceMemory())

    def save(self) -> str | None:
        """Write when something changed; the reason it could not, or None."""
        with self._lock:
            data = {name: memory.to_json() for name, memory in self.memories.items()}
            if data == self._saved or self.path is None:
                return None
            try:
                atomic_write(self.path, (json.dumps(data, indent=1) + "\n").encode(), 0o600)
            except OSError as exc:
                return f"could not save {self.path.name}: {exc.strerror or exc}"
            self._saved = data
            return None

    def snapshot(self, name: str) -> ServiceMemory:
        with self._lock:
            memory = self.memories.get(name)
            return replace(memory) if memory else ServiceMemory()
