"""The settings dialog. Scalar settings come from the declaration in core.config."""

from __future__ import annotations

import logging
from dataclasses import replace

from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
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
from trayapp.core import textfile
from trayapp.core.apikey import ENV_KEY, ENV_KEYFILE, choose_key
from trayapp.core.model import Port
from trayapp.core.ports import PortSpecError, format_ports, parse_ports
from trayapp.platforms.autostart import Autostart, AutostartError, default_command
from trayapp.ui.accessible import name_controls, with_mnemonic
from trayapp.ui.controller import Controller
from trayapp.ui.remote_settings import RemoteEntries
from trayapp.ui.table_cells import cell_checked, cell_key, cell_text, check_item

log = logging.getLogger(__name__)
PORT, LABEL, ON_START, ON_STOP, MUTED, HEALTH, API_KEY = range(7)
HEADERS = (
    "Port",
    "Label",
    "Notify on start",
    "Notify on stop",
    "Muted",
    "Health check (s)",
    "API key",
)
HEALTH_HELP = (
    "Seconds between health checks while the port listens (2-600), or off. A check looks at "
    "an HTTP service on this machine; for a Bluesky server it reads the RE Manager's status."
)


def key_source_note() -> str:
    """Where the key comes from for a port whose row has none (the Bluesky convention)."""
    inherited = choose_key(None)
    if inherited.problem:
        return f"Ports without a key here: {inherited.problem}; no key is sent."
    if inherited.key:
        return f"Ports without a key here use the key from {inherited.origin}."
    return (
        f"A Bluesky server asks for an API key: give it here, or set {ENV_KEY} or "
        f"{ENV_KEYFILE} as for the other Bluesky tools. Keys in this table are only sent to this "
        "machine."
    )


