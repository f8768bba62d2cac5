"""Settings' part for services on other machines: one row per entry, the security rules said
next to the key, and the Bluesky clients' server (QSERVER_HTTP_SERVER_URI) offered, never
added by itself."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from trayapp.core import config as cfg
from trayapp.core.remote import RemoteSpecError, RemoteTarget, check_ca_file, parse_remote
from trayapp.core.remote_report import ENV_URI, suggested_target
from trayapp.ui.table_cells import cell_checked, cell_key, cell_text, check_item

TARGET, LABEL, MUTED, INTERVAL, KEY, PLAIN, CA = range(7)
HEADERS = (
    "Host:port or URL",
    "Label",
    "Muted",
    "Check every (s)",
    "API key",
    "Send key unencrypted",
    "CA file (https)",
)
SECURITY_NOTE = (
    "Only the hosts listed here are contacted. An API key goes only to its own row's host; "
    "over plain http:// to another machine it is sent only when you tick 'Send key "
    "unencrypted' (anyone on the network path can then read it): prefer https://. https:// "
    "checks the server's certificate against the system's store, plus the CA file you name "
    "for a lab's own certificates."
)


class RemoteEntries(QWidget):
    def __init__(self, entries: tuple[cfg.WatchedRemote, ...], on_change: Callable[[], object]):
        super().__init__()
        self._ready = False  # the dialog validates once it is built, not while we are
        self._notify = on_change
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Services on other machines (host:port, or an http(s) URL):"))
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setObjectName("remote_table")
        self.table.setAccessibleName("Services on other machines")
        self.table.setAccessibleDescription(
            "One row per service on another machine: host and port or URL, label, mute, "
            "seconds between checks, API key, and whether the key may go over plain HTTP"
        )
        self.table.setHorizontalHeaderLabels(list(HEADERS))
        self.table.horizontalHeader().setSectionResizeMode(TARGET, QHeaderView.ResizeMode.Stretch)
        self.table.itemChanged.connect(lambda _item: self._on_change())
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(PLAIN, QHeaderView.ResizeMode.ResizeToContents)
        # A few rows high: the watched ports' table above keeps the dialog's spare room.
        self.table.setMaximumHeight(130)
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add host")
        self.add_button.setAccessibleDescription("Add a row for a service on another machine")
        self.add_button.clicked.connect(lambda: self.add_row(None))
        self.remove_button = QPushButton("Remove host")
        self.remove_button.setAccessibleDescription("Remove the selected hosts")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        self.suggestion = suggested_target()
        self.suggest_button = QPushButton()
        self.suggest_button.setObjectName("remote_suggestion")
        if self.suggestion is not None:
            self.suggest_button.setText(f"Add {self.suggestion} (from {ENV_URI})")
            self.suggest_button.clicked.connect(self.add_suggestion)
        self.suggest_button.setVisible(self.suggestion is not None)
        buttons.addWidget(self.suggest_button)
        buttons.addStretch()
        layout.addLayout(buttons)
        self.note = QLabel(SECURITY_NOTE)
        self.note.setObjectName("remote_security_note")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        for entry in entries:
            self.add_row(entry)
        self._update_suggestion()
        self._ready = True

    def _on_change(self) -> None:
        if self._ready:
            self._notify()

    def add_row(self, entry: cfg.WatchedRemote | None, text: str = "") -> None:
        self.table.blockSignals(True)
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, TARGET, QTableWidgetItem(entry.target.title if entry else text))
        self.table.setItem(row, LABEL, QTableWidgetItem(entry.label if entry else ""))
        self.table.setItem(row, MUTED, check_item(entry.muted if entry else False))
        interval = entry.interval if entry else cfg.DEFAULT_REMOTE_INTERVAL
        self.table.setItem(row, INTERVAL, QTableWidgetItem(f"{interval:g}"))
        key = QLineEdit(entry.api_key or "" if entry else "")
        key.setEchoMode(QLineEdit.EchoMode.Password)
        key.setPlaceholderText("only for a server that asks")
        key.setAccessibleName(f"API key of host row {row + 1}")
        key.textChanged.connect(self._on_change)
        self.table.setCellWidget(row, KEY, key)
        plain = check_item(entry.allow_plain_key if entry else False)
        plain.setToolTip("Send this row's API key over plain http:// (unencrypted)")
        self.table.setItem(row, PLAIN, plain)
        self.table.setItem(row, CA, QTableWidgetItem(entry.ca_file if entry else ""))
        self.table.blockSignals(False)
        self._update_suggestion()
        self._on_change()

    def add_suggestion(self) -> None:
        if self.suggestion is not None:
            self.add_row(cfg.WatchedRemote(self.suggestion))

    def remove_selected(self) -> None:
        rows = sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True)
        for row in rows:
            self.table.removeRow(row)
        self._update_suggestion()
        self._on_change()

    def _update_suggestion(self) -> None:
        if self.suggestion is None:
            return
        listed = {self._text(row, TARGET) for row in range(self.table.rowCount())}
        self.suggest_button.setVisible(self.suggestion.title not in listed)

    def _text(self, row: int, column: int) -> str:
        return cell_text(self.table, row, column)

    def _checked(self, row: int, column: int) -> bool:
        return cell_checked(self.table, row, column)

    def entries(self) -> tuple[list[cfg.WatchedRemote], str | None]:
        """The rows as remote entries, or the first problem in them, in words."""
        result: dict[RemoteTarget, cfg.WatchedRemote] = {}
        for row in range(self.table.rowCount()):
            where = f"Host row {row + 1}"
            try:
                target = parse_remote(self._text(row, TARGET))
            except RemoteSpecError as exc:
                return [], f"{where}: {exc}"
            if target in result:
                return [], f"{where}: {target} is listed twice"
            api_key, key_problem = cell_key(self.table, row, KEY)
            if key_problem:
                return [], f"{where}: {key_problem}"
            try:
                interval = cfg.parse_health_interval(self._text(row, INTERVAL))
            except ValueError:
                interval = None
            if interval is None:
                low, high = cfg.HEALTH_INTERVAL_RANGE
                return [], f"{where}: check every {low:g} to {high:g} seconds"
            ca_file = self._text(row, CA)
            if ca_file:
                if target.scheme != "https":
                    return [], f"{where}: a CA file applies to https:// entries only"
                problem = check_ca_file(ca_file)
                if problem:
                    return [], f"{where}: {problem}"
            result[target] = cfg.WatchedRemote(
                target,
                label=cfg.clean_label(self._text(row, LABEL)),
                muted=self._checked(row, MUTED),
                api_key=api_key or None,
                allow_plain_key=self._checked(row, PLAIN),
                ca_file=ca_file,
                interval=interval,
            )
        if len(result) > cfg.MAX_WATCHED:
            return [], f"At most {cfg.MAX_WATCHED} hosts can be watched"
        return list(result.values()), None
