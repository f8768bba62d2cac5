"""Writes that wait in memory while the disk refuses them, and why it refuses, in words.

A tray app lives for weeks; its disk fills up, is remounted read-only, its folder is deleted.
None of that may stop the watch or lose a change: the history keeps what it could not write
(bounded) and writes it, in order, once it can; the user is told what is wrong in plain words
("no space left on /home"), not an errno.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from trayapp.core.events import Event
from trayapp.core.history import EventLog
from trayapp.fileio import describe_write_error

log = logging.getLogger(__name__)
T = TypeVar("T")
# A day of a port flapping every ten seconds; a few MB at most.
HISTORY_BACKLOG = 10_000
RETRY_S = 2.0  # how often a failing history is tried again while nothing new happens


class Backlog(Generic[T]):
    """Items waiting to be written, oldest first; beyond `limit` the oldest are dropped (and
    counted), so a disk that stays full for weeks cannot eat the memory."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.items: deque[T] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, items: Iterable[T]) -> None:
        for item in items:
            if len(self.items) >= self.limit:
                self.items.popleft()
                self.dropped += 1
            self.items.append(item)

    def clear(self) -> None:
        self.items.clear()
        self.dropped = 0


class HistoryWriter:
    """Appends change events to the events log; while that fails, keeps them and says why.

    `problem` is None while writing works, else the reason in words. Events wait in memory
    (up to `limit`) and are written in the order they happened as soon as a write succeeds.
    """

    def __init__(
        self,
        log_file: EventLog,
        *,
        limit: int = HISTORY_BACKLOG,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log_file
        self.problem: str | None = None
        self._backlog: Backlog[Event] = Backlog(limit)
        self._retry_s = retry_s
        self._clock = clock
        self._next_try = 0.0
        # The scan thread writes changes, the health checks write theirs: one queue, in order.
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Events kept in memory because they could not be written yet."""
        return len(self._backlog)

    def write(self, events: Iterable[Event]) -> None:
        with self._lock:
            self._backlog.add(events)
            self._flush()

    def retry(self) -> None:
        """Try the waiting events again (cheap when nothing waits; paced while failing)."""
        with self._lock:
            if self._backlog and self._clock() >= self._next_try:
                self._flush()

    def _flush(self) -> None:
        if not self._backlog:
            return
        try:
            self.log.append(list(self._backlog.items))
        except OSError as exc:
            problem = describe_write_error(exc, self.log.path)
            if problem != self.problem:
                log.warning("cannot write the history %s: %s", self.log.path, problem)
            self.problem = problem
            self._next_try = self._clock() + self._retry_s
            return
        waited, dropped = len(self._backlog), self._backlog.dropped
        self._backlog.clear()
        if self.problem is not None:
            self.problem = None
            log.info("history written again: %d changes that waited were saved", waited)
        if dropped:
            log.warning("%d older changes were lost while the history was unwritable", dropped)
