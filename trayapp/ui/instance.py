"""One Port Watch per user: a second launch asks the first to show itself, then exits.

The channel is private to this user and opens no network socket: a Unix socket in a folder
only the user may enter (platforms/instance_socket.py), watched from the GUI thread with a
QSocketNotifier; on Windows, whose Python has no Unix sockets, Qt's QLocalServer (a named
pipe), loaded only there. The GUI thread answers every request, so a "ping" also tells that
it is not stuck.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSocketNotifier, Signal

from trayapp import APP_NAME
from trayapp.core import paths
from trayapp.platforms import instance_socket

if TYPE_CHECKING:
    from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)
PROTOCOL_VERSION = 1
TIMEOUT_MS = 1000
MAX_LINE = 4096


def server_name() -> str:
    """QLocalServer's name (Windows): per user, and per settings folder so that isolated test
    instances never meet each other."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError, ImportError):  # Windows without USERNAME: it tries pwd
        user = "unknown"
    return f"{APP_NAME}-{user}-{socket_path().stem}"


def socket_path() -> Path:
    return instance_socket.socket_path(str(paths.config_dir()))


def answer(line: bytes) -> tuple[bytes, str | None]:
    """The reply to one request line, and the command to carry out (if any)."""
    try:
        message = json.loads(line[:MAX_LINE])
        command = str(message["command"]) if isinstance(message, dict) else ""
        version = message.get("version") if isinstance(message, dict) else None
    except (ValueError, KeyError):
        command, version = "", None
    if version != PROTOCOL_VERSION:
        # Another version's request may mean something else: say so, do nothing.
        return f"error protocol version {PROTOCOL_VERSION} expected\n".encode(), None
    if command == "ping":
        return b"ok\n", None
    if command in ("show", "quit"):
        return b"ok\n", command
    return b"error unknown command\n", None


def _request(command: str) -> bytes:
    return (json.dumps({"version": PROTOCOL_VERSION, "command": command}) + "\n").encode()


def ask_to_quit() -> bool:
    """Ask the running app to quit (`portwatch tray --quit`): True if one took the message."""
    return ask_running_instance("quit")


def ask_running_instance(command: str = "show") -> bool:
    """True if another instance took the message (so this one should exit)."""
    if instance_socket.supported():
        reply = instance_socket.ask(socket_path(), _request(command), TIMEOUT_MS / 1000)
        return reply is not None and reply.startswith(b"ok")
    return _ask_local_server(command)


def _ask_local_server(command: str) -> bool:
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtNetwork import QLocalSocket

    _app = QCoreApplication.instance() or QCoreApplication([])  # QLocalSocket needs one
    sock = QLocalSocket()
    sock.connectToServer(server_name())
    if not sock.waitForConnected(TIMEOUT_MS):
        return False
    sock.write(_request(command))
    sock.flush()
    sock.waitForBytesWritten(TIMEOUT_MS)
    ok = sock.waitForReadyRead(TIMEOUT_MS) and bytes(sock.readAll().data()).startswith(b"ok")
    sock.disconnectFromServer()
    return ok


class InstanceServer(QObject):
    """Listens for the next launches' requests; `command` says "show" or "quit"."""

    command = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self._listener: instance_socket.Listener | None = None
        self._notifier: QSocketNotifier | None = None
        self._clients: dict[int, tuple[socket.socket, QSocketNotifier, bytearray]] = {}
        self._server: QLocalServer | None = None
        self.held_by_another = False

    def listen(self) -> bool:
        """False when another instance holds the channel or it cannot be made (logged)."""
        if not instance_socket.supported():
            return self._listen_local_server()
        try:
            self._listener = instance_socket.listen(socket_path())
        except OSError as exc:
            log.warning("single-instance channel unavailable: %s", exc)
            return False
        if self._listener is None:
            self.held_by_another = True
            return False
        self._notifier = QSocketNotifier(
            self._listener.sock.fileno(), QSocketNotifier.Type.Read, self
        )
        self._notifier.activated.connect(self._accept)
        return True

    def close(self) -> None:
        for client in list(self._clients):
            self._drop(client)
        if self._notifier is not None:
            self._notifier.setEnabled(False)
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            self._server.close()

    # -- Unix socket ----------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _addr = self._listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("single-instance accept failed: %s", exc)
                return
            conn.setblocking(False)
            fd = conn.fileno()
            notifier = QSocketNotifier(fd, QSocketNotifier.Type.Read, self)

            def ready(*_signal: object, fd: int = fd) -> None:
                self._read(fd)

            notifier.activated.connect(ready)
            self._clients[fd] = (conn, notifier, bytearray())

    def _read(self, fd: int) -> None:
        if fd not in self._clients:
            return
        conn, _notifier, buffer = self._clients[fd]
        try:
            chunk = conn.recv(MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        buffer += chunk
        if chunk and b"\n" not in buffer and len(buffer) < MAX_LINE:
            return  # the rest of the line is on its way
        if buffer:
            reply, command = answer(bytes(buffer).split(b"\n", 1)[0])
            with contextlib.suppress(OSError):
                conn.send(reply)  # a few bytes into an empty socket buffer: never blocks
            if command is not None:
                self.command.emit(command)
        self._drop(fd)

    def _drop(self, fd: int) -> None:
        conn, notifier, _buffer = self._clients.pop(fd)
        notifier.setEnabled(False)
        notifier.deleteLater()
        conn.close()

    # -- named pipe (Windows) ---------------------------------------------------------------
    def _listen_local_server(self) -> bool:
        from PySide6.QtNetwork import QLocalServer

        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._on_connection)
        name = server_name()
        if self._server.listen(name):
            return True
        QLocalServer.removeServer(name)  # a crashed instance's leftover
        if self._server.listen(name):
            return True
        log.warning("single-instance channel unavailable: %s", self._server.errorString())
        return False

    def _on_connection(self) -> None:
        assert self._server is not None
        while self._server.hasPendingConnections():
            sock = self._server.nextPendingConnection()
            sock.readyRead.connect(lambda s=sock: self._read_local(s))
            sock.disconnected.connect(sock.deleteLater)

    def _read_local(self, sock: QLocalSocket) -> None:
        if not sock.canReadLine():
            return
        reply, command = answer(bytes(sock.readLine().data()))
        sock.write(reply)
        sock.flush()
        if command is not None:
            self.command.emit(command)
