"""The history as periods, for the windows that show it: read on a thread of its own, only
when a window asks, then kept current by reading just what was appended since."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QThread, Signal, Slot

from trayapp.core import timeline
from trayapp.core.history import Cursor, EventLog
from trayapp.core.model import Port
from trayapp.ui.worker import start_thread

log = logging.getLogger(__name__)


class _Reader(QObject):
    """Lives on the store's thread: parsing 100,000 lines takes about a second."""

    read = Signal(object, int)  # dict[Port, list[Period]], damaged lines so far

    def __init__(self, event_log: EventLog) -> None:
        super().__init__()
        self._log = event_log
        self._cursor: Cursor | None = None
        self._builder = timeline.PeriodBuilder()
        self._skipped = 0
        self._started = False

    @Slot()
    def read_more(self) -> None:
        try:
            result, self._cursor, everything = self._log.read_new(self._cursor)
        except Exception:  # a reader bug must not kill the thread; the window says nothing new
            log.exception("reading the history failed")
            return
        if everything:
            self._builder = timeline.PeriodBuilder()
            self._skipped = 0
        elif not result.events and not result.skipped and self._started:
            return  # nothing new: nothing to redraw
        self._started = True
        self._builder.add(result.events)
        self._skipped += result.skipped
        self.read.emit(self._builder.periods(), self._skipped)


class HistoryStore(QObject):
    """`changed` is emitted on the GUI thread whenever `spans` has news."""

    changed = Signal()
    _request = Signal()

    def __init__(self, event_log: EventLog) -> None:
        super().__init__()
        self.event_log = event_log
        self.spans: dict[Port, list[timeline.Period]] = {}
        self.skipped = 0
        self.loaded = False
        self._reader: _Reader | None = None
        self._thread: QThread | None = None

    def refresh(self) -> None:
        """Read what is new (everything, the first time). Returns at once."""
        if self._thread is None:
            self._reader = _Reader(self.event_log)
            self._reader.read.connect(self._on_read)
            self._thread = start_thread(self._reader, "portwatch-history")
            self._request.connect(self._reader.read_more)
        self._request.emit()

    @Slot(object, int)
    def _on_read(self, spans: dict[Port, list[timeline.Period]], skipped: int) -> None:
        self.spans = spans
        self.skipped = skipped
        self.loaded = True
        self.changed.emit()

    def stop(self) -> None:
        """Stop the thread (the window closed); the next refresh reads everything again."""
        if self._thread is not None and self._reader is not None:
            self._request.disconnect(self._reader.read_more)
            self._thread.quit()
            self._thread.wait(10000)
            self._thread = None
            self._reader = None
