"""What screen readers and keyboard users need from every window: a name for each control (from
its text, its label, or what the window says it is for), mnemonics, and text that scales with
the system font instead of fixed point sizes."""

from __future__ import annotations

from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QWidget,
)

CORNER = "qt_tableview_cornerbutton"  # the select-all square of a table: part of the table
CONTROLS = (QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox, QLineEdit)


def plain(text: str) -> str:
    """A label's text without its mnemonic marker: '&Save' -> 'Save', 'A && B' -> 'A & B'."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip(":").strip()


def with_mnemonic(text: str, used: set[str]) -> str:
    """`text` with an '&' before its first letter not yet in `used` (which it then joins)."""
    for index, char in enumerate(text):
        if char.isalpha() and char.lower() not in used:
            used.add(char.lower())
            return text[:index] + "&" + text[index:]
    return text


def name_controls(window: QWidget) -> list[QWidget]:
    """Give every control under `window` that has no accessible name one: the text of the
    label that is its buddy or its form label, its own text, or its tooltip. Returns the
    controls still without a name (a test asserts there are none)."""
    labels: dict[int, str] = {}
    for label in window.findChildren(QLabel):
        buddy = label.buddy()
        if buddy is not None and label.text():
            labels[id(buddy)] = plain(label.text())
    for form in window.findChildren(QFormLayout):
        for row in range(form.rowCount()):
            label_item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            field_item = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
            shown = label_item.widget() if label_item is not None else None
            field = field_item.widget() if field_item is not None else None
            if isinstance(shown, QLabel) and field is not None and shown.text():
                for control in [field, *field.findChildren(QWidget)]:
                    labels.setdefault(id(control), plain(shown.text()))
    unnamed: list[QWidget] = []
    for control in window.findChildren(QWidget):
        if not isinstance(control, CONTROLS) or control.accessibleName():
            continue
        if isinstance(control, QHeaderView) or control.objectName() == CORNER:
            continue  # part of its table, which is named
        if isinstance(control, QAbstractButton) and plain(control.text()):
            continue  # Qt names a button by its text, and follows when the text changes
        name = labels.get(id(control)) or plain(control.toolTip())
        if name:
            control.setAccessibleName(name)
        elif control.isVisibleTo(window) or not control.parent():
            unnamed.append(control)
    return unnamed


def scaled_font(widget: QWidget, factor: float, bold: bool = False) -> None:
    """A bigger font relative to the system's, so it grows when the user's font does."""
    font = QFont(widget.font())
    size = font.pointSizeF()
    if size > 0:
        font.setPointSizeF(size * factor)
    font.setBold(bold)
    widget.setFont(font)
