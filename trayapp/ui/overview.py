"""The overview window: every watched port at a glance. Also the main window when the desktop
has no tray."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from trayapp.core import status
from trayapp.core.model import Port
from trayapp.ui.accessible import name_controls
from trayapp.ui.controller import Controller
from trayapp.ui.icons import icon
from trayapp.ui.shortcuts import close_on_escape

COLUMNS = ("Port", "Label", "State", "Health", "Addresses")


class OverviewWindow(QWidget):
    open_port = Signal(object)  # Port
    check_port = Signal()
    watch_port = Signal()
    open_settings = Signal()
    open_history = Signal()
    quit_requested = Signal()

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller
        self.setWindowTitle("Port Watch")
        self.resize(720, 320)
        layout = QVBoxLayout(self)
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setVisible(False)
        self.notice.setStyleSheet("color: #92400e;")
        layout.addWidget(self.notice)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b91c1c;")
        layout.addWidget(self.error)
        self.table = QTreeWidget()
        self.table.setHeaderLabels(list(COLUMNS))
        self.table.setRootIsDecorated(False)
        self.table.setAccessibleName("Watched ports")
        self.table.setAccessibleDescription(
            "One row per watched port (and service on another machine) with its state and "
            "health in words; Enter opens the port"
        )
        self.table.itemActivated.connect(self._activated)
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        for text, signal in (
            ("&Check a port...", self.check_port),
            ("&Watch a port...", self.watch_port),
            ("&History...", self.open_history),
            ("&Settings...", self.open_settings),
        ):
            button = QPushButton(text)
            button.clicked.connect(signal)
            buttons.addWidget(button)
        buttons.addStretch()
        quit_button = QPushButton("&Quit Port Watch")
        quit_button.clicked.connect(self.quit_requested)
        buttons.addWidget(quit_button)
        layout.addLayout(buttons)
        controller.changed.connect(self.refresh)
        controller.config_changed.connect(self.refresh)
        controller.paused_changed.connect(self.refresh)
        controller.probed.connect(lambda *_: self.refresh())
        self._rows: list[tuple[Port, tuple[str, ...], str]] = []
        self.refresh()
        close_on_escape(self)
        name_controls(self)

    def set_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def showEvent(self, event: QShowEvent) -> None:
        self.refresh()
        super().showEvent(event)

    def refresh(self) -> None:
        if not self.isVisible():
            return  # hidden most of the day: redrawn when shown, not on every check
        self.setWindowIcon(icon(self.controller.icon_state()))
        self.error.setText(f"Cannot scan: {self.controller.error}" if self.controller.error else "")
        self.error.setVisible(bool(self.controller.error))
        rows = [self._row(port) for port in self.controller.ports()]
        rows += [self._remote_row(port) for port in self.controller.remote_ports()]
        if rows == self._rows:
            return  # most checks change nothing a person would see
        self._rows = rows
        selected = self.table.currentIndex().row()
        self.table.clear()
        for port, texts, tip in rows:
            item = QTreeWidgetItem(list(texts))
            if tip:
                item.setToolTip(3, tip)
            item.setData(0, Qt.ItemDataRole.UserRole, port)
            self.table.addTopLevelItem(item)
        for column in range(len(COLUMNS)):
            self.table.resizeColumnToContents(column)
        chosen = self.table.topLevelItem(selected) if selected >= 0 else None
        if chosen is not None:
            self.table.setCurrentItem(chosen)

    def _row(self, port: Port) -> tuple[Port, tuple[str, ...], str]:
        """The row's texts and its health tooltip, as the view shows them."""
        state = self.controller.state(port)
        probe = self.controller.probes.get(port)
        paused = self.controller.paused
        text = status.port_status(state, None, paused=paused, failed=bool(self.controller.error))
        health = "" if paused else status.health_words(probe, state)
        addresses = (
            ", ".join(dict.fromkeys(lst.address for lst in state.listeners)) if state else ""
        )
        tip = probe.summary if probe is not None and state is not None and state.listening else ""
        return port, (str(port), self.controller.label(port), text, health, addresses), tip

    def _remote_row(self, port: Port) -> tuple[Port, tuple[str, ...], str]:
        """An entry on another machine: the host in the port column, its words as the tray's."""
        check = self.controller.remote_check(port)
        paused = self.controller.paused
        text = status.remote_status(check, paused=paused, health=False)
        health = "" if paused else status.remote_health_words(check)
        up = check is not None and check.up
        address = (check.reach.address or "") if up and check is not None else ""
        probe = check.result if up and check is not None else None
        tip = probe.summary if probe is not None else ""
        return port, (str(port), self.controller.label(port), text, health, address), tip

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        port = item.data(0, Qt.ItemDataRole.UserRole)
        if isinstance(port, Port):
            self.open_port.emit(port)
