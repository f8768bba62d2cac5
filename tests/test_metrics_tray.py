"""The tray's Prometheus textfile setting: a real controller and scanner, real servers, the
real settings dialog (offscreen), and the whole app as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox, QLineEdit
from pytestqt.qtbot import QtBot

from tests.monitoring_support import promtool_check_metrics, value
from tests.support import free_port
from tests.ui_support import http_server, make_controller
from trayapp.core import config as cfg
from trayapp.core import textfile
from trayapp.core.model import Port
from trayapp.platforms.autostart import XdgAutostart
from trayapp.ui.controller import Controller
from trayapp.ui.metrics_export import MetricsExporter
from trayapp.ui.settings_dialog import SettingsDialog


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "textfile"
    path.mkdir()
    return path


@pytest.fixture
def exporting(portwatch_home: Path, folder: Path) -> Iterator[tuple[Controller, MetricsExporter]]:
    port = Port(free_port())
    controller = make_controller(portwatch_home, [port])
    controller.config = replace(controller.config, textfile_dir=str(folder))
    exporter = MetricsExporter(controller, refresh=1.0)
    exporter.start()
    controller.start()
    try:
        yield controller, exporter
    finally:
        controller.stop()
        exporter.stop()


def read(folder: Path) -> str:
    path = folder / textfile.FILE_NAME
    return path.read_text() if path.exists() else ""


def test_the_file_follows_changes_and_is_refreshed(
    qtbot: QtBot, exporting: tuple[Controller, MetricsExporter], folder: Path
) -> None:
    controller, exporter = exporting
    [port] = controller.ports()
    where = {"port": str(port.number), "protocol": "tcp", "label": f"label {port.number}"}
    qtbot.waitUntil(
        lambda: value(read(folder), "portwatch_port_listening", **where) == 0, timeout=10000
    )
    with http_server(port.number) as server:
        qtbot.waitUntil(
            lambda: value(read(folder), "portwatch_port_healthy", port=str(port.number)) == 1,
            timeout=10000,
        )
        text = read(folder)
        assert value(text, "portwatch_port_listening", **where) == 1
        assert value(text, "portwatch_port_owner_info", pid=str(server.pid)) == 1
        assert value(text, "portwatch_port_changes_total", kind="started") == 1
    qtbot.waitUntil(
        lambda: value(read(folder), "portwatch_port_listening", **where) == 0, timeout=10000
    )
    text = read(folder)
    assert value(text, "portwatch_port_changes_total", kind="stopped") == 1
    checked = promtool_check_metrics(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Nothing changes now, yet the file is rewritten (refresh=1 s here; 60 s in the app).
    first = value(text, "portwatch_last_scan_timestamp_seconds")
    assert first is not None
    qtbot.waitUntil(
        lambda: (value(read(folder), "portwatch_last_scan_timestamp_seconds") or 0) > first,
        timeout=3000,
    )
    assert exporter.error is None


def test_switching_the_setting_off_removes_the_file(
    qtbot: QtBot, exporting: tuple[Controller, MetricsExporter], folder: Path
) -> None:
    controller, _exporter = exporting
    qtbot.waitUntil(lambda: (folder / textfile.FILE_NAME).exists(), timeout=10000)
    controller.apply(replace(controller.config, textfile_dir=""))
    qtbot.waitUntil(lambda: not (folder / textfile.FILE_NAME).exists(), timeout=5000)
    time.sleep(1.5)  # a refresh period passes: nothing is written any more
    assert list(folder.iterdir()) == []


def test_a_folder_that_goes_away_is_reported_not_fatal(
    qtbot: QtBot, exporting: tuple[Controller, MetricsExporter], folder: Path
) -> None:
    _controller, exporter = exporting
    failures: list[str] = []
    exporter.failed.connect(failures.append)
    qtbot.waitUntil(lambda: (folder / textfile.FILE_NAME).exists(), timeout=10000)
    (folder / textfile.FILE_NAME).unlink()
    folder.rmdir()
    folder.write_text("now a file")
    qtbot.waitUntil(lambda: bool(failures), timeout=5000)
    assert "could not write" in failures[0] and exporter.error == failures[0]
    folder.unlink()
    folder.mkdir()
    qtbot.waitUntil(lambda: exporter.error is None and read(folder) != "", timeout=5000)


def test_settings_dialog_checks_the_folder_and_saves_it(
    qtbot: QtBot, portwatch_home: Path, folder: Path, tmp_path: Path
) -> None:
    controller = make_controller(portwatch_home, [])
    dialog = SettingsDialog(controller, XdgAutostart(config_home=tmp_path / "xdg"))
    qtbot.addWidget(dialog)
    field = dialog.inputs["textfile_dir"]
    assert isinstance(field, QLineEdit) and field.text() == ""
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    field.setText(str(tmp_path / "missing"))
    assert not save.isEnabled()
    assert "is not a folder" in dialog.error.text()
    field.setText(str(folder))
    assert save.isEnabled() and dialog.error.text() == ""
    save.click()
    saved = cfg.load(portwatch_home / "config" / "config.json").config
    assert saved.textfile_dir == str(folder)
    assert controller.config.textfile_dir == str(folder)


def test_the_app_writes_the_file_from_its_settings(portwatch_home: Path, folder: Path) -> None:
    port = free_port()
    config = portwatch_home / "config" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"ports": [{"port": port}], "textfile_dir": str(folder)}))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PORTWATCH_TRAY_WAIT": "0"}
    app = subprocess.Popen(
        [sys.executable, "-m", "trayapp"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "portwatch_port_listening" not in read(folder):
            time.sleep(0.1)
        text = read(folder)
    finally:
        app.send_signal(signal.SIGTERM)
        _out, err = app.communicate(timeout=15)
    assert app.returncode == 0, err
    assert value(text, "portwatch_port_listening", port=str(port), protocol="tcp") == 0
    assert value(text, "portwatch_port_changes_total", port=str(port), kind="started") == 0
