"""The values the core hands out: ports, listeners, their owners and snapshots.

Everything here is immutable so a snapshot made on a worker thread can be handed to the GUI
thread (or compared with the previous one) without copying or locking.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from typing import Literal, TypeGuard

ProtocolName = Literal["tcp", "udp"]
Family = Literal["ipv4", "ipv6", "dual"]
PROTOCOLS: tuple[ProtocolName, ...] = ("tcp", "udp")
MIN_PORT, MAX_PORT = 1, 65535


def is_port_number(value: object) -> TypeGuard[int]:
    """The one rule for a port that can be watched, wherever a number comes from (settings,
    the events log, the known-services file): a whole number from 1 to 65535, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and MIN_PORT <= value <= MAX_PORT


@dataclass(frozen=True, order=True)
class Port:
    """One watched port: a number and a transport protocol; on another machine also the remote
    entry's title (host:port or its URL, core/remote.py). Scanners only ever get local ones."""

    number: int
    protocol: ProtocolName = "tcp"
    host: str = ""

    def __str__(self) -> str:
        return self.host or f"{self.number}/{self.protocol}"


@dataclass(frozen=True)
class Owner:
    """A process that holds a listening socket.

    Any field but pid may be None when the OS refused to tell (AccessDenied) or the
    process went away half-way through the lookup.
    """

    pid: int
    name: str | None = None
    exe: str | None = None
    cmdline: tuple[str, ...] = ()
    username: str | None = None
    create_time: float | None = None  # seconds since the epoch

    @property
    def full_name(self) -> str | None:
        """The name, whole: Linux cuts a process name to 15 bytes, and for a script psutil
        cannot restore it (start-bluesky-httpserver runs as "start-bluesky-h"); the script's
        path on the command line still has it."""
        name = self.name
        if name and len(name) == 15:
            for arg in self.cmdline[:3]:
                base = arg.replace("\\", "/").rsplit("/", 1)[-1]
                if base.startswith(name):
                    return base
        return name


@dataclass(frozen=True)
class Listener:
    """A socket that means "a service is on this port": TCP LISTEN or unconnected bound UDP."""

    port: int
    protocol: ProtocolName
    address: str  # "0.0.0.0", "127.0.0.1", "::", "::1", ...
    family: Family  # "dual" = an IPv6 socket that also accepts IPv4 (IPV6_V6ONLY off)
    uid: int | None = None  # the socket's owner uid, known even when the process is hidden
    username: str | None = None  # uid resolved to a name, when it resolves
    inode: int | None = None
    owners: tuple[Owner, ...] = ()  # every process holding the socket; empty when hidden

    @property
    def owner_visible(self) -> bool:
        return bool(self.owners)


@dataclass(frozen=True)
class Connection:
    """A non-listening socket whose local port is a watched port (client source port,
    TIME_WAIT leftover, ...). Never counts as a service; it matters to the diagnosis."""

    protocol: ProtocolName
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    status: str  # "ESTABLISHED", "TIME_WAIT", ... (psutil's spelling)
    uid: int | None = None
    pid: int | None = None


@dataclass(frozen=True)
class PortState:
    """What one scan saw on one watched port."""

    port: Port
    listeners: tuple[Listener, ...] = ()
    # Only filled by a scan asked for connections; None means "not looked at".
    connections: tuple[Connection, ...] | None = None

    @property
    def listening(self) -> bool:
        return bool(self.listeners)

    @property
    def owners(self) -> tuple[Owner, ...]:
        """Every distinct visible owner, in listener order."""
        seen: dict[int, Owner] = {}
        for listener in self.listeners:
            for owner in listener.owners:
                seen.setdefault(owner.pid, owner)
        return tuple(seen.values())

    @property
    def evidence(self) -> list[str]:
        """What identifies the owners (their names and command lines), for telling which
        service this is."""
        return [" ".join((owner.name or "", *owner.cmdline)) for owner in self.owners]

    @property
    def hidden_owners(self) -> tuple[str, ...]:
        """Who holds the sockets whose processes we may not see: "user bob", "uid 1001" or
        "another user" (psutil alone cannot tell a hidden socket's uid)."""
        names: dict[str, None] = {}
        for listener in self.listeners:
            if not listener.owner_visible:
                names.setdefault(who_text(listener.username, listener.uid), None)
        return tuple(names)


def who_text(username: str | None, uid: int | None) -> str:
    if username:
        return f"user {username}"
    return "another user" if uid is None else f"uid {uid}"


@dataclass(frozen=True)
class Snapshot:
    """One scan of all watched ports."""

    states: tuple[PortState, ...]
    time: float = field(default_factory=_time.time)  # wall clock, for display and logs
    monotonic: float = field(default_factory=_time.monotonic)  # for intervals
    # Scanning trouble worth showing (permission problems, a backend that failed).
    problems: tuple[str, ...] = ()
    backend: str = ""
    duration: float | None = None  # seconds the scan took, when the caller timed it

    def state(self, port: Port) -> PortState:
        for state in self.states:
            if state.port == port:
                return state
        return PortState(port)
