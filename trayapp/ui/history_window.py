"""The History window: per-port timeline from events.jsonl, totals, export."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from trayapp.core import paths, timeline
from trayapp.core.history import EventLog
from trayapp.core.model import Port
from trayapp.ui.controller import Controller
from trayapp.ui.shortcuts import close_on_escape

COLUMNS = ("Start", "Port", "Change", "Process", "State", "Duration")
SPANS = (("Last day", timeline.DAY), ("Last week", timeline.WEEK), ("Everything", None))


class HistoryWindow(QWidget):
    def __init__(self, controller: Controller, log: EventLog | None = None) -> None:
        super().__init__()
        self.controller = controller
        self.log = log or EventLog(paths.events_file())
        self.setWindowTitle("Port Watch History")
        self.resize(820, 480)
        layout = QVBoxLayout(self)
        filters = QHBoxLayout()
        self.port_filter = QComboBox()
        self.span_filter = QComboBox()
        for text, seconds in SPANS:
            self.span_filter.addItem(text, seconds)
        filters.addWidget(QLabel("Port:"))
        filters.addWidget(self.port_filter)
        filters.addWidget(QLabel("Show:"))
        filters.addWidget(self.span_filter)
        filters.addStretch()
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.reload)
        filters.addWidget(refresh)
        layout.addLayout(filters)
        self.totals = QLabel()
        self.totals.setWordWrap(True)
        self.totals.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.totals)
        self.table = QTreeWidget()
        self.table.setHeaderLabels(list(COLUMNS))
        self.table.setRootIsDecorated(False)
        layout.addWidget(self.table)
        self.note = QLabel()
        layout.addWidget(self.note)
        buttons = QHBoxLayout()
        self.csv_button = QPushButton("Export CSV...")
        self.csv_button.clicked.connect(lambda: self.export("csv"))
        self.json_button = QPushButton("Export JSON...")
        self.json_button.clicked.connect(lambda: self.export("json"))
        buttons.addWidget(self.csv_button)
        buttons.addWidget(self.json_button)
        buttons.addStretch()
        layout.addLayout(buttons)
        self.port_filter.currentIndexChanged.connect(self.show_rows)
        self.span_filter.currentIndexChanged.connect(self.show_rows)
        controller.events.connect(lambda _events: self.reload())
        self.reload()
        close_on_escape(self)

    def reload(self) -> None:
        result = self.log.read()
        self.spans = timeline.periods(result.events)
        self.note.setText(
            f"{result.skipped} damaged lines in the log were skipped." if result.skipped else ""
        )
        chosen = self.port_filter.currentData()
        self.port_filter.blockSignals(True)
        self.port_filter.clear()
        self.port_filter.addItem("All ports", None)
        for port in sorted(set(self.spans) | set(self.controller.ports())):
            # Keyed by text: Qt can't compare Python objects stored as item data.
            self.port_filter.addItem(self.controller.title(port) + f" ({port.protocol})", str(port))
            if str(port) == chosen:
                self.port_filter.setCurrentIndex(self.port_filter.count() - 1)
        self.port_filter.blockSignals(False)
        self.show_rows()

    def selected(self) -> dict[Port, list[timeline.Period]]:
        now = time.time()
        key = self.port_filter.currentData()
        seconds = self.span_filter.currentData()
        since = now - seconds if seconds else None
        chosen = {p: s for p, s in self.spans.items() if key is None or str(p) == key}
        if since is None:
            return chosen
        return {
            p: [s for s in spans if s.end is None or s.end >= since] for p, spans in chosen.items()
        }

    def show_rows(self) -> None:
        now = time.time()
        seconds = self.span_filter.currentData() or timeline.WEEK
        chosen = self.selected()
        lines = []
        for port, spans in chosen.items():
            totals = timeline.totals(spans, now - seconds, now)
            ratio = totals.uptime_ratio
            share = f" ({ratio:.1%} of the time seen)" if ratio is not None else ""
            lines.append(
                f"{self.controller.title(port)}: up {timeline.duration_text(totals.up)}, "
                f"down {timeline.duration_text(totals.down)}{share}"
            )
        self.totals.setText("\n".join(lines) or "No changes recorded yet.")
        self.table.clear()
        for row in reversed(timeline.rows(chosen, now)):
            process = f"{row['name'] or '?'} ({row['pid']})" if row["pid"] else "hidden"
            ongoing = " (ongoing)" if row["end"] is None else ""
            start = str(row["start"])[:19].replace("T", " ")
            item = QTreeWidgetItem(
                [
                    start,
                    f"{row['port']}/{row['protocol']}",
                    str(row["event"]),
                    process,
                    str(row["state"]),
                    timeline.duration_text(float(str(row["duration_s"]))) + ongoing,
                ]
            )
            self.table.addTopLevelItem(item)
        for column in range(len(COLUMNS)):
            self.table.resizeColumnToContents(column)

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
