"""The history as periods, for the windows that show it: read on a thread of its own, only
when a window asks, then kept current by reading just what was appended since."""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Signal, Slot

from trayapp.core import alive, timeline
from trayapp.core.history import Cursor, EventLog
from trayapp.core.model import Port

log = logging.getLogger(__name__)


class HistoryStore(QObject):
    """`changed` is emitted on the GUI thread whenever `spans` has news.

    Each refresh reads on a short-lived daemon thread (parsing 100,000 lines takes about a
    second); it holds nothing that must be stopped when a window closes or the app quits.
    """

    changed = Signal()
    _read = Signal(object, int)  # dict[Port, list[Period]], damaged lines so far

    def __init__(self, event_log: EventLog) -> None:
        super().__init__()
        self.event_log = event_log
        self.spans: dict[Port, list[timeline.Period]] = {}
        self.skipped = 0
        self.loaded = False
        self._read.connect(self._on_read)
        self._lock = threading.Lock()  # one reader at a time; it owns what follows
        self._cursor: Cursor | None = None
        self._builder = timeline.PeriodBuilder()
        self._skipped = 0
        self._again = False  # a refresh came while reading: read once more after
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Read what is new (everything, the first time). Returns at once."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._again = True
                return
            self._thread = threading.Thread(
                target=self._read_more, name="portwatch-history", daemon=True
            )
            self._thread.start()

    def _read_more(self) -> None:
        while True:
            try:
                result, self._cursor, everything = self.event_log.read_new(self._cursor)
            except Exception:  # a reader bug must not take the app down; nothing new shows
                log.exception("reading the history failed")
                return
            if everything:
                self._builder = timeline.PeriodBuilder()
                self._skipped = 0
            if everything or result.events or result.skipped:
                self._builder.add(result.events)
                self._skipped += result.skipped
                try:
                    dead = alive.dead_watchers(self.event_log.path)
                    self._read.emit(self._builder.periods(dead), self._skipped)
                except RuntimeError:  # the window (and this store) is gone: nobody to tell
                    return
            with self._lock:
                if not self._again:
                    return
                self._again = False

    @Slot(object, int)
    def _on_read(self, spans: dict[Port, list[timeline.Period]], skipped: int) -> None:
        self.spans = spans
        self.skipped = skipped
        self.loaded = True
        self.changed.emit()
