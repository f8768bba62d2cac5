"""Desktop notifications straight over D-Bus (freedesktop Notifications spec), for Linux
desktops that have a notification service but no tray for QSystemTrayIcon to speak through."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

SERVICE = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


def dbus_notifier(app_name: str = "Port Watch") -> Callable[[str, str], None] | None:
    """A send(title, body) function, or None when there is no session bus or service."""
    try:
        from PySide6.QtDBus import QDBusConnection, QDBusInterface
    except ImportError:
        return None
    bus = QDBusConnection.sessionBus()
    if not bus.isConnected():
        return None
    interface = QDBusInterface(SERVICE, PATH, SERVICE, bus)
    if not interface.isValid():
        return None

    def send(title: str, body: str) -> None:
        # Notify(app_name, replaces_id, app_icon, summary, body, actions, hints, timeout)
        reply = interface.call("Notify", app_name, 0, "", title, body, [], {}, 8000)
        if reply.errorMessage():
            log.warning("notification failed: %s", reply.errorMessage())

    return send
