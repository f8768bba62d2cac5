"""The timeline strip as painted (real Qt, offscreen): each state stands out from light and dark
backgrounds (WCAG 2.x non-text contrast, 3:1), and so do the parts of its pattern; states differ
in shape and not only colour; hover and arrow keys say what a stretch was; and the port window
shows its port's strip from the real log."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage, QPalette
from pytestqt.qtbot import QtBot

from tests.contrast import BACKGROUNDS, NON_TEXT_MINIMUM, contrast_ratio, grey, share_contrasting
from tests.ui_support import make_controller
from trayapp.core import timeline
from trayapp.core.events import Event
from trayapp.core.history import EventLog
from trayapp.core.model import Port
from trayapp.ui.controller import Controller
from trayapp.ui.port_window import PortWindow
from trayapp.ui.timeline_strip import COLOURS, EDGE, STRIPE, TimelineStrip

T0 = 1_790_000_000.0
P = Port(60610)


def one_state(state: timeline.State) -> list[timeline.Period]:
    return [timeline.Period(P, T0, T0 + 100, state, "watch-began", "start", 4, "uvicorn", "alice")]


def painted(qtbot: QtBot, spans: list[timeline.Period], background: QColor) -> QImage:
    strip = TimelineStrip("60610")
    qtbot.addWidget(strip)
    palette = strip.palette()
    palette.setColor(QPalette.ColorRole.Window, background)
    strip.setPalette(palette)
    strip.setAutoFillBackground(True)
    strip.resize(120, 24)
    strip.set_periods(spans, T0, T0 + 100, "")
    return strip.grab().toImage()


@pytest.mark.parametrize("background", list(BACKGROUNDS))
def test_each_state_stands_out_from_light_and_dark(qtbot: QtBot, background: str) -> None:
    colour = BACKGROUNDS[background]
    for state in timeline.STATES:
        # SC 1.4.11: the colour that draws each state's shape has 3:1 against the background.
        assert contrast_ratio(COLOURS[state], colour) >= NON_TEXT_MINIMUM, (state, background)
        contrasting = share_contrasting(painted(qtbot, one_state(state), colour), colour)
        # Bars fill much of the strip; the not-watched dotted line a little, but clearly.
        wanted = 0.06 if state == "unwatched" else 0.3
        assert contrasting > wanted, (state, background, round(contrasting, 3))


def test_the_patterns_parts_stand_out_from_each_other() -> None:
    """The strip's states are told apart by shape, not by colour against each other (green and
    red are alike to many eyes), so what draws the shapes must itself reach 3:1: the stripes
    of an unhealthy bar against the bar, and the top edge that shows a bar's height against
    every bar."""
    assert contrast_ratio(STRIPE, COLOURS["unhealthy"]) >= NON_TEXT_MINIMUM
    for state in ("up", "unhealthy", "down"):
        assert contrast_ratio(EDGE, COLOURS[state]) >= NON_TEXT_MINIMUM, state


@pytest.mark.parametrize("background", list(BACKGROUNDS))
def test_states_differ_in_shape_not_only_colour(qtbot: QtBot, background: str) -> None:
    """Compared in grey, what a colour-blind eye (or a grey theme) still sees."""
    colour = BACKGROUNDS[background]
    images = {state: grey(painted(qtbot, one_state(state), colour)) for state in timeline.STATES}
    for a, b in itertools.combinations(timeline.STATES, 2):
        differing = sum(abs(x - y) > 40 for x, y in zip(images[a], images[b], strict=True))
        assert differing > 0.1 * len(images[a]), (a, b, background, differing)


def test_hover_and_arrow_keys_say_what_when_and_who(qtbot: QtBot) -> None:
    events = [
        Event(T0, P, "watch-began", listening=True, pid=4, name="uvicorn", username="alice"),
        Event(T0 + 60, P, "stopped", pid=4, name="uvicorn"),
        Event(T0 + 90, P, "watch-ended", code="quit"),
    ]
    spans = timeline.periods(events)[P]
    strip = TimelineStrip("60610 Bluesky")
    qtbot.addWidget(strip)
    strip.resize(100, 24)
    strip.set_periods(spans, T0, T0 + 100, "summary words")
    strip.show()
    qtbot.waitExposed(strip)

    def at(share: float) -> str:
        return str(strip.text_at(int(strip.width() * share)))

    assert at(0.1).startswith("up from ")
    assert "(1 min 0 s), uvicorn (pid 4, user alice)" in at(0.1)
    assert at(0.7).startswith("down from ") and "(30 s)" in at(0.7)
    assert at(0.95).startswith("not watched from ")
    said: list[str] = []
    strip.described.connect(said.append)
    strip.setFocus()
    qtbot.keyClick(strip, Qt.Key.Key_Home)
    qtbot.keyClick(strip, Qt.Key.Key_Right)
    qtbot.keyClick(strip, Qt.Key.Key_End)
    assert [s.split(" from ")[0] for s in said] == ["up", "down", "not watched"]
    assert strip.accessibleDescription().startswith("not watched from ")
    assert strip.accessibleDescription().endswith("summary words")
    assert strip.accessibleName() == "Timeline of 60610 Bluesky"
    # Hover: Qt's tooltip event at a point shows that stretch's words.
    from PySide6.QtWidgets import QToolTip

    qtbot.mouseMove(strip, QPoint(10, 10))
    qtbot.waitUntil(lambda: QToolTip.isVisible() and QToolTip.text().startswith("up"), timeout=5000)


@pytest.fixture
def controller(portwatch_home: Path) -> Iterator[Controller]:
    log = EventLog(portwatch_home / "data" / "events.jsonl")
    made = make_controller(portwatch_home, [], log=log)  # writes nothing of its own for P
    made.start()
    yield made
    made.stop()


def test_the_port_window_shows_its_ports_strip(qtbot: QtBot, controller: Controller) -> None:
    log = controller.event_log
    assert log is not None
    now = time.time()
    log.append(
        [
            Event(now - 3000, P, "watch-began", listening=True, pid=7, name="uvicorn"),
            Event(now - 1800, P, "stopped", pid=7, name="uvicorn"),
            Event(now - 1200, P, "watch-ended", code="quit"),
            Event(now - 1200, Port(8080), "watch-began", listening=True, pid=8, name="node"),
        ]
    )
    window = PortWindow(controller, P)
    qtbot.addWidget(window)
    window.show()
    window.history_span.setCurrentIndex(0)  # the last hour
    qtbot.waitUntil(lambda: "up while watched" in window.history_words.text(), timeout=10000)
    strip = window.history_strip
    # Up 20 min, down 10 min, of the 30 min watched; this port's periods only.
    assert window.history_words.text() == "66.7% up while watched"
    assert "not watched" in str(strip.text_at(0))
    assert "down from" in str(strip.text_at(int(strip.width() * 0.6)))
    assert "node" not in strip.accessibleDescription()
    window.close()
