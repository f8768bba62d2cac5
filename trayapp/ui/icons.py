"""Tray icons for each overall state, drawn from the SVGs in resources/icons."""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from trayapp.resources import resource_path

SIZES = (16, 22, 24, 32, 48, 64)


def _render(name: str, size: int, mask: bool) -> QPixmap:
    renderer = QSvgRenderer(str(resource_path("icons", f"{name}.svg")))
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return QPixmap.fromImage(template_image(image) if mask else image)


def template_image(image: QImage) -> QImage:
    """A macOS template image: black, with only alpha left, since the menu bar tints it for
    light and dark mode. Light parts (the white check mark, bar or cross drawn over a coloured
    disc) become holes, so the symbol still reads in one colour."""
    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)  # straight alpha, byte order
    width, height, stride = rgba.width(), rgba.height(), rgba.bytesPerLine()
    src = bytes(rgba.constBits())[: stride * height]
    out = bytearray(len(src))
    for y in range(height):
        for x in range(width):
            i = y * stride + 4 * x
            r, g, b, a = src[i : i + 4]
            # Luma 0..1; from 0.8 up (white, light grey) the pixel becomes a hole.
            luma = (0.299 * r + 0.587 * g + 0.114 * b) / 255
            keep = min(1.0, max(0.0, (0.8 - luma) / 0.15))
            out[i + 3] = round(a * keep)
    template = QImage(bytes(out), width, height, stride, QImage.Format.Format_RGBA8888)
    return template.copy()  # own the pixels: the bytes object above is temporary


@cache
def icon(name: str, mask: bool = False) -> QIcon:
    result = QIcon()
    for size in SIZES:
        result.addPixmap(_render(name, size, mask))
    result.setIsMask(mask)
    return result


def app_icon() -> QIcon:
    return icon("app")
