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
OUTBOX = 32  # notifications waiting for a slow server; beyond, they are dropped (and logged)
TOKEN_MAX_AGE_S = 10.0  # a click's token is for the window it opens, not for a later one


class DBusNotifier:
    """send() shows a notification and returns its id at once; `on_click(id)` runs (on a helper
    thread) when the user clicks one of ours.

    The calls go out on a sender thread, so a notification server that hangs (stopped, swapping,
    deadlocked) never stalls the caller, the GUI thread: it waits up to TIMEOUT_S per call, the
    GUI not at all. The ids handed out are ours; the server's ids are mapped to them when its
    reply comes, for clicks and for updates in place.

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
        self._failing = False  # log a fault once, not once per notification
        self._thread: threading.Thread | None = None
        self._token: tuple[str, float] | None = None  # the latest click's, with when it came
        self._outbox: queue.Queue[tuple[int, str, str, int, str] | None] = queue.Queue(OUTBOX)
        self._lock = threading.Lock()
        self._last_id = 0
        self._server_ids: dict[int, int] = {}  # ours -> the server's (recent ones only)
        self._our_ids: dict[int, int] = {}  # the server's -> ours
        self._dropped = 0
        try:
            if on_click is not None:
                self._start_listener()
            self._sender = threading.Thread(
                target=self._send_loop, name="portwatch-dbus-notify", daemon=True
            )
            self._sender.start()
        except BaseException:
            self._stack.close()
            raise

    def send(self, title: str, body: str, replaces: int = 0, icon: str = "") -> int | None:
        """Show a notification (or update our notification `replaces` in place); its id, or None
        when too many are still waiting for a server that does not answer."""
        with self._lock:
            # An update in place keeps its id, as the server keeps its own.
            if not replaces:
                self._last_id += 1
            our_id = replaces or self._last_id
        try:
            self._outbox.put_nowait((our_id, title, body, replaces, icon))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("notifications wait for a server that does not answer; dropping")
            return None
        return our_id

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()  # blocks: no wake-ups while nothing is to be sent
            if item is None:
                return
            our_id, title, body, replaces, icon = item
            with self._lock:
                server_replaces = self._server_ids.get(replaces, 0) if replaces else 0
            server_id = self._notify(title, body, server_replaces, icon)
            if server_id is not None:
                with self._lock:
                    self._server_ids[our_id] = server_id
                    self._our_ids[server_id] = our_id
                    while len(self._server_ids) > 200:  # clicks only matter for recent ones
                        del self._our_ids[self._server_ids.pop(next(iter(self._server_ids)))]

    def _notify(self, title: str, body: str, replaces: int, icon: str) -> int | None:
        from jeepney import HeaderFields, MessageType, new_method_call

        message = new_method_call(
            self._address,
            "Notify",
            SIGNATURE,
            (self.app_name, replaces, icon, title, body, ["default", "Open"], {}, EXPIRE_MS),
        )
        try:
            reply = self._router.send_and_get_reply(message, timeout=TIMEOUT_S)
            if reply.header.message_type == MessageType.error:
                # The router hands back error replies (no server, none activatable) as messages.
                name = reply.header.fields.get(HeaderFields.error_name, "error")
                raise OSError(f"{name}: {reply.body[0] if reply.body else ''}")
        except Exception as exc:  # no service, a timeout, a dropped bus: log, never crash
            if not self._failing:
                self._failing = True
                log.warning("notifications fail (said once until they work again): %s", exc)
            return None
        if self._failing or self._dropped:
            self._failing = False
            self._dropped = 0
            log.info("notifications work again")
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
                    continue
                with self._lock:
                    ours = self._our_ids.get(int(notification_id))
                if self._on_click is not None and ours is not None:
                    self._on_click(ours)

        self._thread = threading.Thread(target=listen, name="portwatch-dbus-clicks", daemon=True)
        self._thread.start()

    def take_activation_token(self) -> str | None:
        """The xdg-activation token that came with the latest click, once, if it is recent."""
        token, self._token = self._token, None
        if token is None or time.monotonic() - token[1] > TOKEN_MAX_AGE_S:
            return None
        return token[0]

    def close(self) -> None:
        for box, thread in ((self._outbox, self._sender), (self._queue, self._thread)):
            if thread is None:
                continue
            with contextlib.suppress(queue.Full):
                box.put(None, timeout=1.0)
            thread.join(TIMEOUT_S + 1.0)
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
