"""The History window: a timeline strip and totals per port, the periods as a table, export.

It reads the log only once shown, on a thread (HistoryStore), and then only what is appended.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QCloseEvent, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from trayapp.core import paths, report, timeline
from trayapp.core.events import iso_time
from trayapp.core.history import EventLog
from trayapp.core.model import Port
from trayapp.ui.accessible import name_controls
from trayapp.ui.controller import Controller
from trayapp.ui.history_store import HistoryStore
from trayapp.ui.shortcuts import close_on_escape
from trayapp.ui.timeline_strip import TimelineStrip

COLUMNS = ("Start", "Port", "State", "Process", "Duration")
WIDEST = ("2026-12-31 23:59:59", "65535/tcp", "up but unhealthy", "", "23 h 59 min (ongoing)")
SPANS = (
    ("Last hour", timeline.HOUR),
    ("Last day", timeline.DAY),
    ("Last week", timeline.WEEK),
    ("Everything", None),
)
REFRESH_MS = 2000  # health news and other writers (portwatch watch --log) show this soon
LEGEND = (
    "Strip: full bar = up, striped bar = up but unhealthy, low bar = down, "
    "dotted line = not watched. Hover a stretch, or focus a strip and use the arrow keys."
)


def labelled(text: str, buddy: QWidget) -> QLabel:
    label = QLabel(text)
    label.setBuddy(buddy)
    return label


class HistoryWindow(QWidget):
    def __init__(self, controller: Controller, log: EventLog | None = None) -> None:
        super().__init__()
        self.controller = controller
        self.store = HistoryStore(log or controller.event_log or EventLog(paths.events_file()))
        self.store.changed.connect(self.show_rows)
        self.setWindowTitle("Port Watch History")
        self.setAccessibleName("Port Watch History")
        self.resize(860, 600)
        layout = QVBoxLayout(self)
        filters = QHBoxLayout()
        self.port_filter = QComboBox()
        self.port_filter.setAccessibleName("Port")
        self.port_filter.setAccessibleDescription("Show the history of one port or of all")
        self.port_filter.addItem("All ports", None)
        self.span_filter = QComboBox()
        self.span_filter.setAccessibleName("Time span")
        self.span_filter.setAccessibleDescription("How far back the strips and the table go")
        for text, seconds in SPANS:
            self.span_filter.addItem(text, seconds)
        self.span_filter.setCurrentIndex(1)
        filters.addWidget(labelled("&Port:", self.port_filter))
        filters.addWidget(self.port_filter)
        filters.addWidget(labelled("&Show:", self.span_filter))
        filters.addWidget(self.span_filter)
        filters.addStretch()
        self.refresh_button = QPushButton("&Refresh")
        self.refresh_button.setAccessibleDescription("Read what was added to the history")
        self.refresh_button.clicked.connect(self.store.refresh)
        filters.addWidget(self.refresh_button)
        layout.addLayout(filters)

        self.note = QLabel("Reading the history...")
        self.note.setAccessibleName("History status")
        layout.addWidget(self.note)
        self.strips_box = QWidget()
        self.strips_layout = QGridLayout(self.strips_box)
        self.strips_layout.setColumnStretch(1, 1)
        self.strips_layout.setAlignment(Qt.AlignmentFlag.AlignTop)
        strips_scroll = QScrollArea()
        strips_scroll.setWidgetResizable(True)
        strips_scroll.setWidget(self.strips_box)
        strips_scroll.setMinimumHeight(120)
        strips_scroll.setAccessibleName("Timelines")
        strips_scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # its strips take the focus
        layout.addWidget(strips_scroll, 1)
        self.strips: dict[Port, TimelineStrip] = {}
        self.strip_labels: dict[Port, QLabel] = {}
        self.axis = QLabel()
        self.axis.setAccessibleName("Time span of the strips")
        layout.addWidget(self.axis)
        legend = QLabel(LEGEND)
        legend.setWordWrap(True)
        legend.setAccessibleName("Legend")
        layout.addWidget(legend)
        self.totals = QLabel()
        self.totals.setWordWrap(True)
        self.totals.setAccessibleName("Totals")
        self.totals.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.totals)

        self.periods = PeriodsModel(self)
        # A table view asks the model only for the rows it shows (a tree view walks them all).
        self.table = QTableView()
        self.table.setModel(self.periods)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        self.table.setTabKeyNavigation(False)  # Tab leaves the table; arrows move in it
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        # Widths from the longest words each column can have, not from measuring 100,000 rows.
        metrics = self.table.fontMetrics()
        for column, widest in enumerate(WIDEST):
            header.resizeSection(column, metrics.horizontalAdvance(widest) + 24)
        header.setSectionResizeMode(COLUMNS.index("Process"), QHeaderView.ResizeMode.Stretch)
        rows = self.table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(metrics.height() + 8)
        self.table.setAccessibleName("Periods")
        self.table.setAccessibleDescription(
            "One row per period, newest first: start, port, state, process, duration"
        )
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        layout.addWidget(labelled("Per&iods:", self.table))
        layout.addWidget(self.table, 2)
        buttons = QHBoxLayout()
        self.csv_button = QPushButton("Export &CSV...")
        self.csv_button.setAccessibleDescription("Save the periods shown as CSV")
        self.csv_button.clicked.connect(lambda: self.export("csv"))
        self.json_button = QPushButton("Export &JSON...")
        self.json_button.setAccessibleDescription("Save the periods shown as JSON")
        self.json_button.clicked.connect(lambda: self.export("json"))
        close = QPushButton("Close")
        close.setAccessibleDescription("Close this window (Escape)")
        close.clicked.connect(self.close)
        buttons.addWidget(self.csv_button)
        buttons.addWidget(self.json_button)
        buttons.addStretch()
        buttons.addWidget(close)
        layout.addLayout(buttons)
        self.port_filter.currentIndexChanged.connect(self.show_rows)
        self.span_filter.currentIndexChanged.connect(self.show_rows)
        controller.events.connect(self.reload_if_shown)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.store.refresh)
        close_on_escape(self)
        name_controls(self)

    # -- reading ---------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.store.refresh()  # the first time everything, then what is new
        self._timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self._timer.stop()
        super().hideEvent(event)

    def reload(self) -> None:
        self.store.refresh()

    def reload_if_shown(self, _events: object = None) -> None:
        if self.isVisible():
            self.store.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._timer.stop()
        super().closeEvent(event)

    # -- showing ---------------------------------------------------------------------------
    def window_span(self, now: float) -> float:
        seconds = self.span_filter.currentData()
        if seconds:
            return float(seconds)
        starts = (view.first_start() for view in self.store.spans.values())
        first = min((start for start in starts if start is not None), default=now)
        return max(timeline.HOUR, now - first)

    def selected(self, now: float | None = None) -> dict[Port, list[timeline.Period]]:
        """The chosen ports' periods that reach into the chosen span (only those become
        objects: the last day of a week of 100,000 periods is a seventh of them)."""
        key = self.port_filter.currentData()
        seconds = self.span_filter.currentData()
        since = (now or time.time()) - seconds if seconds else -math.inf
        return {
            port: view.since(since)
            for port, view in self.store.spans.items()
            if key is None or str(port) == key
        }

    def _update_ports(self) -> None:
        chosen = self.port_filter.currentData()
        watched = self.controller.ports() + self.controller.remote_ports()
        wanted = sorted(set(self.store.spans) | set(watched))
        have = [self.port_filter.itemData(i) for i in range(1, self.port_filter.count())]
        if have == [str(p) for p in wanted]:
            return
        self.port_filter.blockSignals(True)
        self.port_filter.clear()
        self.port_filter.addItem("All ports", None)
        for port in wanted:
            # Keyed by text: Qt can't compare Python objects stored as item data.
            self.port_filter.addItem(self.controller.title(port) + f" ({port.protocol})", str(port))
            if str(port) == chosen:
                self.port_filter.setCurrentIndex(self.port_filter.count() - 1)
        self.port_filter.blockSignals(False)

    def show_rows(self) -> None:
        if not self.store.loaded:
            return
        self._update_ports()
        now = time.time()
        seconds = self.window_span(now)
        since = now - seconds
        chosen = self.selected(now)
        skipped = self.store.skipped
        self.note.setText(f"{skipped} damaged lines in the log were skipped." if skipped else "")
        totals = {port: timeline.totals(spans, since, now) for port, spans in chosen.items()}
        self._show_strips(chosen, totals, since, now)
        self.axis.setText(
            f"Strips from {report.local_time(since)} to now ({timeline.duration_text(seconds)})"
        )
        lines = [
            f"{self.controller.title(port)}: {timeline.totals_text(totals[port])}"
            for port in chosen
        ]
        self.totals.setText("\n".join(lines) or "No changes recorded yet.")
        self._show_table(chosen, now)

    def _show_strips(
        self,
        chosen: dict[Port, list[timeline.Period]],
        totals_of: dict[Port, timeline.Totals],
        since: float,
        now: float,
    ) -> None:
        for port in list(self.strips):
            if port not in chosen:
                strip, label = self.strips.pop(port), self.strip_labels.pop(port)
                self.strips_layout.removeWidget(strip)
                self.strips_layout.removeWidget(label)
                strip.deleteLater()
                label.deleteLater()
        for row, (port, spans) in enumerate(sorted(chosen.items())):
            title = self.controller.title(port)
            if port not in self.strips:
                self.strips[port] = TimelineStrip(title)
                self.strip_labels[port] = QLabel()
                self.strip_labels[port].setBuddy(self.strips[port])
            strip, label = self.strips[port], self.strip_labels[port]
            self.strips_layout.addWidget(label, row, 0)
            self.strips_layout.addWidget(strip, row, 1)
            totals = totals_of[port]
            ratio = totals.uptime_ratio
            words = f"{ratio:.1%} up" if ratio is not None else "not watched"
            label.setText(f"{title}: {words}")
            state = _state_now(spans)
            summary = f"{title}: now {state}; {timeline.totals_text(totals)}"
            strip.set_periods(spans, since, now, summary)
        # Strips come and go with the ports; Tab still goes top to bottom through them.
        chain = [self.refresh_button, *(self.strips[port] for port in sorted(self.strips))]
        for before, after in itertools.pairwise([*chain, self.table]):
            QWidget.setTabOrder(before, after)

    def _show_table(self, chosen: dict[Port, list[timeline.Period]], now: float) -> None:
        self.periods.show(timeline.ordered(chosen)[::-1], now)

    def export_text(self, kind: str) -> str:
        table = timeline.rows(self.selected(), time.time())
        return timeline.to_csv(table) if kind == "csv" else timeline.to_json(table) + "\n"

    def export(self, kind: str, target: Path | None = None) -> Path | None:
        if target is None:
            name, _ = QFileDialog.getSaveFileName(
                self, "Export history", f"portwatch-history.{kind}", f"{kind.upper()} (*.{kind})"
            )
            if not name:
                return None
            target = Path(name)
        try:
            target.write_text(self.export_text(kind), encoding="utf-8")
        except OSError as exc:
            self.note.setText(f"Could not export: {exc}")
            return None
        self.note.setText(f"Exported to {target}")
        return target


class PeriodsModel(QAbstractTableModel):
    """The periods as table rows, newest first; a row's words are made only when the view
    shows it, so 100,000 periods cost no more than the rows on screen."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._periods: list[timeline.Period] = []
        self._now = 0.0

    def show(self, newest_first: list[timeline.Period], now: float) -> None:
        self.beginResetModel()
        self._periods, self._now = newest_first, now
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._periods)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        return period_cells(self._periods[index.row()], self._now)[index.column()]


def period_cells(span: timeline.Period, now: float) -> tuple[str, str, str, str, str]:
    """Start, port, state, process, duration: a row of the table in words."""
    process = f"{span.name or '?'} (pid {span.pid})" if span.pid else ""
    if not process and span.username:
        process = f"user {span.username} (process hidden)"
    ongoing = " (ongoing)" if span.end is None else ""
    return (
        iso_time(span.start)[:19].replace("T", " "),
        f"{span.port.number}/{span.port.protocol}",
        timeline.STATE_WORDS[span.state],
        process,
        timeline.duration_text(span.duration(now)) + ongoing,
    )


def _state_now(spans: list[timeline.Period]) -> str:
    if not spans or spans[-1].end is not None:
        return "not watched"
    return timeline.STATE_WORDS[spans[-1].state]
