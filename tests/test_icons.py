"""The tray icons as rendered: states told apart by shape (not only colour), readable at 16 and
22 px on light and dark panels (WCAG 2.x non-text contrast, 3:1), and macOS template versions
that keep their symbols."""

from __future__ import annotations

import itertools

import pytest
from PySide6.QtGui import QColor, QImage, QPainter

from tests.contrast import BACKGROUNDS as PANELS
from tests.contrast import grey, share_contrasting
from trayapp.ui.icons import _render

STATES = ("all", "some", "none", "unhealthy", "trouble")


def on_panel(state: str, size: int, panel: QColor, mask: bool = False) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(panel)
    painter = QPainter(image)
    painter.drawPixmap(0, 0, _render(state, size, mask))
    painter.end()
    return image


@pytest.mark.parametrize("size", [16, 22])
@pytest.mark.parametrize("panel", list(PANELS))
def test_each_icon_stands_out_from_the_panel(qapp: object, size: int, panel: str) -> None:
    background = PANELS[panel]
    for state in STATES:
        contrasting = share_contrasting(on_panel(state, size, background), background)
        # SC 1.4.11: what shows the state has 3:1 against the panel; here at least a fifth of
        # the square (the shape, not just a hairline outline), whatever the panel's colour.
        assert contrasting > 0.2, (state, panel, size, round(contrasting, 3))


@pytest.mark.parametrize("size", [16, 22])
def test_states_differ_in_shape_not_only_colour(qapp: object, size: int) -> None:
    # Compared in grey on a mid panel: what a colour-blind eye (or a grey theme) still sees.
    panel = QColor("#808080")
    images = {state: grey(on_panel(state, size, panel)) for state in STATES}
    for a, b in itertools.combinations(STATES, 2):
        differing = sum(abs(x - y) > 40 for x, y in zip(images[a], images[b], strict=True))
        assert differing > 0.12 * size * size, (a, b, size, differing)


@pytest.mark.parametrize("state", STATES)
def test_macos_templates_keep_their_symbol(qapp: object, state: str) -> None:
    image = _render(state, 22, True).toImage()
    alphas = [image.pixelColor(x, y).alpha() for y in range(22) for x in range(22)]
    colours = {
        (c.red(), c.green(), c.blue())
        for c in (image.pixelColor(x, y) for y in range(22) for x in range(22))
        if c.alpha() > 0
    }
    assert colours == {(0, 0, 0)}  # template images are black; the menu bar tints them
    opaque = sum(a > 200 for a in alphas)
    assert 0.15 * 22 * 22 < opaque < 0.9 * 22 * 22
    # The symbol (check mark, bar, exclamation mark) is a hole inside the shape.
    centre = [image.pixelColor(x, y).alpha() for y in range(8, 14) for x in range(8, 14)]
    assert min(centre) < 128, state
