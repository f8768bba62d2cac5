"""Every control of every window has an accessible name, buttons have mnemonics, text grows with
the system font (real Qt widgets, offscreen). The same windows through AT-SPI and driven by
keyboard alone on the real desktop: tests/desktop/test_accessibility_desktop.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QAbstractButton, QApplication, QHeaderView, QWidget
from pytestqt.qtbot import QtBot

from tests.ui_support import make_controller
from trayapp.core.model import Port
from trayapp.platforms.autostart import XdgAutostart
from trayapp.ui.accessible import CONTROLS, CORNER, name_controls, plain, with_mnemonic
from trayapp.ui.controller import Controller
from trayapp.ui.history_window import HistoryWindow
from trayapp.ui.overview import OverviewWindow
from trayapp.ui.port_window import PortWindow
from trayapp.ui.settings_dialog import SettingsDialog

P = Port(60610)


@pytest.fixture
def controller(portwatch_home: Path) -> Iterator[Controller]:
    made = make_controller(portwatch_home, [P])
    made.start()
    yield made
    made.stop()


def windows(controller: Controller, tmp_path: Path) -> dict[str, QWidget]:
    return {
        "port window": PortWindow(controller, P),
        "settings": SettingsDialog(controller, XdgAutostart(config_home=tmp_path / "xdg")),
        "history": HistoryWindow(controller),
        "overview": OverviewWindow(controller),
    }


def test_every_control_has_a_name(qtbot: QtBot, controller: Controller, tmp_path: Path) -> None:
    for title, window in windows(controller, tmp_path).items():
        qtbot.addWidget(window)
        window.show()
        assert name_controls(window) == [], title
        for control in window.findChildren(QWidget):
            if not isinstance(control, CONTROLS) or not control.isVisibleTo(window):
                continue
            if isinstance(control, QHeaderView) or control.objectName() == CORNER:
                continue
            own = plain(control.text()) if isinstance(control, QAbstractButton) else ""
            assert control.accessibleName() or own, (title, control)
        window.close()


def test_buttons_have_distinct_mnemonics(
    qtbot: QtBot, controller: Controller, tmp_path: Path
) -> None:
    for title, window in windows(controller, tmp_path).items():
        qtbot.addWidget(window)
        keys = []
        for button in window.findChildren(QAbstractButton):
            text = button.text()
            if "&" in text.replace("&&", ""):
                keys.append(text[text.index("&") + 1].lower())
        assert keys, title
        assert len(keys) == len(set(keys)), (title, keys)
        window.close()


def test_mnemonic_helpers() -> None:
    used = {"p"}
    assert with_mnemonic("Poll interval (s)", used) == "P&oll interval (s)"
    assert "o" in used
    assert plain("Save && &quit:") == "Save & quit"


def test_text_grows_with_the_system_font(qtbot: QtBot, controller: Controller) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before = app.font()
    try:
        sizes = []
        for points in (9.0, 18.0):
            font = QFont(before)
            font.setPointSizeF(points)
            app.setFont(font)
            window = PortWindow(controller, P)
            qtbot.addWidget(window)
            sizes.append(window.heading.font().pointSizeF())
            window.close()
        assert sizes[1] == pytest.approx(2 * sizes[0]) and sizes[0] > 9
    finally:
        app.setFont(before)
