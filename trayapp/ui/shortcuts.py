"""Keyboard habits every window of the app shares."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QWidget


def close_on_escape(window: QWidget) -> None:
    """Escape and the platform's Close keys (Ctrl+W, Cmd+W) close the window."""
    for keys in (QKeySequence(QKeySequence.StandardKey.Close), QKeySequence(Qt.Key.Key_Escape)):
        QShortcut(keys, window, window.close)
