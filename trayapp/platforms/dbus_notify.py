"""Desktop notifications over D-Bus (freedesktop Notifications spec) on Linux.

Why not QSystemTrayIcon.showMessage() there: on a StatusNotifierItem tray Qt swaps the app's
icon for an "attention" icon for as long as the message shows (so the state icon is hidden
exactly when it changed), and it offers a clickable default action only for Critical messages,
so clicking a notification does nothing. Talking to the service ourselves fixes both, and works
when there is a notification service but no tray at all.

On Wayland a window cannot bring itself to the front: the compositor wants an xdg-activation
token from the user's click. Servers that implement spec 1.2 send one (ActivationToken) just
before ActionInvoked; take_activation_token() hands it to the window that the click opens.

jeepney marshals the calls: Notify takes a uint32 replaces_id, which PySide6's QtDBus cannot
express (it has no QVariant), and the service rejects a call whose signature differs.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SERVICE = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
SIGNATURE = "susssasa{sv}i"  # app_name, replaces_id, icon, summary, body, actions, hints, timeout
TIMEOUT_S = 2.0
EXPIRE_MS = 8000
TOKEN_MAX_AGE_S = 10.0  # a click's token is for the window it opens, not for a later one


class DBusNotifier:
    """send() shows a notification and returns its id; `on_click(id)` runs (on a helper thread)
    when the user clicks one of ours.

    One connection both sends and listens: the service addresses ActionInvoked to the
    connection that created the notification, so a second connection would never hear it.
    """

    def __init__(self, app_name: str, on_click: Callable[[int], None] | None = None) -> None:
        from jeepney import DBusAddress
        from jeepney.io.threading import open_dbus_router

        self.app_name = app_name
        self._address = DBusAddress(PATH, bus_name=SERVICE, interface=SERVICE)
        # Both the router and its filters are context managers: one stack closes them all.
        self._stack = contextlib.ExitStack()
        self._router = self._stack.enter_context(open_dbus_router(bus="SESSION"))
        self._on_click = on_click
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=64)
        self._thread: threading.Thread | None = None
        self._token: tuple[str, float] | None = None  # the latest click's, with when it came
        if on_click is not None:
            try:
                self._start_listener()
            except BaseException:
                self._stack.close()
                raise

    def send(self, title: str, body: str, replaces: int = 0, icon: str = "") -> int | None:
        """Show a notification (or update notification `replaces` in place); its id."""
        from jeepney import new_method_call

        message = new_method_call(
            self._address,
            "Notify",
            SIGNATURE,
            (self.app_name, replaces, icon, title, body, ["default", "Open"], {}, EXPIRE_MS),
        )
        try:
            reply = self._router.send_and_get_reply(message, timeout=TIMEOUT_S)
        except Exception as exc:  # no service, a timeout, a dropped bus: log, never crash
            log.warning("notification failed: %s", exc)
            return None
        values = reply.body
        return int(values[0]) if values and isinstance(values[0], int) else None

    def _start_listener(self) -> None:
        from jeepney import HeaderFields, MatchRule, message_bus
        from jeepney.io.threading import Proxy

        # One queue for both, so a click's token is always seen before the click itself.
        for member in ("ActivationToken", "ActionInvoked"):
            rule = MatchRule(type="signal", interface=SERVICE, member=member, path=PATH)
            Proxy(message_bus, self._router, timeout=TIMEOUT_S).AddMatch(rule)
            self._stack.enter_context(self._router.filter(rule, queue=self._queue))

        def listen() -> None:
            while True:
                signal = self._queue.get()  # blocks: no wake-ups until a click or close()
                if signal is None:
                    return
                notification_id, value = signal.body
                if signal.header.fields.get(HeaderFields.member) == "ActivationToken":
                    self._token = (str(value), time.monotonic())
                elif self._on_click is not None:
                    self._on_click(int(notification_id))

        self._thread = threading.Thread(target=listen, name="portwatch-dbus-clicks", daemon=True)
        self._thread.start()

    def take_activation_token(self) -> str | None:
        """The xdg-activation token that came with the latest click, once, if it is recent."""
        token, self._token = self._token, None
        if token is None or time.monotonic() - token[1] > TOKEN_MAX_AGE_S:
            return None
        return token[0]

    def close(self) -> None:
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=1.0)
            self._thread.join(2.0)
        with contextlib.suppress(Exception):
            self._stack.close()


def dbus_notifier(
    app_name: str = "Port Watch", on_click: Callable[[int], None] | None = None
) -> DBusNotifier | None:
    """A notifier, or None when there is no session bus or no jeepney."""
    try:
        return DBusNotifier(app_name, on_click)
    except ImportError:
        return None
    except Exception as exc:  # no bus address, refused connection, ...
        log.info("no D-Bus notifications: %r", exc)
        return None
