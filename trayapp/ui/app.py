"""Starts the tray app: logging, single instance, settings, workers, tray and windows."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QSocketNotifier, QTimer
from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox, QSystemTrayIcon, QWidget

from trayapp import __version__
from trayapp.core import config as cfg
from trayapp.core import paths, services
from trayapp.core.history import EventLog
from trayapp.core.logfile import LogFileHandler
from trayapp.core.model import Port
from trayapp.core.ports import PortSpecError, parse_port, parse_ports
from trayapp.core.service_check import ServiceStore
from trayapp.platforms import current_os, integration
from trayapp.platforms.autostart import autostart_for
from trayapp.platforms.dbus_notify import dbus_notifier
from trayapp.platforms.scanners import create_scanner
from trayapp.ui.controller import Controller
from trayapp.ui.icons import app_icon
from trayapp.ui.instance import InstanceServer, ask_running_instance
from trayapp.ui.metrics_export import MetricsExporter
from trayapp.ui.showing import show_window
from trayapp.ui.tray import Tray

if TYPE_CHECKING:
    from trayapp.ui.overview import OverviewWindow

log = logging.getLogger("trayapp")
DESKTOP_ID = "org.portwatch.PortWatch"
TRAY_WAIT_ENV = "PORTWATCH_TRAY_WAIT"  # seconds to wait for a tray host (default 15)
TRAY_POLL_MS = 500
TRAY_RECHECK_MS = 5000
ANOTHER_STARTING_S = 5.0


def setup_logging(debug: bool) -> LogFileHandler:
    """The log file (and the terminal with --debug). A log file that cannot be written (full
    disk, read-only folder) costs nothing but its lines, which wait in memory: see logfile.py."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = LogFileHandler(paths.log_dir() / "portwatch.log")
    handlers: list[logging.Handler] = [file_handler]
    if debug:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    return file_handler


class PortWatchApp:
    """Owns the windows and wires the tray's and windows' requests to them.

    Windows are made (and their modules imported) when first asked for: most days the tray is
    all anybody sees, and every window's code would otherwise stay in memory all day."""

    def __init__(self, qapp: QApplication, controller: Controller) -> None:
        self.qapp = qapp
        self.controller = controller
        self.tray = Tray(controller)
        self._overview: OverviewWindow | None = None
        self.port_windows: dict[Port, QWidget] = {}
        self.history_window: QWidget | None = None
        self._wire(self.tray)
        self.tray.open_overview.connect(self.show_overview)
        self.notifier = (
            dbus_notifier("Port Watch", self.tray.notification_clicked.emit)
            if current_os() == "linux"
            else None
        )
        if self.notifier is not None:
            self.tray.send_notification = self.notifier.send

    def _wire(self, source: Tray | OverviewWindow) -> None:
        source.open_port.connect(self.open_port)
        source.check_port.connect(self.ask_check_port)
        source.watch_port.connect(self.ask_watch_port)
        source.open_settings.connect(self.open_settings)
        source.open_history.connect(self.open_history)
        source.quit_requested.connect(self.quit)

    @property
    def overview(self) -> OverviewWindow:
        if self._overview is None:
            from trayapp.ui.overview import OverviewWindow

            self._overview = OverviewWindow(self.controller)
            self._wire(self._overview)
        return self._overview

    # -- tray availability -----------------------------------------------------------------
    def start_tray(self) -> None:
        """Autostart can beat the panel: wait for a tray a while, then fall back to a window."""
        try:
            wait = float(os.environ.get(TRAY_WAIT_ENV, "15"))
        except ValueError:
            wait = 15.0
        self._tray_wait_left_ms = int(wait * 1000)
        self._fell_back = False
        self._tray_timer = QTimer()
        self._tray_timer.setSingleShot(True)
        self._tray_timer.timeout.connect(self._check_tray)
        self._check_tray()

    def _check_tray(self) -> None:
        if QSystemTrayIcon.isSystemTrayAvailable():
            log.info("system tray available: showing the icon")
            self.tray.show()
            return
        if self._tray_wait_left_ms > 0:
            self._tray_wait_left_ms -= TRAY_POLL_MS
            self._tray_timer.start(TRAY_POLL_MS)
            return
        if not self._fell_back:
            self._fell_back = True
            how = integration.no_tray_help(desktop=os.environ.get("XDG_CURRENT_DESKTOP"))
            log.warning("no system tray appeared: showing the overview window instead. %s", how)
            self.overview.set_notice(
                "No system tray was found, so Port Watch runs in this window. It keeps "
                "watching and notifying while the window is closed; start it again to "
                "bring the window back. " + how
            )
            self.show_overview()
        # Keep looking now and then: the panel may still come up later.
        self._tray_timer.start(TRAY_RECHECK_MS)

    # -- windows ---------------------------------------------------------------------------
    def show_overview(self) -> None:
        show_window(self.overview)

    def open_port(self, port: Port) -> QWidget:
        window = self.port_windows.get(port)
        if window is None:
            from trayapp.ui.port_window import PortWindow
            from trayapp.ui.remote_window import RemoteWindow

            # A port on another machine has no local owner to look at: its own window.
            window = (
                RemoteWindow(self.controller, port)
                if port.host
                else PortWindow(self.controller, port)
            )
            window.destroyed.connect(lambda _=None, p=port: self.port_windows.pop(p, None))
            self.port_windows[port] = window
        # Opened by a notification click: the server's activation token for that click, if any.
        token = self.notifier.take_activation_token() if self.notifier is not None else None
        show_window(window, token)
        return window

    def _ask_spec(self, title: str, prompt: str) -> str | None:
        text, ok = QInputDialog.getText(None, title, prompt)
        return text if ok and text.strip() else None

    def ask_check_port(self) -> None:
        text = self._ask_spec("Check a port", "Port (e.g. 8080 or 5353/udp):")
        if text is None:
            return
        try:
            self.open_port(parse_port(text))
        except PortSpecError as exc:
            QMessageBox.warning(None, "Check a port", str(exc))

    def ask_watch_port(self) -> None:
        text = self._ask_spec("Watch a port", "Ports to watch (e.g. 8080, 5353/udp, 8000-8010):")
        if text is None:
            return
        try:
            ports = parse_ports(text)
        except PortSpecError as exc:
            QMessageBox.warning(None, "Watch a port", str(exc))
            return
        try:
            for port in ports:
                self.controller.watch(port)
        except OSError as exc:
            QMessageBox.warning(None, "Watch a port", f"Could not save settings: {exc}")

    def open_settings(self) -> None:
        from trayapp.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.controller, autostart_for())
        dialog.exec()

    def open_history(self) -> None:
        from trayapp.ui.history_window import HistoryWindow

        if self.history_window is None:
            self.history_window = HistoryWindow(self.controller)
        show_window(self.history_window)

    def quit(self) -> None:
        self.qapp.quit()

    def close(self) -> None:
        self.tray.hide()
        if self.notifier is not None:
            self.notifier.close()