class SettingsDialog(QDialog):
    def __init__(self, controller: Controller, autostart: Autostart, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.autostart = autostart
        self.setWindowTitle("Port Watch Settings")
        self.resize(760, 620)
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, len(HEADERS))
        ports_label = QLabel("Watched &ports (a range like 8000-8010 adds one row per port):")
        ports_label.setBuddy(self.table)
        layout.addWidget(ports_label)
        self.table.setAccessibleName("Watched ports")
        self.table.setAccessibleDescription(
            "One row per port: port, label, notify on start, on stop, muted, health check "
            "interval, API key. Arrow keys move, F2 or typing edits, Space ticks a box."
        )
        self.table.setTabKeyNavigation(False)  # Tab leaves the table; arrows move inside
        self.table.setHorizontalHeaderLabels(list(HEADERS))
        self.table.horizontalHeader().setSectionResizeMode(LABEL, QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.itemChanged.connect(self.validate)
        layout.addWidget(self.table)
        row_buttons = QHBoxLayout()
        self.add_button = QPushButton("&Add")
        self.add_button.setAccessibleDescription("Add a row for a port")
        self.add_button.clicked.connect(lambda: self.add_row(None))
        self.remove_button = QPushButton("&Remove")
        self.remove_button.setAccessibleDescription("Remove the selected rows")
        self.remove_button.clicked.connect(self.remove_selected)
        row_buttons.addWidget(self.add_button)
        row_buttons.addWidget(self.remove_button)
        row_buttons.addStretch()
        layout.addLayout(row_buttons)
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setStyleSheet("color: #b91c1c;")
        self.error.setWordWrap(True)
        layout.addWidget(self.error)
        self.key_note = QLabel(key_source_note())
        self.key_note.setObjectName("key_note")
        self.key_note.setWordWrap(True)
        layout.addWidget(self.key_note)
        self.remotes = RemoteEntries(controller.config.remotes, self.validate)
        layout.addWidget(self.remotes)

        form = QFormLayout()
        used = {"p", "a", "r", "s", "c"}  # the table's label, Add, Remove, Save, Cancel
        self.inputs: dict[str, QDoubleSpinBox | QCheckBox | QLineEdit] = {}
        config = controller.config
        for setting in cfg.SETTINGS:
            value = getattr(config, setting.key)
            widget: QDoubleSpinBox | QCheckBox | QLineEdit
            if isinstance(setting.default, str):
                widget = QLineEdit(str(value))
                widget.setPlaceholderText("off")
                widget.textChanged.connect(self.validate)
            elif isinstance(setting.default, bool):
                widget = QCheckBox()
                widget.setChecked(bool(value))
            else:
                widget = QDoubleSpinBox()
                widget.setRange(setting.minimum or 0.0, setting.maximum or 1e9)
                widget.setDecimals(1)
                widget.setSingleStep(0.5)
                widget.setValue(float(value))
            widget.setToolTip(setting.help)
            widget.setObjectName(setting.key)
            self.inputs[setting.key] = widget
            widget.setAccessibleDescription(setting.help)
            form.addRow(with_mnemonic(setting.label, used), self._with_chooser(widget))
        start_box = self.inputs["start_at_login"]
        if isinstance(start_box, QCheckBox):
            start_box.setChecked(autostart.is_enabled())
            start_box.setToolTip(autostart.describe())
        layout.addLayout(form)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        for entry in config.ports:
            self.add_row(entry)
        self.validate()
        name_controls(self)

    def _with_chooser(self, widget: QWidget) -> QWidget:
        """A folder setting gets a button that opens the folder chooser."""
        if not isinstance(widget, QLineEdit):
            return widget
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(widget)
        choose = QPushButton("Choose...")
        choose.setAccessibleName("Choose a folder")
        choose.setObjectName(f"{widget.objectName()}_choose")
        choose.clicked.connect(lambda: self._choose_folder(widget))
        box.addWidget(choose)
        row.setFocusProxy(widget)  # the row's label's mnemonic lands in the field
        return row

    def _choose_folder(self, field: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for portwatch.prom", field.text())
        if folder:
            field.setText(folder)

    # -- rows ------------------------------------------------------------------------------
    def add_row(self, entry: cfg.WatchedPort | None) -> None:
        self.table.blockSignals(True)
        row = self.table.rowCount()
        self.table.insertRow(row)
        spec = format_ports([entry.port]) if entry else ""
        self.table.setItem(row, PORT, QTableWidgetItem(spec))
        self.table.setItem(row, LABEL, QTableWidgetItem(entry.label if entry else ""))
        self.table.setItem(row, ON_START, check_item(entry.notify_start if entry else True))
        self.table.setItem(row, ON_STOP, check_item(entry.notify_stop if entry else True))
        self.table.setItem(row, MUTED, check_item(entry.muted if entry else False))
        interval = entry.health_interval if entry else cfg.DEFAULT_HEALTH_INTERVAL
        health = QTableWidgetItem(cfg.health_interval_text(interval))
        health.setToolTip(HEALTH_HELP)
        self.table.setItem(row, HEALTH, health)
        key = QLineEdit(entry.api_key or "" if entry else "")
        key.setEchoMode(QLineEdit.EchoMode.Password)
        inherited = choose_key(None)
        key.setPlaceholderText(
            f"from {inherited.origin}" if inherited.key else "only for a server that asks"
        )
        key.setAccessibleName(f"API key, row {row + 1}")
        key.textChanged.connect(self.validate)
        self.table.setCellWidget(row, API_KEY, key)
        self.table.blockSignals(False)
        port_item = self.table.item(row, PORT)
        if entry is None and port_item is not None:
            self.table.setCurrentCell(row, PORT)
            self.table.editItem(port_item)
        self.validate()

    def remove_selected(self) -> None:
        rows = sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True)
        for row in rows:
            self.table.removeRow(row)
        self.validate()

    def _text(self, row: int, column: int) -> str:
        return cell_text(self.table, row, column)

    def _checked(self, row: int, column: int) -> bool:
        return cell_checked(self.table, row, column)

    # -- validation and saving -------------------------------------------------------------
    def entries(self) -> tuple[list[cfg.WatchedPort], str | None]:
        """The rows as watched ports, or the first problem in them."""
        result: dict[Port, cfg.WatchedPort] = {}
        for row in range(self.table.rowCount()):
            spec = self._text(row, PORT)
            try:
                ports = parse_ports(spec)
            except PortSpecError as exc:
                return [], f"Row {row + 1}: {exc}"
            api_key, key_problem = cell_key(self.table, row, API_KEY)
            if key_problem:
                return [], f"Row {row + 1}: {key_problem}"
            try:
                health = cfg.parse_health_interval(self._text(row, HEALTH))
            except ValueError as exc:
                why = str(exc).replace("'health_interval'", "the health check")
                return [], f"Row {row + 1}: {why}"
            for port in ports:
                if port in result:
                    return [], f"Row {row + 1}: port {port} is listed twice"
                result[port] = cfg.WatchedPort(
                    port,
                    label=cfg.clean_label(self._text(row, LABEL)),
                    notify_start=self._checked(row, ON_START),
                    notify_stop=self._checked(row, ON_STOP),
                    muted=self._checked(row, MUTED),
                    api_key=api_key or None,
                    health_interval=health,
                )
        if len(result) > cfg.MAX_WATCHED:
            return [], f"At most {cfg.MAX_WATCHED} ports can be watched"
        return list(result.values()), None

    def textfile_problem(self) -> str | None:
        widget = self.inputs.get("textfile_dir")
        text = widget.text().strip() if isinstance(widget, QLineEdit) else ""
        if not text:
            return None
        try:
            textfile.check_folder(text)
        except textfile.TextfileError as exc:
            return f"Prometheus textfile folder: {exc}"
        return None

    def validate(self) -> bool:
        _entries, problem = self.entries()
        problem = problem or self.remotes.entries()[1] or self.textfile_problem()
        self.error.setText(problem or "")
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(problem is None)
        return problem is None

    def new_config(self) -> cfg.Config:
        entries, problem = self.entries()
        remotes, remote_problem = self.remotes.entries()
        if problem or remote_problem:
            raise ValueError(problem or remote_problem)
        values: dict[str, object] = {"remotes": tuple(remotes)}
        for key, widget in self.inputs.items():
            if isinstance(widget, QCheckBox):
                values[key] = widget.isChecked()
            elif isinstance(widget, QLineEdit):
                values[key] = widget.text().strip()
            else:
                values[key] = widget.value()
        return replace(self.controller.config, ports=tuple(entries), **values)  # type: ignore[arg-type]

    def save(self) -> None:
        if not self.validate():
            return
        config = self.new_config()
        if config.start_at_login != self.autostart.is_enabled():
            try:
                if config.start_at_login:
                    self.autostart.enable(default_command())
                else:
                    self.autostart.disable()
            except AutostartError as exc:
                self.error.setText(f"Start at login: {exc}")
                return
        try:
            self.controller.apply(config)
        except OSError as exc:
            self.error.setText(f"Could not save settings: {exc}")
            return
        self.accept()
