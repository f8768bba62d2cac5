"""The History window: a timeline strip and totals per port, the periods as a table, export.

It reads the log only once shown, on a thread (HistoryStore), and then only what is appended.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from trayapp.core import paths, report, timeline
from trayapp.core.history import EventLog
from trayapp.core.model import Port
from trayapp.ui.accessible import name_controls
from trayapp.ui.controller import Controller
from trayapp.ui.history_store import HistoryStore
from trayapp.ui.shortcuts import close_on_escape
from trayapp.ui.timeline_strip import TimelineStrip

COLUMNS = ("Start", "Port", "State", "Process", "Duration")
SPANS = (
    ("Last hour", timeline.HOUR),
    ("Last day", timeline.DAY),
    ("Last week", timeline.WEEK),
    ("Everything", None),
)
MAX_ROWS = 1000  # the table is for reading; the export has every period
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

        self.table = QTreeWidget()
        self.table.setHeaderLabels(list(COLUMNS))
        self.table.setRootIsDecorated(False)
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
        first = min((s[0].start for s in self.store.spans.values() if s), default=now)
        return max(timeline.HOUR, now - first)

    def selected(self) -> dict[Port, list[timeline.Period]]:
        now = time.time()
        key = self.port_filter.currentData()
        seconds = self.span_filter.currentData()
        since = now - seconds if seconds else None
        chosen = {p: s for p, s in self.store.spans.items() if key is None or str(p) == key}
        if since is None:
            return chosen
        return {
            p: [s for s in spans if s.end is None or s.end >= since] for p, spans in chosen.items()
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
        chosen = self.selected()
        skipped = self.store.skipped
        self.note.setText(f"{skipped} damaged lines in the log were skipped." if skipped else "")
        self._show_strips(chosen, since, now)
        self.axis.setText(
            f"Strips from {report.local_time(since)} to now ({timeline.duration_text(seconds)})"
        )
        lines = []
        for port, spans in chosen.items():
            totals = timeline.totals(spans, since, now)
            lines.append(f"{self.controller.title(port)}: {timeline.totals_text(totals)}")
        self.totals.setText("\n".join(lines) or "No changes recorded yet.")
        self._show_table(chosen, now)

    def _show_strips(
        self, chosen: dict[Port, list[timeline.Period]], since: float, now: float
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
            totals = timeline.totals(spans, since, now)
            ratio = totals.uptime_ratio
            words = f"{ratio:.1%} up" if ratio is not None else "not watched"
            label.setText(f"{title}: {words}")
            state = _state_now(spans)
            summary = f"{title}: now {state}; {timeline.totals_text(totals)}"
            strip.set_periods(spans, since, now, summary)

    def _show_table(self, chosen: dict[Port, list[timeline.Period]], now: float) -> None:
        every = timeline.ordered(chosen)
        table = timeline.period_rows(every[-MAX_ROWS:], now)  # only what the table shows
        self.table.setUpdatesEnabled(False)
        self.table.clear()
        items = []
        for row in table[::-1]:
            process = f"{row['name'] or '?'} (pid {row['pid']})" if row["pid"] else ""
            if not process and row["user"]:
                process = f"user {row['user']} (process hidden)"
            ongoing = " (ongoing)" if row["end"] is None else ""
            start = str(row["start"])[:19].replace("T", " ")
            state = str(row["state"])
            items.append(
                QTreeWidgetItem(
                    [
                        start,
                        f"{row['port']}/{row['protocol']}",
                        timeline.STATE_WORDS.get(state, state),  # type: ignore[call-overload]
                        process,
                        timeline.duration_text(float(str(row["duration_s"]))) + ongoing,
                    ]
                )
            )
        self.table.addTopLevelItems(items)
        if len(every) > MAX_ROWS:
            self.note.setText(
                f"{self.note.text()} The table shows the newest {MAX_ROWS} of {len(every)} "
                "periods; the export has them all.".strip()
            )
        for column in range(len(COLUMNS)):
            self.table.resizeColumnToContents(column)
        self.table.setUpdatesEnabled(True)

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


def _state_now(spans: list[timeline.Period]) -> str:
    if not spans or spans[-1].end is not None:
        return "not watched"
    return timeline.STATE_WORDS[spans[-1].state]
