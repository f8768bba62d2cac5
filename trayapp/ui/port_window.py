"""The "What's on port N" window."""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from trayapp.core import report, timeline
from trayapp.core.commands import admin_hint, check_commands
from trayapp.core.exposure import exposure
from trayapp.core.history import EventLog
from trayapp.core.model import Owner, Port, PortState
from trayapp.core.paths import events_file
from trayapp.core.probe import ProbeResult
from trayapp.core.report import PortReport
from trayapp.platforms import current_os
from trayapp.platforms.processes import Outcome, refusal
from trayapp.ui.accessible import name_controls, scaled_font
from trayapp.ui.controller import Controller
from trayapp.ui.history_store import HistoryStore
from trayapp.ui.shortcuts import close_on_escape
from trayapp.ui.timeline_strip import TimelineStrip

log = logging.getLogger(__name__)
INSPECT_EVERY_MS = 3000
COLUMNS = ("Address", "Protocol", "IP", "Reachable", "PID", "Process", "User", "Started")
HISTORY_SPANS = (
    ("Last hour", timeline.HOUR),
    ("Last day", timeline.DAY),
    ("Last week", timeline.WEEK),
)
REACH_WORDS = {
    "loopback": "this machine only",
    "all-interfaces": "other machines too",
    "network": "other machines too",
}

Ask = Callable[[QWidget, str, str], bool]
Tell = Callable[[QWidget, str, str], None]


def ask_yes_no(parent: QWidget, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text)
    return answer == QMessageBox.StandardButton.Yes


def tell(parent: QWidget, title: str, text: str) -> None:
    QMessageBox.information(parent, title, text)


def _selectable(label: QLabel) -> QLabel:
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setWordWrap(True)
    return label


