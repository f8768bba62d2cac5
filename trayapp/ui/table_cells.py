"""Cells the settings tables share."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit, QTableWidget, QTableWidgetItem

from trayapp.core.apikey import ALLOWED as KEY_ALLOWED
from trayapp.core.apikey import clean_key


def check_item(checked: bool) -> QTableWidgetItem:
    """A check box cell (keyboard: Space toggles it)."""
    item = QTableWidgetItem()
    item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
    item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
    return item


def cell_text(table: QTableWidget, row: int, column: int) -> str:
    item = table.item(row, column)
    return item.text().strip() if item else ""


def cell_checked(table: QTableWidget, row: int, column: int) -> bool:
    item = table.item(row, column)
    return bool(item and item.checkState() == Qt.CheckState.Checked)


def cell_key(table: QTableWidget, row: int, column: int) -> tuple[str, str | None]:
    """The API key typed in a row's key field, and what is wrong with it (the one key rule)."""
    widget = table.cellWidget(row, column)
    key = widget.text().strip() if isinstance(widget, QLineEdit) else ""
    if key and clean_key(key) is None:
        return key, f"the API key must be {KEY_ALLOWED}"
    return key, None
