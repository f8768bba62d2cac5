"""A tiny tray program that exists only to prove the desktop test harness.

Usage: python tiny_tray.py [--colours C1 C2 ...] [--message-after MS] [--message-ms MS]
(colours as Qt understands them, e.g. "#22c55e"; the icon starts with C1).

It shows a QSystemTrayIcon with a solid-colour icon, a context menu holding "Hello tray" and calls
showMessage("Tiny title", "tiny body") once the icon is visible. It reports on stdout, one line
each, flushed:

    tray-available True|False
    visible True|False
    message-sent
    colour #rrggbb          (after each icon change, including the first)
    menu-about-to-show      (when the tray host asks for the context menu)
    bye                     (on clean exit)

Reading the line "switch" on stdin, or receiving SIGUSR1, swaps the icon to the other colour.
SIGTERM (or the line "quit", or end of a piped stdin) quits cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import stat
import sys

from PySide6.QtCore import QObject, QSocketNotifier, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QPixmap
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon

DEFAULT_COLOURS = ("#22c55e", "#ef4444")  # green, red: far from any panel grey


def say(*words: object) -> None:
    print(*words, flush=True)


def solid_icon(colour: str) -> QIcon:
    icon = QIcon()
    for size in (16, 22, 24, 32, 48, 64):
        pixmap = QPixmap(size, size)
        pixmap.fill(QColor(colour))
        icon.addPixmap(pixmap)
    return icon


class SignalWaker(QObject):
    """Turns POSIX signals into Qt signals (a socketpair wakes the event loop)."""

    received = Signal(int)

    def __init__(self, signums: tuple[int, ...]) -> None:
        super().__init__()
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        signal.set_wakeup_fd(self._write.fileno())
        for signum in signums:
            signal.signal(signum, lambda *_: None)  # the wakeup fd carries the number
        self._notifier = QSocketNotifier(self._read.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)

    def _drain(self) -> None:
        try:
            data = self._read.recv(64)
        except BlockingIOError:
            return
        for signum in data:
            self.received.emit(signum)


class StdinReader(QObject):
    line = Signal(str)
    closed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._fd = sys.stdin.fileno()
        self._buffer = b""
        self._notifier = QSocketNotifier(self._fd, QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._read)

    def _read(self) -> None:
        chunk = os.read(self._fd, 4096)
        if not chunk:
            self._notifier.setEnabled(False)
            self.closed.emit()
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            self.line.emit(raw.decode(errors="replace").strip())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--colours", nargs="+", default=list(DEFAULT_COLOURS))
    parser.add_argument("--message-after", type=int, default=300, metavar="MS")
    parser.add_argument("--message-ms", type=int, default=3000, metavar="MS")
    args = parser.parse_args(argv[1:])
    colours: list[str] = args.colours
    app = QApplication(argv[:1])
    app.setApplicationName("tinytray")
    app.setDesktopFileName("tinytray")
    app.setQuitOnLastWindowClosed(False)

    # First thing: from here on SIGTERM is a clean quit (handled in the event loop).
    def on_signal(signum: int) -> None:
        if signum == signal.SIGUSR1:
            switch()
        elif signum in (signal.SIGTERM, signal.SIGINT):
            app.quit()

    waker = SignalWaker((signal.SIGTERM, signal.SIGINT, signal.SIGUSR1))
    waker.received.connect(on_signal)

    say("tray-available", QSystemTrayIcon.isSystemTrayAvailable())

    state = {"index": 0}
    tray = QSystemTrayIcon()
    tray.setToolTip("Tiny tray")

    def apply_colour() -> None:
        colour = colours[state["index"] % len(colours)]
        tray.setIcon(solid_icon(colour))
        say("colour", QColor(colour).name())

    def switch() -> None:
        state["index"] += 1
        apply_colour()

    menu = QMenu()
    hello = QAction("Hello tray", menu)
    hello.triggered.connect(lambda: say("hello-triggered"))
    menu.addAction(hello)
    menu.aboutToShow.connect(lambda: say("menu-about-to-show"))
    tray.setContextMenu(menu)

    apply_colour()
    tray.show()

    def announce() -> None:
        say("visible", tray.isVisible())
        tray.showMessage(
            "Tiny title", "tiny body", QSystemTrayIcon.MessageIcon.Information, args.message_ms
        )
        say("message-sent")

    QTimer.singleShot(args.message_after, announce)

    def on_line(text: str) -> None:
        if text == "switch":
            switch()
        elif text == "quit":
            app.quit()

    reader = None
    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):  # a pipe from the test; not /dev/null
        reader = StdinReader()
        reader.line.connect(on_line)
        reader.closed.connect(app.quit)

    status = app.exec()
    tray.hide()
    del reader, waker
    say("bye")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