class PortWindow(QWidget):
    def __init__(self, controller: Controller, port: Port) -> None:
        super().__init__()
        self.controller = controller
        self.port = port
        # Dialog hooks: tests replace them, the app uses message boxes.
        self.ask: Ask = ask_yes_no
        self.tell: Tell = tell
        self.report: PortReport | None = None
        self._pending: Owner | None = None  # the owner we asked to stop, awaiting the outcome
        self.setWindowTitle(f"What's on port {port.number}/{port.protocol} - Port Watch")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(780, 700)
        self._build()
        controller.changed.connect(self._from_snapshot)
        controller.inspected.connect(self._from_inspection)
        controller.action_done.connect(self._on_action_done)
        controller.config_changed.connect(self._refresh_watch_button)
        controller.probed.connect(self._on_probed)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.request_refresh)
        self._timer.start(INSPECT_EVERY_MS)
        self._from_snapshot()
        self.request_refresh()

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        # The details scroll: long command lines and explanations never get cut off.
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        scroll.setAccessibleName("Details")
        scroll.setAccessibleDescription(
            "Listeners, process, diagnosis, port range and commands; arrow keys scroll"
        )
        self.heading = QLabel()
        self.heading.setObjectName("heading")
        scaled_font(self.heading, 1.6, bold=True)
        self.status = _selectable(QLabel("Checking..."))
        self.status.setObjectName("status")
        scaled_font(self.status, 1.2)
        self.known = _selectable(QLabel())
        self.health = _selectable(QLabel())
        self.health.setObjectName("health")
        outer.addWidget(self.heading)
        outer.addWidget(self.status)
        outer.addWidget(self.known)
        outer.addWidget(self.health)
        outer.addWidget(self._history_box())

        self.listeners = QTreeWidget()
        self.listeners.setHeaderLabels(list(COLUMNS))
        self.listeners.setAccessibleName("Listeners")
        self.listeners.setAccessibleDescription(
            "One row per socket and process: address, protocol, IP version, who can reach it, "
            "pid, process, user, start time. Arrow keys choose the process shown below."
        )
        self.listeners.setRootIsDecorated(False)
        self.listeners.setMinimumHeight(70)
        self.listeners.setMaximumHeight(140)  # a few sockets; the details below matter more
        self.listeners.currentItemChanged.connect(self._show_owner)
        layout.addWidget(self.listeners)
        self.exposure_note = _selectable(QLabel())
        self.exposure_note.setObjectName("exposure")
        self.exposure_note.setWordWrap(True)
        layout.addWidget(self.exposure_note)

        owner_box = QGroupBox("Process")
        form = QFormLayout(owner_box)
        self.owner_fields: dict[str, QLabel] = {}
        for key, title in (
            ("pid", "PID"),
            ("name", "Name"),
            ("user", "User"),
            ("exe", "Executable"),
            ("cmdline", "Command line"),
            ("started", "Started"),
        ):
            field = _selectable(QLabel("-"))
            field.setObjectName(f"owner-{key}")
            self.owner_fields[key] = field
            form.addRow(title, field)
        self.hidden_note = _selectable(QLabel())
        self.hidden_note.setStyleSheet("color: #92400e;")
        form.addRow(self.hidden_note)
        layout.addWidget(owner_box)

        diagnosis_box = QGroupBox("Diagnosis")
        diagnosis_layout = QVBoxLayout(diagnosis_box)
        self.diagnosis = _selectable(QLabel("Checking..."))
        self.diagnosis.setObjectName("diagnosis")
        diagnosis_layout.addWidget(self.diagnosis)
        layout.addWidget(diagnosis_box)

        range_box = QGroupBox("Port range")
        range_layout = QVBoxLayout(range_box)
        self.range_text = _selectable(QLabel())
        self.range_warning = _selectable(QLabel())
        self.range_warning.setStyleSheet("color: #b45309;")
        range_layout.addWidget(self.range_text)
        range_layout.addWidget(self.range_warning)
        layout.addWidget(range_box)

        commands_box = QGroupBox("Check it yourself")
        commands_form = QFormLayout(commands_box)
        for description, command in check_commands(
            self.port.number, self.port.protocol, current_os()
        ):
            line = QLineEdit(command)
            line.setReadOnly(True)
            line.setCursorPosition(0)
            copy = QPushButton("Copy")
            copy.setAccessibleName(f"Copy: {description}")
            line.setAccessibleName(description)
            copy.clicked.connect(lambda _=False, c=command: QGuiApplication.clipboard().setText(c))
            row = QHBoxLayout()
            row.addWidget(line)
            row.addWidget(copy)
            commands_form.addRow(description, row)
        layout.addWidget(commands_box)
        layout.addStretch()
        outer.addWidget(scroll, 1)

        buttons = QHBoxLayout()
        self.copy_button = QPushButton("Cop&y details")
        self.copy_button.clicked.connect(self.copy_details)
        self.browser_button = QPushButton(f"&Open http://localhost:{self.port.number}")
        self.browser_button.clicked.connect(self.open_browser)
        self.browser_button.setVisible(self.port.protocol == "tcp")
        self.terminate_button = QPushButton("&Terminate...")
        self.terminate_button.clicked.connect(self.terminate_owner)
        self.health_button = QPushButton("Check &health")
        self.health_button.clicked.connect(self.check_health)
        self.health_button.setVisible(self.port.protocol == "tcp")
        self.watch_button = QPushButton()
        self.watch_button.clicked.connect(self.toggle_watch)
        close = QPushButton("Close")
        close.setAccessibleDescription("Close this window (Escape)")
        close.clicked.connect(self.close)
        for button in (
            self.copy_button,
            self.browser_button,
            self.health_button,
            self.terminate_button,
            self.watch_button,
        ):
            buttons.addWidget(button)
        buttons.addStretch()
        buttons.addWidget(close)
        outer.addLayout(buttons)
        close_on_escape(self)
        self._refresh_watch_button()
        self._render()
        name_controls(self)

    # -- live data -------------------------------------------------------------------------
    def request_refresh(self) -> None:
        """An inspection with connections, on the scan thread; the answer comes by signal."""
        if not self.controller.paused:
            self.controller.inspect(self.port)

    def _from_snapshot(self) -> None:
        state = self.controller.state(self.port)
        if state is None or self.report is None:
            return
        if state.connections is None:
            # Snapshots carry no connections: keep those (and the diagnosis) of the last
            # inspection until the next one, a few seconds away.
            state = replace(state, connections=self.report.state.connections)
        self.set_report(replace(self.report, state=state))

    def _from_inspection(self, port: Port, report: PortReport | None) -> None:
        if port != self.port or report is None:
            return
        first = self.report is None
        probe = self.controller.probes.get(self.port)
        self.set_report(replace(report, label=self.controller.label(port), probe=probe))
        self._show_owner(self.listeners.currentItem())  # keeps "started ... ago" current
        if first:
            self._show_range()
            if report.state.listening and probe is None:
                self.check_health()

    def _on_probed(self, port: Port, result: ProbeResult, _previous: object) -> None:
        if port == self.port and self.report is not None:
            self.set_report(replace(self.report, probe=result))

    def set_report(self, report: PortReport) -> None:
        if report == self.report:
            return
        self.report = report
        self._render()

    @property
    def state(self) -> PortState | None:
        return self.report.state if self.report else None

    def check_health(self) -> None:
        if self.report is not None and self.report.state.listening:
            self.health.setText("Health: checking...")
            self.controller.probe(self.report.state)

    def _render(self) -> None:
        self._render_title()
        state = self.state
        if state is None:
            self.status.setText("Checking...")
        elif not state.listening:
            self.status.setText("Free: nothing is listening on this port.")
        elif state.owners:
            self.status.setText(f"Listening: {report.summary(state).removeprefix('listening, ')}")
        else:
            self.status.setText(
                f"Listening: {report.hidden_hint(' and '.join(state.hidden_owners))}."
            )
        self._show_known(state)
        self._show_health()
        self._show_diagnosis()
        self._fill_listeners(state)
        self.terminate_button.setEnabled(bool(state and state.owners))
        self.browser_button.setEnabled(bool(state and state.listening))

    def _show_known(self, state: PortState | None) -> None:
        service = self.report.service if self.report else None
        if state is None:
            self.known.setText("")
        elif service is None:
            self.known.setText("Known use: none recorded for this port.")
        else:
            self.known.setText(f"Known use: {report.service_text(service)}. {service.description}")

    def _show_health(self) -> None:
        probe = self.report.probe if self.report else None
        if probe is None or not (self.state and self.state.listening):
            self.health.setText("")
            return
        self.health.setText(f"Health: {report.health_sentence(probe)}")

    def _show_diagnosis(self) -> None:
        findings = self.report.findings if self.report else ()
        parts = []
        for finding in findings:
            commands = "".join(f"<br><code>{html.escape(c)}</code>" for c in finding.commands)
            parts.append(
                f"<p><b>{html.escape(finding.title)}</b><br>{html.escape(finding.detail)}"
                f"{commands}</p>"
            )
        self.diagnosis.setText("".join(parts) or "Checking...")

    def _history_box(self) -> QGroupBox:
        """This port's timeline; the log is read once the window shows, on a thread."""
        box = QGroupBox("&History")
        row = QHBoxLayout(box)
        self.history_store = HistoryStore(self.controller.event_log or EventLog(events_file()))
        self.history_store.changed.connect(self._show_history)
        self.history_strip = TimelineStrip(self.controller.title(self.port))
        self.history_span = QComboBox()
        self.history_span.setAccessibleName("History span")
        self.history_span.setAccessibleDescription("How far back the timeline goes")
        for text, seconds in HISTORY_SPANS:
            self.history_span.addItem(text, seconds)
        self.history_span.setCurrentIndex(1)
        self.history_span.currentIndexChanged.connect(self._show_history)
        self.history_words = QLabel("Reading the history...")
        self.history_words.setAccessibleName("History summary")
        self.history_words.setMinimumWidth(170)
        row.addWidget(self.history_span)
        row.addWidget(self.history_strip, 1)
        row.addWidget(self.history_words)
        self.controller.events.connect(self._refresh_history)  # a method: no lambda keeps us
        return box

    def _refresh_history(self, _events: object = None) -> None:
        if self.isVisible():
            self.history_store.refresh()

    def _show_history(self) -> None:
        if not self.history_store.loaded:
            return
        now = time.time()
        seconds = float(self.history_span.currentData())
        view = self.history_store.spans.get(self.port)
        spans = view.since(now - seconds) if view is not None else []
        totals = timeline.totals(spans, now - seconds, now)
        ratio = totals.uptime_ratio
        self.history_words.setText(
            f"{ratio:.1%} up while watched" if ratio is not None else "not watched"
        )
        summary = f"{self.port}, {self.history_span.currentText().lower()}: "
        summary += timeline.totals_text(totals)
        self.history_words.setToolTip(summary)
        self.history_strip.set_periods(spans, now - seconds, now, summary)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.history_store.refresh()

    def _fill_listeners(self, state: PortState | None) -> None:
        current = self.listeners.currentIndex().row()
        self.listeners.clear()
        rows: list[tuple[list[str], Owner | None, str | None]] = []
        notes: dict[str, None] = {}
        for listener in state.listeners if state else ():
            owner_name = listener.owners[0].full_name if listener.owners else None
            seen = exposure(listener, owner_name)
            notes[f"{listener.address}: reachable {seen.text}."] = None
            if seen.warning:
                notes[f"Warning: {seen.warning}. To fix, {seen.fix}."] = None
            base = [
                listener.address,
                listener.protocol.upper(),
                report.FAMILY_TEXT[listener.family],
                REACH_WORDS[seen.reach],
            ]
            if not listener.owners:
                user = listener.username or (f"uid {listener.uid}" if listener.uid else "?")
                rows.append(([*base, "hidden", "hidden", user, ""], None, listener.username))
            for owner in listener.owners:
                started = report.local_time(owner.create_time) if owner.create_time else ""
                rows.append(
                    (
                        [
                            *base,
                            str(owner.pid),
                            owner.full_name or "?",
                            owner.username or "?",
                            started,
                        ],
                        owner,
                        owner.username,
                    )
                )
        warn = any(note.startswith("Warning:") for note in notes)
        self.exposure_note.setText("\n".join(notes))
        self.exposure_note.setStyleSheet("color: #b45309;" if warn else "")
        for texts, row_owner, row_user in rows:
            item = QTreeWidgetItem(texts)
            item.setData(0, Qt.ItemDataRole.UserRole, (row_owner, row_user))
            self.listeners.addTopLevelItem(item)
        for column in range(len(COLUMNS)):
            self.listeners.resizeColumnToContents(column)
        chosen = self.listeners.topLevelItem(min(max(current, 0), len(rows) - 1))
        if chosen is not None:
            self.listeners.setCurrentItem(chosen)
        else:
            self._show_owner(None, None)

    def _show_owner(self, item: QTreeWidgetItem | None, _previous: object = None) -> None:
        owner, user = item.data(0, Qt.ItemDataRole.UserRole) if item else (None, None)
        fields = self.owner_fields
        if owner is None:
            for field in fields.values():
                field.setText("-")
            if item is not None:
                fields["user"].setText(user or "unknown")
                self.hidden_note.setText(
                    f"The socket belongs to {('user ' + user) if user else 'another user'}. "
                    "Its process is hidden because Port Watch runs without administrator "
                    f"rights. {admin_hint(current_os())}"
                )
            else:
                self.hidden_note.setText("")
            return
        self.hidden_note.setText("")
        fields["pid"].setText(str(owner.pid))
        fields["name"].setText(owner.full_name or "(not readable)")
        fields["user"].setText(owner.username or "(not readable)")
        fields["exe"].setText(owner.exe or "(not readable)")
        fields["cmdline"].setText(" ".join(owner.cmdline) or "(not readable)")
        if owner.create_time:
            fields["started"].setText(
                f"{report.local_time(owner.create_time)} ({report.ago(owner.create_time)})"
            )
        else:
            fields["started"].setText("(not readable)")

    def _show_range(self) -> None:
        if self.report is None:
            return
        info = self.report.info
        lines = [f"{info.title}: ports {info.first}-{info.last}.", info.explanation]
        sentence = info.ephemeral_sentence()
        if sentence:
            lines.append(sentence)
        self.range_text.setText("\n\n".join(lines))
        self.range_warning.setText(info.warning or "")
        self.range_warning.setVisible(bool(info.warning))

    # -- actions ---------------------------------------------------------------------------
    def details_text(self) -> str:
        if self.report is None:
            return f"{self.port}: not checked yet"
        return report.state_text(self.report)

    def copy_details(self) -> None:
        QGuiApplication.clipboard().setText(self.details_text())

    def open_browser(self) -> None:
        QDesktopServices.openUrl(QUrl(f"http://localhost:{self.port.number}/"))

    def selected_owner(self) -> Owner | None:
        item = self.listeners.currentItem()
        if item is None:
            return None
        owner, _user = item.data(0, Qt.ItemDataRole.UserRole)
        return owner if isinstance(owner, Owner) else None

    def terminate_owner(self) -> None:
        owner = self.selected_owner()
        if owner is None:
            return
        reason = refusal(owner.pid)
        if reason:
            self.tell(self, "Terminate", reason)
            return
        text = (
            f"Stop {owner.full_name or 'the process'} (pid {owner.pid}"
            + (f", user {owner.username}" if owner.username else "")
            + f") listening on port {self.port.number}?"
        )
        if self.ask(self, "Terminate process", text):
            self._pending = owner
            self.terminate_button.setEnabled(False)
            self.controller.terminate(owner.pid, owner.create_time, False)

    def _on_action_done(self, pid: int, outcome: Outcome) -> None:
        pending = self._pending
        if pending is None or pending.pid != pid:
            return
        self._pending = None
        self.terminate_button.setEnabled(True)
        if outcome.status == "still-running":
            question = f"{outcome.message}. Force it to stop (kill)?"
            if self.ask(self, "Still running", question):
                self._pending = pending
                self.controller.terminate(pending.pid, pending.create_time, True)
            return
        self.tell(self, "Terminate", outcome.message)
        self.request_refresh()

    def toggle_watch(self) -> None:
        try:
            if self.controller.is_watched(self.port):
                self.controller.unwatch(self.port)
            else:
                self.controller.watch(self.port)
        except OSError as exc:
            self.tell(self, "Settings not saved", f"Could not save settings: {exc}")

    def _refresh_watch_button(self) -> None:
        watched = self.controller.is_watched(self.port)
        self.watch_button.setText("Stop &watching" if watched else "&Watch this port")
        self._render_title()

    def _render_title(self) -> None:
        label = self.controller.label(self.port)
        self.heading.setText(f"Port {self.port}" + (f": {label}" if label else ""))
        # The title carries the state too, so a taskbar or window list tells it at a glance.
        state = report.summary(self.state) if self.state else "checking"
        self.setWindowTitle(f"What's on port {self.port}: {state} - Port Watch")
