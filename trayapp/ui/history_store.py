"""The history as periods, for the windows that show it: read on a thread of its own, only
when a window asks, then kept current by reading just what was appended since. The periods
read are kept beside the log (core/period_cache.py), so the next window starts from there."""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Signal, Slot

from trayapp.core import alive, period_cache, timeline
from trayapp.core.history import EventLog
from trayapp.core.model import Port

log = logging.getLogger(__name__)


class HistoryStore(QObject):
    """`changed` is emitted on the GUI thread whenever `spans` has news.

    Each refresh reads on a short-lived daemon thread (parsing 100,000 lines takes about a
    second when there is no cache); it holds nothing that must be stopped when a window
    closes or the app quits.
    """

    changed = Signal()
    _read = Signal(object, int)  # dict[Port, PortPeriods], damaged lines so far

    def __init__(self, event_log: EventLog) -> None:
        super().__init__()
        self.event_log = event_log
        self.spans: dict[Port, timeline.PortPeriods] = {}
        self.skipped = 0
        self.loaded = False
        self._read.connect(self._on_read)
        self._lock = threading.Lock()  # one reader at a time; it owns what follows
        self.reader = period_cache.PeriodReader(event_log)
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
            first = self.reader.position is None
            try:
                changed, _everything = self.reader.read_more()
            except Exception:  # a reader bug must not take the app down; nothing new shows
                log.exception("reading the history failed")
                return
            if first or changed:
                dead = alive.dead_watchers(self.event_log.path)
                try:
                    self._read.emit(self.reader.builder.views(dead), self.reader.skipped)
                except RuntimeError:  # the window (and this store) is gone: nobody to tell
                    return
            with self._lock:
                if not self._again:
                    return
                self._again = False

    @Slot(object, int)
    def _on_read(self, spans: dict[Port, timeline.PortPeriods], skipped: int) -> None:
        self.spans = spans
        self.skipped = skipped
        self.loaded = True
        self.changed.emit()
