"""Widgets and signal paths with real Qt (offscreen), real sockets and real child processes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from tests import probe_servers as servers
from tests.support import app_env, free_port, wait_for_log
from tests.ui_support import http_server, make_controller
from trayapp.core import config as cfg
from trayapp.core.events import Event
from trayapp.core.history import EventLog
from trayapp.core.model import Port, Snapshot
from trayapp.core.scanning import Scanner
from trayapp.platforms.autostart import XdgAutostart
from trayapp.platforms.scanners import create_scanner
from trayapp.ui.controller import Controller
from trayapp.ui.history_window import HistoryWindow
from trayapp.ui.port_window import PortWindow
from trayapp.ui.settings_dialog import API_KEY, HEALTH, LABEL, PORT, SettingsDialog
from trayapp.ui.tray import Tray, notification_text


@pytest.fixture
def controller_for(portwatch_home: Path) -> Iterator[object]:
    made: list[Controller] = []

    def make(ports: list[Port], **kwargs: object) -> Controller:
        controller = make_controller(portwatch_home, ports, **kwargs)  # type: ignore[arg-type]
        controller.start()
        made.append(controller)
        return controller

    yield make
    for controller in made:
        controller.stop()


def test_port_window_shows_a_real_servers_pid_and_cmdline(qtbot: QtBot, controller_for) -> None:
    port = Port(free_port())
    controller = controller_for([port])
    with http_server(port.number) as child:
        window = PortWindow(controller, port)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitUntil(lambda: window.owner_fields["pid"].text() == str(child.pid), timeout=10000)
        cmdline = window.owner_fields["cmdline"].text()
        assert "http.server" in cmdline and str(port.number) in cmdline
        assert window.status.text().startswith("Listening")
        assert "127.0.0.1" in window.details_text()
        assert window.listeners.topLevelItem(0).text(0) == "127.0.0.1"
        # The health probe ran on the action thread and found the HTTP server.
        qtbot.waitUntil(lambda: "HTTP 200" in window.health.text(), timeout=5000)
        assert "Held by python" in window.diagnosis.text()
        assert ("Dynamic" if port.number >= 49152 else "(registered)") in window.range_text.text()
    # Stays live: the server's exit shows without reopening the window.
    qtbot.waitUntil(lambda: window.status.text().startswith("Free"), timeout=10000)
    assert window.owner_fields["pid"].text() == "-"
    window.close()


def test_port_window_says_who_can_reach_each_listener(qtbot: QtBot, controller_for) -> None:
    """A socket on all interfaces and one on loopback, both real, on the same port."""
    import socket

    port = Port(free_port())
    controller = controller_for([port])
    wide = socket.socket(socket.AF_INET6)
    wide.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    wide.bind(("::", port.number))
    wide.listen()
    local = socket.socket()
    local.bind(("127.0.0.1", port.number))
    local.listen()
    try:
        window = PortWindow(controller, port)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitUntil(lambda: window.listeners.topLevelItemCount() == 2, timeout=10000)
        reach = {
            window.listeners.topLevelItem(i).text(0): window.listeners.topLevelItem(i).text(3)
            for i in range(2)
        }
        assert reach == {"::": "other machines too", "127.0.0.1": "this machine only"}
        note = window.exposure_note.text()
        assert "::: reachable from other machines: bound to all interfaces (::), unless a " in note
        assert "127.0.0.1: reachable only from this machine (loopback)." in note
        assert "Warning" not in note  # an ordinary port: nothing to warn about
        window.close()
    finally:
        wide.close()
        local.close()


def test_terminate_asks_then_reports_the_real_outcome(qtbot: QtBot, controller_for) -> None:
    port = Port(free_port())
    controller = controller_for([port])
    questions: list[str] = []
    told: list[str] = []
    with http_server(port.number) as child:
        window = PortWindow(controller, port)
        qtbot.addWidget(window)
        window.ask = lambda _w, _t, text: questions.append(text) or True  # type: ignore[func-returns-value]
        window.tell = lambda _w, _t, text: told.append(text)
        qtbot.waitUntil(lambda: window.selected_owner() is not None, timeout=10000)
        window.terminate_owner()
        assert questions and f"pid {child.pid}" in questions[0]
        qtbot.waitUntil(lambda: bool(told), timeout=10000)
        # The name as the OS reports it (python, python3, python3.11 by how it was started).
        name = psutil.Process(child.pid).name() if child.poll() is None else told[0].split()[0]
        assert told == [f"{name} (pid {child.pid}) stopped"]
        assert child.wait(5) is not None


def test_terminate_declined_does_nothing(qtbot: QtBot, controller_for) -> None:
    port = Port(free_port())
    controller = controller_for([port])
    with http_server(port.number) as child:
        window = PortWindow(controller, port)
        qtbot.addWidget(window)
        window.ask = lambda *_: False
        qtbot.waitUntil(lambda: window.selected_owner() is not None, timeout=10000)
        window.terminate_owner()
        time.sleep(0.3)
        assert child.poll() is None


def test_unwatched_port_window_and_watch_button(
    qtbot: QtBot, controller_for, portwatch_home: Path
) -> None:
    controller = controller_for([])
    port = Port(free_port())
    window = PortWindow(controller, port)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.status.text().startswith("Free"), timeout=10000)
    assert window.watch_button.text() == "&Watch this port"
    window.watch_button.click()
    assert controller.is_watched(port)
    assert window.watch_button.text() == "Stop &watching"
    saved = cfg.load(portwatch_home / "config" / "config.json").config
    assert [e.port for e in saved.ports] == [port]


def test_tray_menu_and_tooltip_are_live(qtbot: QtBot, controller_for) -> None:
    port = Port(free_port())
    controller = controller_for([port])
    tray = Tray(controller)
    qtbot.waitUntil(lambda: "free" in tray.tooltip(), timeout=10000)
    tray.menu.aboutToShow.emit()
    texts = [a.text() for a in tray.menu.actions()]
    assert f"{port.number} label {port.number}: free" in texts
    assert {"Check a port...", "Watch a port...", "History...", "Settings...", "Quit"} <= set(texts)
    assert tray.icon_state == "none"
    with http_server(port.number) as child:
        qtbot.waitUntil(lambda: tray.icon_state == "all", timeout=10000)
        tray.menu.aboutToShow.emit()
        line = tray.menu.actions()[0].text()
        assert line.startswith(
            f"{port.number} label {port.number}: listening, python (pid {child.pid}"
        )
        opened: list[Port] = []
        tray.open_port.connect(opened.append)
        tray.menu.actions()[0].trigger()
        assert opened == [port]


def test_tray_health_menu_icon_and_notifications(
    qtbot: QtBot, portwatch_home: Path, tmp_path: Path
) -> None:
    """The tray over a live Bluesky-like server: health in the menu line and tooltip, the
    unhealthy icon, and one notification when it changes (the D-Bus side of it is in
    tests/desktop/test_bluesky_tray.py)."""
    with servers.serve(servers.BlueskyLike) as server:
        port = Port(server.port)
        entry = cfg.WatchedPort(port, "Queue", health_interval=0.3)
        config = cfg.Config(ports=(entry,), interval=0.2)
        controller = Controller(
            portwatch_home / "config.json",
            config,
            create_scanner,
            event_log=EventLog(tmp_path / "events.jsonl"),
        )
        controller.start()
        try:
            tray = Tray(controller)
            sent: list[tuple[str, str]] = []
            tray.send_notification = lambda title, body, _replaces: sent.append((title, body)) or 1
            qtbot.waitUntil(
                lambda: "[RE Manager idle, 2 queued]" in tray.port_line(port), timeout=10000
            )
            assert tray.icon_state == "all"
            assert "RE Manager idle, 2 queued, 5 in history" in tray.tooltip()
            assert sent == []  # healthy from the start: nothing to say
            server.options["manager"] = "unreachable"
            qtbot.waitUntil(lambda: tray.icon_state == "unhealthy", timeout=10000)
            assert tray.port_line(port).endswith("[RE Manager unreachable]")
            qtbot.waitUntil(lambda: len(sent) == 1, timeout=5000)
            assert sent[0] == (
                f"{port.number} Queue",
                "unhealthy: HTTP server up, RE Manager unreachable",
            )
            qtbot.wait(1000)  # three more checks, all the same: no more notifications
            assert len(sent) == 1
            server.options["manager"] = "idle"
            qtbot.waitUntil(lambda: tray.icon_state == "all", timeout=10000)
            # Back within the flood window: said when the window ends, not lost.
            qtbot.waitUntil(lambda: len(sent) == 2, timeout=15000)
            assert sent[1][1].startswith("healthy again: RE Manager idle")
            # Muted: the icon still changes, nothing is notified.
            controller.apply(replace(controller.config, notifications=False))
            server.options["manager"] = "unreachable"
            qtbot.waitUntil(lambda: tray.icon_state == "unhealthy", timeout=10000)
            qtbot.wait(500)
            assert len(sent) == 2
        finally:
            controller.stop()
    kinds = [e.kind for e in EventLog(tmp_path / "events.jsonl").read().events]
    assert [k for k in kinds if not k.startswith("watch-")] == ["unhealthy", "healthy", "unhealthy"]
    assert kinds[0] == "watch-began" and kinds[-1] == "watch-ended"


def test_pause_stops_scanning(qtbot: QtBot, portwatch_home: Path) -> None:
    """Paused means idle: no scans at all (and no timer to run them) over many intervals."""
    calls: list[float] = []

    def counting_scanner() -> Scanner:
        scanner = create_scanner()
        scan = scanner.scan

        def counted(*args: object, **kwargs: object) -> Snapshot:
            calls.append(time.monotonic())
            return scan(*args, **kwargs)  # type: ignore[arg-type]

        scanner.scan = counted  # type: ignore[method-assign]
        return scanner

    config = cfg.Config(ports=(cfg.WatchedPort(Port(free_port())),), interval=0.5)
    controller = Controller(portwatch_home / "config.json", config, counting_scanner)
    controller.start()
    try:
        qtbot.waitUntil(lambda: len(calls) >= 2, timeout=10000)
        controller.set_paused(True)
        qtbot.wait(300)
        paused_at = len(calls)
        qtbot.wait(2000)  # four intervals
        assert len(calls) == paused_at
        assert controller.snapshot is not None and controller.snapshot.states == ()
        controller.set_paused(False)
        qtbot.waitUntil(lambda: len(calls) >= paused_at + 2, timeout=5000)
    finally:
        controller.stop()


def event(kind: str, port: Port, pid: int = 42) -> Event:
    return Event(time=time.time(), port=port, kind=kind, pid=pid, name="uvicorn", username="alice")  # type: ignore[arg-type]


def test_notifications_name_port_label_and_process(qtbot: QtBot, controller_for) -> None:
    port = Port(60610)
    controller = controller_for([])
    controller.config = cfg.Config()  # the default: 60610 labelled as the Bluesky API
    now = [100.0]
    tray = Tray(controller, clock=lambda: now[0])
    sent: list[tuple[str, str]] = []
    tray.send_notification = lambda title, body, _replaces: sent.append((title, body))
    tray.notify([event("started", port, 4242)])
    assert sent == [
        ("60610 Bluesky Queue Server (HTTP API)", "now listening: uvicorn (pid 4242, user alice)")
    ]
    # Flapping: folded, then one summary with the latest state when the window ends.
    tray.notify([event("stopped", port), event("started", port), event("stopped", port)])
    assert len(sent) == 1
    now[0] = 111.0
    qtbot.waitUntil(lambda: len(sent) == 2, timeout=15000)
    assert sent[1][1].startswith("stopped: uvicorn (pid 42")
    assert "3 changes" in sent[1][1]


def test_mutes_and_per_port_switches(qtbot: QtBot, controller_for) -> None:
    a, b = Port(1111), Port(2222)
    controller = controller_for([])
    controller.config = cfg.Config(
        ports=(cfg.WatchedPort(a, "a", notify_stop=False), cfg.WatchedPort(b, "b", muted=True))
    )
    tray = Tray(controller)
    sent: list[tuple[str, str]] = []
    tray.send_notification = lambda title, body, _replaces: sent.append((title, body))
    tray.notify([event("stopped", a), event("started", b)])
    assert sent == []
    tray.notify([event("started", a)])
    assert len(sent) == 1
    controller.config = cfg.Config(ports=controller.config.ports, notifications=False)
    tray.notify([event("started", Port(3333))])
    assert len(sent) == 1


def test_notification_text_for_hidden_owner() -> None:
    hidden = Event(time=0.0, port=Port(80), kind="started", username="bob")
    _title, body = notification_text(hidden, "80")
    assert body == "now listening: a process of user bob (hidden without administrator rights)"


def test_settings_round_trip_through_a_real_file(
    qtbot: QtBot, controller_for, portwatch_home: Path, tmp_path: Path
) -> None:
    controller = controller_for([])
    autostart = XdgAutostart(config_home=tmp_path / "xdg")
    dialog = SettingsDialog(controller, autostart)
    qtbot.addWidget(dialog)
    dialog.add_row(None)
    row = dialog.table.rowCount() - 1
    dialog.table.item(row, PORT).setText("8000-8002/udp")
    dialog.table.item(row, LABEL).setText("instruments")
    dialog.table.cellWidget(row, API_KEY).setText("k3y")  # type: ignore[union-attr]
    dialog.inputs["interval"].setValue(2.5)  # type: ignore[union-attr]
    dialog.inputs["start_at_login"].setChecked(True)  # type: ignore[union-attr]
    assert dialog.validate()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    saved = cfg.load(portwatch_home / "config" / "config.json").config
    assert saved.interval == 2.5
    assert [e.port for e in saved.ports] == [
        Port(8000, "udp"),
        Port(8001, "udp"),
        Port(8002, "udp"),
    ]
    assert {e.label for e in saved.ports} == {"instruments"}
    assert saved.ports[0].api_key == "k3y"
    assert autostart.is_enabled()
    assert controller.config == saved
    # Reopened, it shows what was saved.
    again = SettingsDialog(controller, autostart)
    qtbot.addWidget(again)
    assert again.table.rowCount() == 3
    assert again.table.item(0, PORT).text() == "8000/udp"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("70000", "'70000'"),
        ("abc", "'abc'"),
        ("80/sctp", "sctp"),
        ("", "no port given"),
        ("90-80", "90-80"),
    ],
)
def test_settings_show_the_parser_message_and_save_nothing(
    qtbot: QtBot, controller_for, portwatch_home: Path, tmp_path: Path, text: str, words: str
) -> None:
    controller = controller_for([])
    dialog = SettingsDialog(controller, XdgAutostart(config_home=tmp_path / "xdg"))
    qtbot.addWidget(dialog)
    dialog.add_row(None)
    dialog.table.item(dialog.table.rowCount() - 1, PORT).setText(text)
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    assert not save.isEnabled()
    assert words in dialog.error.text()
    dialog.save()
    assert not (portwatch_home / "config" / "config.json").exists()


def test_settings_health_interval_and_key_rules(
    qtbot: QtBot,
    controller_for,
    portwatch_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QSERVER_HTTP_SERVER_API_KEY", "from-the-shell")
    controller = controller_for([])
    dialog = SettingsDialog(controller, XdgAutostart(config_home=tmp_path / "xdg"))
    qtbot.addWidget(dialog)
    assert "QSERVER_HTTP_SERVER_API_KEY" in dialog.key_note.text()
    assert "from-the-shell" not in dialog.key_note.text()
    dialog.add_row(None)
    row = dialog.table.rowCount() - 1
    dialog.table.item(row, PORT).setText("60610")
    key = dialog.table.cellWidget(row, API_KEY)
    assert key.placeholderText() == "from QSERVER_HTTP_SERVER_API_KEY"  # type: ignore[union-attr]
    assert dialog.table.item(row, HEALTH).text() == "10"
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    for bad in ("1", "601", "soon", ""):
        dialog.table.item(row, HEALTH).setText(bad)
        assert not save.isEnabled(), bad
        assert 'the health check must be 2 to 600 seconds or "off"' in dialog.error.text()
    dialog.table.item(row, HEALTH).setText("OFF")
    assert save.isEnabled()
    # One key rule everywhere: what Settings accepts, the probe can send.
    key.setText("two words")  # type: ignore[union-attr]
    assert not save.isEnabled()
    assert "printable ASCII without spaces" in dialog.error.text()
    key.setText("  pasted-key\n")  # type: ignore[union-attr]
    assert save.isEnabled()
    save.click()
    [entry] = cfg.load(portwatch_home / "config" / "config.json").config.ports
    assert (entry.health_interval, entry.api_key) == (None, "pasted-key")
    again = SettingsDialog(controller, XdgAutostart(config_home=tmp_path / "xdg"))
    qtbot.addWidget(again)
    assert again.table.item(0, HEALTH).text() == "off"


def test_settings_duplicate_ports_are_refused(qtbot: QtBot, controller_for, tmp_path: Path) -> None:
    controller = controller_for([Port(8080)])
    dialog = SettingsDialog(controller, XdgAutostart(config_home=tmp_path / "xdg"))
    qtbot.addWidget(dialog)
    dialog.add_row(None)
    dialog.table.item(1, PORT).setText("8079-8081")
    assert "8080/tcp is listed twice" in dialog.error.text()


class StallingScanner(Scanner):
    """Sleeps like psutil.net_connections on a bad day (0.4-1.6 s stalls)."""

    name = "stalling"

    def __init__(self) -> None:
        self.scans = 0

    def scan(self, ports: Iterable[Port], *, connections: bool = False) -> Snapshot:
        self.scans += 1
        time.sleep(1.2)
        from trayapp.core.model import PortState

        return Snapshot(tuple(PortState(p) for p in ports))


def test_gui_stays_responsive_while_a_scan_stalls(qtbot: QtBot, portwatch_home: Path) -> None:
    scanner = StallingScanner()
    controller = Controller(
        portwatch_home / "config.json",
        cfg.Config(interval=0.5),
        lambda: scanner,
    )
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    controller.start()
    try:
        assert threading.current_thread() is threading.main_thread()
        qtbot.waitUntil(lambda: scanner.scans >= 2, timeout=10000)
    finally:
        controller.stop()
        timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 50
    assert max(gaps) < 0.5, f"the GUI thread was blocked for {max(gaps):.2f} s"


def test_history_window_lists_exports_and_totals(
    qtbot: QtBot, controller_for, tmp_path: Path
) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    now = time.time()
    port = Port(60610)
    log.append(
        [
            Event(now - 7200, port, "started", pid=1, name="uvicorn"),
            Event(now - 3600, port, "stopped", pid=1, name="uvicorn"),
            Event(now - 1800, port, "started", pid=2, name="uvicorn"),
            Event(now - 60, Port(8080), "started", pid=3, name="node"),
        ]
    )
    window = HistoryWindow(controller_for([]), log)
    qtbot.addWidget(window)
    qtbot.wait(300)
    assert not window.store.loaded, "the log is read when the window is shown, not before"
    window.show()
    qtbot.waitUntil(lambda: window.periods.rowCount() == 4, timeout=10000)
    text = window.totals.text()
    assert "up 1 h 30 min, down 30 min 0 s, not watched 2" in text  # 22 h, less a moment
    assert "up 75.0% of the watched time" in text
    assert set(window.strips) == {port, Port(8080)}
    strip = window.strips[port]
    assert strip.accessibleName() == "Timeline of 60610 Bluesky Queue Server (HTTP API)"
    assert "now up" in strip.accessibleDescription()
    # The strip's right end is the running uvicorn, its left end before the first record.
    assert strip.text_at(strip.width() - 1) is not None
    assert str(strip.text_at(strip.width() - 1)).startswith("up from ")
    assert "uvicorn (pid 2" in str(strip.text_at(strip.width() - 1))
    assert str(strip.text_at(0)).startswith("not watched from ")
    index = window.port_filter.findData(str(port))
    window.port_filter.setCurrentIndex(index)
    assert window.periods.rowCount() == 3
    assert set(window.strips) == {port}
    csv_path = window.export("csv", tmp_path / "h.csv")
    json_path = window.export("json", tmp_path / "h.json")
    assert csv_path and json_path
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("port,protocol,state,start,end,duration_s")
    assert len(lines) == 4
    rows = json.loads(json_path.read_text())
    assert [r["state"] for r in rows] == ["up", "down", "up"]
    assert rows[-1]["end"] is None and rows[0]["duration_s"] == pytest.approx(3600, abs=1)
    # Incremental: what is appended shows without reading the log again.
    log.append([Event(time.time(), port, "unhealthy", code="http-5xx", detail="HTTP 503")])
    window.reload()
    qtbot.waitUntil(lambda: window.periods.rowCount() == 4, timeout=10000)
    assert window.periods.index(0, 2).data() == "up but unhealthy"
    assert "now up but unhealthy" in window.strips[port].accessibleDescription()
    window.close()


def test_second_launch_shows_the_first_and_exits(portwatch_home: Path) -> None:
    env = app_env(portwatch_home, private_tmp=False)
    first = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--debug"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_log(first, portwatch_home / "log" / "portwatch.log", "started, watching")
        second = subprocess.run(
            [sys.executable, "-m", "trayapp"], env=env, capture_output=True, text=True, timeout=20
        )
        assert second.returncode == 0
        assert "already running" in second.stderr
        assert first.poll() is None
    finally:
        first.terminate()
        _out, err = first.communicate(timeout=15)
    assert first.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.posix("SIGTERM")
def test_sigterm_at_any_moment_of_the_start_ends_the_app(tmp_path: Path) -> None:
    """A SIGTERM that came while the app was still starting (before Qt's loop ran) was lost:
    quit() did nothing then, and the app ran on (seen as a hang in test_alive.py)."""
    for step in range(8):
        home = tmp_path / f"home-{step}"
        (home / "config").mkdir(parents=True)
        (home / "config" / "config.json").write_text('{"ports": [{"port": 60610}]}')
        env = app_env(home)
        app = subprocess.Popen([sys.executable, "-m", "trayapp"], env=env, stderr=subprocess.PIPE)
        log_file = home / "log" / "portwatch.log"
        deadline = time.monotonic() + 20
        while not log_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05 * step)  # from the first log line (logging set up) into the start
        app.send_signal(signal.SIGTERM)
        try:
            _out, err = app.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.communicate()
            pytest.fail(f"SIGTERM {0.05 * step:.2f} s after the log began was ignored")
        assert app.returncode in (0, -signal.SIGTERM), err
        assert b"Traceback" not in err


def test_tray_quit_asks_the_running_app_to_quit(portwatch_home: Path) -> None:
    """`portwatch tray --quit`: how a script (and the Windows and macOS CI jobs) ends the tray
    app cleanly on every OS, through its private single-instance channel."""
    env = app_env(portwatch_home, private_tmp=False)
    app = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--debug"], env=env, stderr=subprocess.PIPE, text=True
    )
    log_file = portwatch_home / "log" / "portwatch.log"
    try:
        wait_for_log(app, log_file, "started, watching")
        quit_cmd = [sys.executable, "-m", "trayapp", "tray", "--quit"]
        asked = subprocess.run(quit_cmd, env=env, capture_output=True, text=True, timeout=20)
        assert asked.returncode == 0, asked.stderr
        _out, err = app.communicate(timeout=15)
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()
    assert app.returncode == 0, err
    assert "Traceback" not in err
    assert "Port Watch stopped" in log_file.read_text()
    again = subprocess.run(quit_cmd, env=env, capture_output=True, text=True, timeout=20)
    assert again.returncode == 1
    assert again.stderr == "portwatch: no Port Watch tray app is running\n"


@pytest.mark.posix("POSIX signals; on Windows send_signal(SIGTERM) is TerminateProcess")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_app_quits_cleanly_on_a_signal(portwatch_home: Path, signum: int) -> None:
    env = {
        **os.environ,
        "PORTWATCH_HOME": str(portwatch_home),
        "QT_QPA_PLATFORM": "offscreen",
        "PORTWATCH_TRAY_WAIT": "0",
    }
    app = subprocess.Popen(
        [sys.executable, "-m", "trayapp"], env=env, stderr=subprocess.PIPE, text=True
    )
    log_file = portwatch_home / "log" / "portwatch.log"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "started, watching" not in (
        log_file.read_text() if log_file.exists() else ""
    ):
        time.sleep(0.1)
    app.send_signal(signum)
    _out, err = app.communicate(timeout=15)
    assert app.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "Port Watch stopped" in log_file.read_text()


def test_start_notification_gains_the_services_health(qtbot: QtBot, controller_for) -> None:
    port = Port(free_port())
    controller = controller_for([port])
    tray = Tray(controller)
    sent: list[tuple[str, str, int]] = []

    def send(title: str, body: str, replaces: int) -> int:
        sent.append((title, body, replaces))
        return 7 if replaces == 0 else replaces

    tray.send_notification = send
    qtbot.waitUntil(lambda: controller.snapshot is not None, timeout=10000)
    with http_server(port.number) as child:
        qtbot.waitUntil(lambda: len(sent) >= 2, timeout=15000)
        first, update = sent[0], sent[1]
        assert first[2] == 0 and f"now listening: python (pid {child.pid}" in first[1]
        assert update[2] == 7  # the same notification, updated in place
        assert update[1].startswith(first[1]) and "health: HTTP 200" in update[1]
        tray.menu.aboutToShow.emit()
        assert tray.menu.actions()[0].text().endswith("[HTTP 200]")
        assert "SimpleHTTP" in tray.tooltip()


@pytest.fixture
def port_watch_app(qtbot: QtBot, controller_for, monkeypatch: pytest.MonkeyPatch):
    from PySide6.QtWidgets import QApplication, QMessageBox

    from trayapp.ui.app import PortWatchApp

    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warnings.append(text))
    app = PortWatchApp(QApplication.instance(), controller_for([]))  # type: ignore[arg-type]
    app.warnings = warnings  # type: ignore[attr-defined]
    yield app
    for window in list(app.port_windows.values()):
        window.close()
    app.overview.close()
    app.close()


def test_check_a_port_opens_its_window(port_watch_app, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setattr(port_watch_app, "_ask_spec", lambda *_: f" {port}/udp ")
    port_watch_app.ask_check_port()
    assert list(port_watch_app.port_windows) == [Port(port, "udp")]
    assert not port_watch_app.controller.is_watched(Port(port, "udp"))
    # Asking again raises the same window rather than opening a second one.
    port_watch_app.ask_check_port()
    assert len(port_watch_app.port_windows) == 1


def test_check_a_port_refuses_bad_input(port_watch_app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(port_watch_app, "_ask_spec", lambda *_: "99999")
    port_watch_app.ask_check_port()
    assert port_watch_app.port_windows == {}
    assert port_watch_app.warnings and "'99999'" in port_watch_app.warnings[0]


def test_watch_a_port_range(
    port_watch_app, monkeypatch: pytest.MonkeyPatch, portwatch_home: Path
) -> None:
    monkeypatch.setattr(port_watch_app, "_ask_spec", lambda *_: "8000-8002, 5353/udp")
    port_watch_app.ask_watch_port()
    expected = [Port(8000), Port(8001), Port(8002), Port(5353, "udp")]
    assert port_watch_app.controller.ports() == expected
    saved = cfg.load(portwatch_home / "config" / "config.json").config
    assert [e.port for e in saved.ports] == expected
    assert saved.ports[3].label  # 5353/udp gets its known name (mDNS) as a label


def test_command_line_ports_are_watched_for_this_run_only(
    qtbot: QtBot, portwatch_home: Path
) -> None:
    path = portwatch_home / "config" / "config.json"
    extra = [Port(8080), Port(5353, "udp"), Port(60610)]  # 60610 is already in the settings
    controller = Controller(path, cfg.Config(), lambda: StallingScanner(), extra_ports=extra)
    assert controller.ports() == [Port(60610), Port(8080), Port(5353, "udp")]
    controller.watch(Port(9090))  # saving settings keeps the run-only ports out of the file
    saved = cfg.load(path).config
    assert [e.port for e in saved.ports] == [Port(60610), Port(9090)]
    assert Port(8080) in controller.ports()


def _ask_in_thread(qtbot: QtBot, path: Path, *parts: bytes) -> bytes:
    """One client on a thread of its own (the server answers on this, the GUI, thread); `parts`
    are sent with a pause between them, as a slow client would."""
    import socket as socket_module

    reply: list[bytes] = []

    def client() -> None:
        with socket_module.socket(socket_module.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            for part in parts:
                sock.sendall(part)
                time.sleep(0.05)
            if not parts:
                sock.shutdown(socket_module.SHUT_WR)
            reply.append(sock.recv(4096))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=5000)
    return reply[0]


@pytest.mark.skipif(sys.platform == "win32", reason="Windows uses QLocalServer's named pipe")
def test_single_instance_channel_answers_its_own_protocol_only(qtbot: QtBot) -> None:
    from trayapp.ui.instance import PROTOCOL_VERSION, InstanceServer, socket_path

    server = InstanceServer()
    assert server.listen()
    commands: list[str] = []
    server.command.connect(commands.append)

    def ask(message: object) -> bytes:
        return _ask_in_thread(qtbot, socket_path(), (json.dumps(message) + "\n").encode())

    try:
        assert ask({"version": PROTOCOL_VERSION, "command": "ping"}) == b"ok\n"
        wrong = ask({"version": PROTOCOL_VERSION + 1, "command": "show"})
        assert wrong.startswith(b"error protocol version")
        assert ask({"command": "show"}).startswith(b"error protocol version")
        assert ask("not an object").startswith(b"error protocol version")
        assert commands == []  # neither the ping nor another version's request did anything
        assert ask({"version": PROTOCOL_VERSION, "command": "show"}) == b"ok\n"
        assert commands == ["show"]
        # A line that arrives in pieces is read whole; a client that says nothing is let go.
        line = json.dumps({"version": PROTOCOL_VERSION, "command": "quit"}).encode() + b"\n"
        assert _ask_in_thread(qtbot, socket_path(), line[:7], line[7:]) == b"ok\n"
        assert commands == ["show", "quit"]
        assert _ask_in_thread(qtbot, socket_path()) == b""
        # The GUI thread is still serving after all that.
        assert ask({"version": PROTOCOL_VERSION, "command": "ping"}) == b"ok\n"
    finally:
        server.close()
    assert not socket_path().exists(), "close() leaves no socket file behind"


@pytest.mark.skipif(sys.platform == "win32", reason="Windows uses QLocalServer's named pipe")
def test_single_instance_channel_one_holder_and_leftovers(qtbot: QtBot) -> None:
    """Two servers for one settings folder: the second is told the first holds the channel;
    a socket file left by a killed instance (no lock held) is replaced, not an obstacle."""
    from trayapp.ui.instance import InstanceServer, ask_running_instance, socket_path

    first = InstanceServer()
    assert first.listen()
    second = InstanceServer()
    try:
        assert not second.listen()
        assert second.held_by_another
    finally:
        first.close()
    assert not ask_running_instance("ping")  # nobody there any more

    # What SIGKILL leaves: the socket file, bound but with nobody listening, and no lock.
    import socket as socket_module

    leftover = socket_module.socket(socket_module.AF_UNIX)
    leftover.bind(str(socket_path()))
    leftover.close()
    assert socket_path().exists()
    third = InstanceServer()
    try:
        assert third.listen()
        path = socket_path()
        assert _ask_in_thread(qtbot, path, b'{"version": 1, "command": "ping"}\n') == b"ok\n"
        folder = path.parent.stat()
        assert folder.st_mode & 0o077 == 0 and folder.st_uid == os.getuid()
    finally:
        third.close()


@pytest.mark.skipif(sys.platform == "win32", reason="Windows uses QLocalServer's named pipe")
def test_single_instance_channel_refuses_a_folder_others_may_enter(tmp_path: Path) -> None:
    from trayapp.platforms.instance_socket import ChannelUnsafe, listen

    folder = tmp_path / f"portwatch-{os.getuid()}"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with pytest.raises(ChannelUnsafe, match="may be entered by other users"):
        listen(folder / "x.sock")
    assert not (folder / "x.sock").exists()
