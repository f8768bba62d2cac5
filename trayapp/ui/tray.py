"""The system tray icon: its picture, tooltip, right-click menu and notifications."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from trayapp.core import status
from trayapp.core.events import Event
from trayapp.core.model import Port
from trayapp.core.probe import ProbeResult
from trayapp.core.service_check import CheckOutcome
from trayapp.core.status import notification_text
from trayapp.core.throttle import Throttle
from trayapp.platforms import current_os
from trayapp.ui.controller import Controller
from trayapp.ui.icons import icon

log = logging.getLogger(__name__)
RECENT_S = 10.0  # a probe answer this soon after a notification is added to it


def write_problem_lines(problems: dict[str, str]) -> list[str]:
    """e.g. 'History cannot be written: no space left on /home (kept in memory until it can)'."""
    return [
        f"{what.capitalize()} cannot be written: {why} (kept in memory until it can)"
        for what, why in problems.items()
    ]


class Tray(QObject):
    open_port = Signal(object)  # Port
    open_overview = Signal()
    check_port = Signal()
    watch_port = Signal()
    open_settings = Signal()
    open_history = Signal()
    quit_requested = Signal()
    # Emitted from the D-Bus listener thread; Qt queues it to the GUI thread.
    notification_clicked = Signal(int)

    def __init__(self, controller: Controller, *, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.controller = controller
        self._mask = current_os() == "macos"
        self.tray = QSystemTrayIcon()
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.tray.setContextMenu(self.menu)
        self.tray.activated.connect(self._on_activated)
        self.tray.messageClicked.connect(self._on_message_clicked)
        self.throttle = Throttle()
        # Health and service news have their own flood limit: a start and its first health
        # check a second later are two different things to say.
        self.health_throttle = Throttle()
        self._clock = clock
        self._last_notified: Port | None = None
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self._flush)
        self.icon_state = ""
        # Sends (title, body), returns the notification's id; None: use showMessage().
        # (title, body, replaces_id) -> id; replaces_id 0 means a new notification.
        self.send_notification: Callable[[str, str, int], int | None] | None = None
        self._recent: dict[Port, tuple[int, str, str, float]] = {}  # id, title, body, when
        self._notified: dict[int, Port] = {}
        self.notification_clicked.connect(self._on_notification_clicked)
        self._menu_lines: list[str] = []
        controller.changed.connect(self.refresh)
        controller.config_changed.connect(self.refresh)
        controller.paused_changed.connect(self.refresh)
        controller.events.connect(self.notify)
        controller.probed.connect(self._on_probed)
        controller.write_failed.connect(self._on_write_failed)
        self.rebuild_menu()
        self.refresh()

    def show(self) -> None:
        self.tray.show()
        # Some hosts drop a tooltip set before the icon was shown (aw-qt #112).
        self.tray.setToolTip(self.tooltip())

    def hide(self) -> None:
        self.tray.hide()

    # -- picture and tooltip ---------------------------------------------------------------
    def refresh(self) -> None:
        state = self.controller.icon_state()
        if state != self.icon_state:
            self.icon_state = state
            self.tray.setIcon(icon(state, self._mask))
        tooltip = self.tooltip()
        if tooltip != self.tray.toolTip():
            self.tray.setToolTip(tooltip)
        # Hosts that read the exported menu without asking first (no AboutToShow) still see
        # live lines; never rebuild under a menu that is open on screen.
        if self._menu_lines != self._current_lines() and not self.menu.isVisible():
            self.rebuild_menu()

    def _current_lines(self) -> list[str]:
        return [
            self.controller.error or "",
            *write_problem_lines(self.controller.write_problems),
            *map(self.port_line, self.controller.ports()),
            *map(self.port_line, self.controller.remote_ports()),
        ]

    def port_line(self, port: Port, *, long_health: bool = False) -> str:
        if port.host:
            text = status.remote_status(
                self.controller.remote_check(port),
                paused=self.controller.paused,
                long=long_health,
            )
            return f"{self.controller.title(port)}: {text}"
        text = status.port_status(
            self.controller.state(port),
            self.controller.probes.get(port),
            paused=self.controller.paused,
            failed=self.controller.error is not None,
            long=long_health,
        )
        return f"{self.controller.title(port)}: {text}"

    def tooltip(self) -> str:
        lines = ["Port Watch"]
        if self.controller.error:
            lines.append(f"Cannot scan: {self.controller.error}")
        lines.extend(write_problem_lines(self.controller.write_problems))
        lines.extend(self.port_line(p, long_health=True) for p in self.controller.ports())
        lines.extend(self.port_line(p, long_health=True) for p in self.controller.remote_ports())
        return "\n".join(lines)

    # -- menu ------------------------------------------------------------------------------
    def rebuild_menu(self) -> None:
        """Rebuilt on every aboutToShow so it shows live state (a Unity/SNI workaround too)."""
        menu = self.menu
        menu.clear()
        self._menu_lines = self._current_lines()
        if self.controller.error:
            menu.addAction(f"Cannot scan: {self.controller.error}").setEnabled(False)
        for line in write_problem_lines(self.controller.write_problems):
            menu.addAction(line).setEnabled(False)
        ports = self.controller.ports() + self.controller.remote_ports()
        if not ports:
            menu.addAction("No ports watched").setEnabled(False)
        for port in ports:
            action = menu.addAction(self.port_line(port))
            action.triggered.connect(lambda _=False, p=port: self.open_port.emit(p))
        menu.addSeparator()
        menu.addAction("Overview...").triggered.connect(self.open_overview)
        menu.addAction("Check a port...").triggered.connect(self.check_port)
        menu.addAction("Watch a port...").triggered.connect(self.watch_port)
        menu.addAction("History...").triggered.connect(self.open_history)
        menu.addAction("Settings...").triggered.connect(self.open_settings)
        pause = QAction("Pause watching", menu)
        pause.setCheckable(True)
        pause.setChecked(self.controller.paused)
        pause.toggled.connect(self.controller.set_paused)
        menu.addAction(pause)
        muted = QAction("Mute notifications", menu)
        muted.setCheckable(True)
        muted.setChecked(not self.controller.config.notifications)
        muted.toggled.connect(self._set_muted)
        menu.addAction(muted)
        menu.addSeparator()
        menu.addAction("Quit").triggered.connect(self.quit_requested)

    def _set_muted(self, muted: bool) -> None:
        from dataclasses import replace

        try:
            self.controller.apply(replace(self.controller.config, notifications=not muted))
        except OSError as exc:
            log.error("could not save settings: %s", exc)

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.open_overview.emit()

    # -- notifications ---------------------------------------------------------------------
    def wants(self, event: Event) -> bool:
        return status.wants_notification(self.controller.config, event)

    def notify(self, events: list[Event]) -> None:
        now = self._clock()
        for event in events:
            if not self.wants(event):
                continue
            shown = self.throttle.offer(event, now)
            if shown is not None:
                self._show(shown)
        self._schedule_flush(now)

    def _on_probed(self, port: Port, result: ProbeResult, outcome: CheckOutcome | None) -> None:
        """A notification when a service's health changes (its RE Manager went away, it is
        back) or it has news (a run paused, a plan aborted, the queue stopped)."""
        self.refresh()
        if outcome is None:
            return  # a one-off check from a port window: shown there, not notified
        notices = [notice.text for notice in outcome.notices]
        news = outcome.health_news
        if outcome.previous_health is None and news is None and not notices:
            self._add_health(port, result)
            return
        event = status.health_notification(port, result, news, notices)
        if event is None or not self.wants(event):
            return
        shown = self.health_throttle.offer(event, self._clock())
        if shown is not None:
            self._show(shown)
        self._schedule_flush(self._clock())

    def _on_write_failed(self, what: str, why: str) -> None:
        """Once per episode (the controller decides): the menu and tooltip keep saying it."""
        if not self.controller.config.notifications:
            return
        title, body = f"Port Watch cannot write its {what}", f"{why}. Kept in memory until it can."
        log.info("notify: %s / %s", title, body)
        if self.send_notification is not None:
            self.send_notification(title, body, 0)
        else:
            self.tray.showMessage(title, body, QSystemTrayIcon.MessageIcon.Warning, 8000)

    def _add_health(self, port: Port, result: ProbeResult) -> None:
        """The first probe after a start: update that start's notification in place, so it
        names the service's health without a second popup."""
        recent = self._recent.get(port)
        if recent is None or self.send_notification is None:
            return
        notification_id, title, body, when = recent
        if self._clock() - when > RECENT_S:
            return
        self.send_notification(title, f"{body}\nhealth: {result.summary}", notification_id)

    def _flush(self) -> None:
        now = self._clock()
        for event in [*self.throttle.due(now), *self.health_throttle.due(now)]:
            if self.wants(event):
                self._show(event)
        self._schedule_flush(now)

    def _schedule_flush(self, now: float) -> None:
        waits = [self.throttle.next_due(now), self.health_throttle.next_due(now)]
        due = [wait for wait in waits if wait is not None]
        if due:
            self._flush_timer.start(int(min(due) * 1000) + 50)

    def _show(self, event: Event) -> None:
        title, body = notification_text(event, self.controller.title(event.port))
        self._deliver(title, body, event.port, warn=event.kind in ("stopped", "unhealthy"))

    def _deliver(self, title: str, body: str, port: Port, *, warn: bool) -> None:
        self._last_notified = port
        log.info("notify: %s / %s", title, body)
        if self.send_notification is not None:
            # The desktop's notification service directly (Linux, see dbus_notify.py).
            notification_id = self.send_notification(title, body, 0)
            if notification_id is not None:
                self._notified[notification_id] = port
                self._recent[port] = (notification_id, title, body, self._clock())
                while len(self._notified) > 100:  # clicks only matter for recent ones
                    del self._notified[next(iter(self._notified))]
            return
        kind = (
            QSystemTrayIcon.MessageIcon.Warning if warn else QSystemTrayIcon.MessageIcon.Information
        )
        self.tray.showMessage(title, body, kind, 8000)

    def _on_notification_clicked(self, notification_id: int) -> None:
        port = self._notified.get(notification_id)
        if port is not None:
            self.open_port.emit(port)

    def _on_message_clicked(self) -> None:
        if self._last_notified is not None:
            self.open_port.emit(self._last_notified)
