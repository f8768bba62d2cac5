"""Tray icons for each overall state, drawn from the SVGs in resources/icons."""

from __future__ import annotations

from functools import cache
from typing import Literal

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from trayapp.core.model import Snapshot
from trayapp.resources import resource_path

IconState = Literal["all", "some", "none", "trouble"]
SIZES = (16, 22, 24, 32, 48, 64)


def overall_state(snapshot: Snapshot | None, failed: bool) -> IconState:
    if failed or snapshot is None:
        return "trouble"
    listening = [state.listening for state in snapshot.states]
    if listening and all(listening):
        return "all"
    return "some" if any(listening) else "none"


def _render(name: str, size: int, mask: bool) -> QPixmap:
    renderer = QSvgRenderer(str(resource_path("icons", f"{name}.svg")))
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    if mask:
        # macOS template images: only the alpha counts, the menu bar tints it.
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
        painter.fillRect(pixmap.rect(), QColor("black"))
    painter.end()
    return pixmap


@cache
def icon(name: str, mask: bool = False) -> QIcon:
    result = QIcon()
    for size in SIZES:
        result.addPixmap(_render(name, size, mask))
    result.setIsMask(mask)
    return result


def app_icon() -> QIcon:
    return icon("app")
