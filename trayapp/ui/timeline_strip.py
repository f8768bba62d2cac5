"""A port's history as a strip: up, unhealthy, down and not watched, each with its own colour
AND shape (full bar, striped bar, low bar, dotted line), so it reads without colour vision and
on light and dark themes. Hover, or focus it and use the arrow keys: it says what a stretch
was, from when to when, and who owned the port."""

from __future__ import annotations

import bisect
import functools

from PySide6.QtCore import QEvent, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QAccessible,
    QAccessibleEvent,
    QColor,
    QHelpEvent,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from trayapp.core import report, timeline
from trayapp.core.timeline import Period, Segment, State

# Each has a WCAG contrast of at least 3:1 (SC 1.4.11) against a light (#f3f4f6) and a dark
# (#1f2937) background, and so do the stripes and the top edge against the bars they mark:
# tests/test_timeline_strip.py checks it. Mid-luminance colours are the only ones that pass on
# both.
COLOURS: dict[State, QColor] = {
    "up": QColor("#13923d"),
    "unhealthy": QColor("#ea580c"),
    "down": QColor("#ef4444"),
    "unwatched": QColor("#848a94"),
}
EDGE = QColor("#111827")
STRIPE = QColor("#ffffff")
DOWN_HEIGHT = 0.45  # a down stretch is a low bar: its shape says "down" without colour


def segment_text(segment: Segment, now: float) -> str:
    """'up from 2026-11-29 09:12:00 to 11:40:00 (2 h 28 min), uvicorn (pid 42, user alice)'."""
    words = timeline.STATE_WORDS[segment.state]
    start = report.local_time(segment.start)
    ongoing = segment.period is not None and segment.period.end is None and segment.end >= now
    end = "now" if ongoing else report.local_time(segment.end)
    if end[:10] == start[:10]:
        end = end[11:]
    text = f"{words} from {start} to {end} ({timeline.duration_text(segment.end - segment.start)})"
    period = segment.period
    if period is not None and period.up:
        text += "," + report.period_owner_text(period.pid, period.name, period.username)
    return text


