"""Real servers and a real controller for the widget tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import free_port as free_port  # re-exported for older imports
from trayapp.core import config as cfg
from trayapp.core.history import EventLog
from trayapp.core.model import Port
from trayapp.platforms.scanners import create_scanner
from trayapp.ui.controller import Controller


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_server(port: int) -> subprocess.Popen[bytes] | None:
    """`python -m http.server` on port, once it accepts connections; None if it did not."""
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while server.poll() is None and time.monotonic() < deadline:
        if listening(port):
            return server
        time.sleep(0.05)
    server.kill()
    server.wait()
    return None


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {port} within {timeout} s")


@contextmanager
def http_server(port: int, directory: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A real `python -m http.server` child on 127.0.0.1."""
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    if directory is not None:
        argv += ["--directory", str(directory)]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        yield child
    finally:
        if child.poll() is None:
            child.terminate()
        child.wait(10)


def make_controller(
    home: Path, ports: list[Port], interval: float = 0.2, log: EventLog | None = None
) -> Controller:
    config = cfg.Config(ports=tuple(cfg.WatchedPort(p, f"label {p.number}") for p in ports))
    config = cfg.Config(ports=config.ports, interval=interval)
    return Controller(home / "config" / "config.json", config, create_scanner, event_log=log)
