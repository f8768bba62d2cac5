"""The window of an entry on another machine: what the last check saw, and, since the process
is over there, the commands to run there. Presents only; the controller holds the check."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from trayapp.core.commands import commands_on_server
from trayapp.core.model import Port
from trayapp.core.remote_report import check_text
from trayapp.ui.controller import Controller


class RemoteWindow(QWidget):
    def __init__(self, controller: Controller, port: Port) -> None:
        super().__init__()
        self.controller = controller
        self.port = port
        self.setWindowTitle(f"Port Watch: {controller.title(port)}")
        self.heading = QLabel()
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        copy = QPushButton("Copy details")
        copy.clicked.connect(self._copy)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(copy)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.details)
        layout.addLayout(buttons)
        self.resize(640, 360)
        controller.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        check = self.controller.remote_check(self.port)
        self.heading.setText(self.controller.title(self.port))
        if check is None:
            text = f"{self.port.host}: checking..."
        else:
            commands = commands_on_server(check.target.port)
            text = check_text(check, commands, self.controller.label(self.port))
        if text != self.details.toPlainText():
            self.details.setPlainText(text)

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.details.toPlainText())