class TimelineStrip(QWidget):
    """Paints `timeline.cells` one pixel column per cell; the words come from the segments."""

    described = Signal(str)  # the text of the stretch chosen with the keyboard

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.setMinimumSize(160, 22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setAccessibleName(f"Timeline of {title}")
        self._spans: list[Period] = []
        self._since = 0.0
        self._now = 0.0
        self._segments: list[Segment] = []
        self._starts: list[float] = []
        self._cells: list[State] = []
        self._current = -1  # segment chosen with the keyboard
        self._patterns: dict[State, QPixmap] = {}
        self._patterns_size = (0, 0)
        self.summary = ""

    def sizeHint(self) -> QSize:
        return QSize(480, 24)

    def set_periods(self, spans: list[Period], since: float, now: float, summary: str) -> None:
        self._spans, self._since, self._now = spans, since, now
        self._segments = timeline.segments(spans, since, now)
        self._starts = [segment.start for segment in self._segments]
        self._cells = []
        self._current = min(self._current, len(self._segments) - 1)
        self.summary = summary
        self.setAccessibleDescription(summary)
        self.update()

    def segment_at(self, x: int) -> Segment | None:
        if not self._segments or self.width() <= 0:
            return None
        when = self._since + (self._now - self._since) * x / self.width()
        index = bisect.bisect_right(self._starts, when) - 1
        return self._segments[max(0, min(index, len(self._segments) - 1))]

    def text_at(self, x: int) -> str | None:
        segment = self.segment_at(x)
        return segment_text(segment, self._now) if segment is not None else None

    # -- painting --------------------------------------------------------------------------
    def paintEvent(self, _event: QPaintEvent) -> None:
        width = max(1, self.width())
        if len(self._cells) != width:
            self._cells = timeline.segment_cells(self._segments, self._since, self._now, width)
        height = self.height()
        if self._patterns_size != (width, height):
            self._patterns = {state: _pattern(state, width, height) for state in timeline.STATES}
            self._patterns_size = (width, height)
        painter = QPainter(self)
        cells, patterns = self._cells, self._patterns
        run_start = 0
        for x in range(1, width + 1):
            if x == width or cells[x] != cells[run_start]:
                # A run is a slice of its state's pattern: one copy, however it is drawn.
                painter.drawPixmap(
                    run_start, 0, patterns[cells[run_start]], run_start, 0, x - run_start, height
                )
                run_start = x
        if self.hasFocus():
            pen = QPen(self.palette().highlight().color(), 2)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(self.rect().adjusted(1, 1, -1, -1))
            if 0 <= self._current < len(self._segments):
                painter.drawRect(self._segment_rect(self._segments[self._current]))
        painter.end()

    def _segment_rect(self, segment: Segment) -> QRect:
        span = max(1e-9, self._now - self._since)
        left = int((segment.start - self._since) / span * self.width())
        right = max(left + 2, int((segment.end - self._since) / span * self.width()))
        return QRect(left, 0, right - left, self.height())

    # -- hover and keyboard ----------------------------------------------------------------
    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            text = self.text_at(event.pos().x())
            if text:
                QToolTip.showText(event.globalPos(), text, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self._segments:
            super().keyPressEvent(event)
            return
        moves = {
            Qt.Key.Key_Left: self._current - 1,
            Qt.Key.Key_Right: self._current + 1,
            Qt.Key.Key_Home: 0,
            Qt.Key.Key_End: len(self._segments) - 1,
        }
        if self._current < 0:
            moves[Qt.Key.Key_Left] = moves[Qt.Key.Key_Right] = len(self._segments) - 1
        target = moves.get(Qt.Key(event.key()))
        if target is None:
            super().keyPressEvent(event)
            return
        self.choose(max(0, min(target, len(self._segments) - 1)))

    def choose(self, index: int) -> str:
        """Make the index-th stretch the current one, and say it (screen readers hear the
        description change; sighted users get the tooltip)."""
        self._current = index
        segment = self._segments[index]
        text = segment_text(segment, self._now)
        self.setAccessibleDescription(f"{text}. {self.summary}")
        QAccessible.updateAccessibility(
            QAccessibleEvent(self, QAccessible.Event.DescriptionChanged)
        )
        rect = self._segment_rect(segment)
        QToolTip.showText(self.mapToGlobal(QPoint(rect.center().x(), self.height())), text, self)
        self.described.emit(text)
        self.update()
        return text


@functools.lru_cache(maxsize=32)  # the strips of a window share their size: made once
def _pattern(state: State, width: int, h: int) -> QPixmap:
    """The whole strip drawn in one state, on a transparent ground: each run of that state is
    copied from it. The shapes say the state without colour: full bar up, striped bar
    unhealthy, low bar down, dotted line not watched."""
    pixmap = QPixmap(width, h)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    colour = COLOURS[state]
    if state == "unwatched":
        # A dotted line: "nothing seen", clearly not a bar.
        y = h // 2 - 1
        for x in range(0, width, 4):
            painter.fillRect(x, y, 2, 3, colour)
        painter.end()
        return pixmap
    top = int(h * (1 - DOWN_HEIGHT)) if state == "down" else 0
    painter.fillRect(QRect(0, top, width, h - top), colour)
    # A dark top edge: where the bar ends reads in grey too (full bar up, low bar down).
    painter.fillRect(QRect(0, top, width, 2), EDGE)
    if state == "unhealthy":
        # White stripes cut through the bar: its shape says "unhealthy" in grey too.
        painter.setPen(QPen(STRIPE, 2))
        for x in range(-h, width, 6):
            painter.drawLine(x, h, x + h, 0)
    painter.end()
    return pixmap