def _install_signal_handlers(qapp: QApplication) -> None:
    """Ctrl+C and SIGTERM quit cleanly. A wakeup socket lets Python see the signal while Qt's
    loop sleeps, without a polling timer that would wake an idle app several times a second."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, qapp)

    def drain() -> None:
        with contextlib.suppress(OSError):
            reader.recv(64)

    notifier.activated.connect(drain)
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Posted, not called: a signal that comes while the app is still starting (before
        # exec()) would make quit() a no-op and the app would run on, deaf to SIGTERM.
        signal.signal(signum, lambda *_: QTimer.singleShot(0, qapp.quit))
    qapp.setProperty("_portwatch_wakeup", (reader, writer, notifier))


def run(extra_ports: list[Port] | None = None, debug: bool = False) -> int:
    log_file = setup_logging(debug)
    integration.set_app_user_model_id()  # before any window or notification exists
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qapp, QApplication)
    # After QApplication: while it starts, Qt makes an unbundled app a normal Dock app again.
    integration.hide_dock_icon()
    qapp.setApplicationName("Port Watch")
    qapp.setApplicationVersion(__version__)
    # The installed .desktop entry's id (packaging/linux), so Wayland matches our windows to it.
    qapp.setDesktopFileName(DESKTOP_ID)
    qapp.setQuitOnLastWindowClosed(False)
    qapp.setWindowIcon(app_icon())

    if ask_running_instance("show"):
        print("Port Watch is already running; its window was brought up.", file=sys.stderr)
        return 0
    instance = InstanceServer()
    if not instance.listen() and instance.held_by_another:
        # Another launch holds the channel but did not answer: it is still starting.
        deadline = time.monotonic() + ANOTHER_STARTING_S
        while time.monotonic() < deadline:
            if ask_running_instance("show"):
                print("Port Watch is already running; its window was brought up.", file=sys.stderr)
                return 0
            time.sleep(0.2)
        log.warning("another Port Watch holds the single-instance channel but does not answer")

    loaded = cfg.load(paths.config_file())
    if loaded.message:
        log.warning("%s", loaded.message)
    controller = Controller(
        paths.config_file(),
        loaded.config,
        create_scanner,
        event_log=EventLog(paths.events_file()),
        extra_ports=extra_ports,
        service_store=ServiceStore.load(paths.service_state_file()),
    )
    controller.watch_log_file(log_file)
    app = PortWatchApp(qapp, controller)
    instance.command.connect(lambda cmd: app.quit() if cmd == "quit" else app.show_overview())
    _install_signal_handlers(qapp)
    exporter = MetricsExporter(controller)
    exporter.start()
    controller.start()
    app.start_tray()
    for problem in services.load_problems():
        # A damaged services.json costs only its broken entries; say which, once per start.
        log.warning("known services: %s", problem)
    if loaded.message:
        # Said once: the bad file is moved aside, so the next start is quiet.
        app.overview.set_notice(loaded.message)
        app.show_overview()
    log.info("Port Watch %s started, watching %s", __version__, controller.ports())
    try:
        return qapp.exec()
    finally:
        controller.stop()
        exporter.stop()
        app.close()
        instance.close()
        log.info("Port Watch stopped")
