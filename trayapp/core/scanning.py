"""The scanner interface: "which of these ports has a listener, and who owns it?"."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import replace

from trayapp.core.model import Port, Snapshot


class Scanner(ABC):
    """Looks up listeners on a set of ports.

    Implementations never raise for what the OS throws at single sockets or processes
    (vanished processes, denied access): they report it in ``Snapshot.problems``. Only when
    the backend fails as a whole do they raise ScanError, so the caller keeps what it knew.
    Not thread-safe: give each thread its own scanner.
    """

    name: str = "scanner"

    @abstractmethod
    def scan(self, ports: Iterable[Port], *, connections: bool = False) -> Snapshot:
        """Return one PortState per port, in the order given.

        With ``connections=True`` each state also lists the non-listening sockets whose local
        port is that port (TIME_WAIT, ESTABLISHED source ports): dearer, so only on demand.
        """

    def close(self) -> None:  # noqa: B027 - most scanners hold nothing to release
        """Release OS resources (netlink sockets, caches)."""


class ScanError(Exception):
    """The backend failed as a whole, so this scan says nothing about the ports.

    Callers keep their previous state: a failed scan must never make a busy port look free.
    """


def timed_scan(scanner: Scanner, ports: Iterable[Port], *, connections: bool = False) -> Snapshot:
    """Scan and note how long it took (the metrics report it; a slow backend shows there)."""
    started = time.perf_counter()
    snapshot = scanner.scan(ports, connections=connections)
    return replace(snapshot, duration=time.perf_counter() - started)
