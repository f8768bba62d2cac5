"""One Port Watch per user: a second launch asks the first to show itself, then exits.

The channel is a QLocalServer (a Unix socket in a private runtime dir, or a named pipe on
Windows) that only this user can reach; the app opens no network socket at all.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from trayapp import APP_NAME
from trayapp.core import paths

log = logging.getLogger(__name__)
PROTOCOL_VERSION = 1
TIMEOUT_MS = 1000


def server_name() -> str:
    # Per user, and per PORTWATCH_HOME so isolated test instances don't meet each other.
    try:
        user = getpass.getuser()
    except (KeyError, OSError, ImportError):  # Windows without USERNAME: it tries pwd
        user = "unknown"
    scope = hashlib.sha1(str(paths.config_dir()).encode()).hexdigest()[:10]
    return f"{APP_NAME}-{user}-{scope}"


def ask_to_quit() -> bool:
    """Ask the running app to quit (`portwatch tray --quit`): True if one took the message."""
    from PySide6.QtCore import QCoreApplication

    _app = QCoreApplication.instance() or QCoreApplication([])  # QLocalSocket needs one
    return ask_running_instance("quit")


def ask_running_instance(command: str = "show") -> bool:
    """True if another instance took the message (so this one should exit)."""
    socket = QLocalSocket()
    socket.connectToServer(server_name())
    if not socket.waitForConnected(TIMEOUT_MS):
        return False
    message = json.dumps({"version": PROTOCOL_VERSION, "command": command}) + "\n"
    socket.write(message.encode())
    socket.flush()
    socket.waitForBytesWritten(TIMEOUT_MS)
    ok = socket.waitForReadyRead(TIMEOUT_MS) and bytes(socket.readAll().data()).startswith(b"ok")
    socket.disconnectFromServer()
    return ok


class InstanceServer(QObject):
    command = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._on_connection)

    def listen(self) -> bool:
        name = server_name()
        if self.server.listen(name):
            return True
        # A crashed instance leaves its Unix socket file behind; nobody answers on it.
        QLocalServer.removeServer(name)
        if self.server.listen(name):
            return True
        log.warning("single-instance channel unavailable: %s", self.server.errorString())
        return False

    def close(self) -> None:
        self.server.close()

    def _on_connection(self) -> None:
        while self.server.hasPendingConnections():
            socket = self.server.nextPendingConnection()
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(socket.deleteLater)

    def _read(self, socket: QLocalSocket) -> None:
        if not socket.canReadLine():
            return
        line = bytes(socket.readLine().data())[:4096]
        try:
            message = json.loads(line)
            command = str(message["command"]) if isinstance(message, dict) else ""
            version = message.get("version") if isinstance(message, dict) else None
        except (ValueError, KeyError):
            command, version = "", None
        if version != PROTOCOL_VERSION:
            # Another version's request may mean something else: say so, do nothing.
            socket.write(f"error protocol version {PROTOCOL_VERSION} expected\n".encode())
        elif command == "ping":  # answered by the GUI thread: tells that it is not stuck
            socket.write(b"ok\n")
        elif command in ("show", "quit"):
            socket.write(b"ok\n")
            self.command.emit(command)
        else:
            socket.write(b"error unknown command\n")
        socket.flush()
