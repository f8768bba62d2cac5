"""Contrast as WCAG 2.x measures it (relative luminance, SC 1.4.11 non-text contrast: a part
needed to see a state has a ratio of at least 3:1 against what is next to it), and the grey a
colour-blind eye or a grey theme still sees."""

from __future__ import annotations

from PySide6.QtGui import QColor, QImage

# Panels and window backgrounds the icons and strips are checked against.
BACKGROUNDS = {"light": QColor("#f3f4f6"), "dark": QColor("#1f2937")}
NON_TEXT_MINIMUM = 3.0  # WCAG 2.1/2.2 SC 1.4.11


def _linear(channel: int) -> float:
    value = channel / 255
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def relative_luminance(color: QColor) -> float:
    return (
        0.2126 * _linear(color.red())
        + 0.7152 * _linear(color.green())
        + 0.0722 * _linear(color.blue())
    )


def contrast_ratio(a: QColor, b: QColor) -> float:
    """From 1 (the same) to 21 (black on white)."""
    light, dark = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def luma(color: QColor) -> float:
    """Grey level 0-255 (Rec. 601): what tells shapes apart without colour."""
    return 0.299 * color.red() + 0.587 * color.green() + 0.114 * color.blue()


def pixels(image: QImage) -> list[QColor]:
    return [image.pixelColor(x, y) for y in range(image.height()) for x in range(image.width())]


def grey(image: QImage) -> list[float]:
    return [luma(colour) for colour in pixels(image)]


def share_contrasting(image: QImage, background: QColor) -> float:
    """The share of the image that has 3:1 against the background."""
    colours = pixels(image)
    return sum(contrast_ratio(c, background) >= NON_TEXT_MINIMUM for c in colours) / len(colours)
