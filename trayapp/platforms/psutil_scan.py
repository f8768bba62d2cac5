"""Scanner over psutil: works on every OS psutil supports; the fallback where netlink is missing.

Two modes:

- system-wide (``"psutil"``): one ``psutil.net_connections()`` call, filtered. On Linux without
  root other users' sockets come with pid None: listed, owner hidden.
- own processes plus probes (``"psutil-own+probe"``): what macOS allows without root, where
  ``net_connections()`` raises AccessDenied. Our own processes' sockets come from
  ``Process.net_connections()``; a watched port still unexplained is probed: a TCP connect to
  127.0.0.1 and ::1, or for UDP a bind on 0.0.0.0 and :: (EADDRINUSE = taken). Selectable on
  any OS with ``own_processes_only=True``; system-wide mode switches to it by itself on
  AccessDenied.

Known limits, from what psutil exposes:

- No V6ONLY flag: an IPv6 wildcard ("::") socket is reported "ipv6" even when it is dual-stack
  and also takes IPv4 (the netlink scanner tells them apart).
- No socket identity: entries with the same protocol and local address are merged into one
  Listener, so two SO_REUSEPORT sockets look like one socket with two owners.
- No socket uid: Listener.uid is None; Listener.username is the first visible owner's user.
- Probes see only loopback: a hidden listener bound to another address only is not found,
  and a probed Listener's address is the probed address, not necessarily the bound one.
- Connected UDP sockets get status "ESTABLISHED" (psutil says "NONE"), as the kernel and
  netlink scanner call them.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from trayapp.core.model import Connection, Family, Listener, Port, PortState, Snapshot
from trayapp.core.model import ProtocolName as Protocol
from trayapp.core.scanning import ScanError, Scanner
from trayapp.platforms import owners

SYSTEM_WIDE = "psutil"
OWN_AND_PROBE = "psutil-own+probe"
_PROCESS_ERRORS = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError)
_PROBES: tuple[tuple[socket.AddressFamily, str], ...] = (
    (socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET6, "::1"),
)
_WILDCARDS: tuple[tuple[socket.AddressFamily, str], ...] = (
    (socket.AF_INET, "0.0.0.0"),
    (socket.AF_INET6, "::"),
)


@dataclass(frozen=True)
class _Socket:
    """One psutil connection entry, reduced to what the scan needs."""

    protocol: Protocol
    family: int
    address: str
    port: int
    remote_address: str
    remote_port: int
    status: str
    pid: int | None

    @property
    def listening(self) -> bool:
        if self.protocol == "tcp":
            return self.status == str(psutil.CONN_LISTEN)
        return not self.remote_address  # an unconnected, bound UDP socket


@dataclass
class _ListenerDraft:
    protocol: Protocol
    family: int
    address: str
    port: int
    pids: list[int] = field(default_factory=list)


class PsutilScanner(Scanner):
    def __init__(self, *, own_processes_only: bool = False, probe_timeout: float = 0.25) -> None:
        self._own_only = own_processes_only
        self._probe_timeout = probe_timeout
        self.name = OWN_AND_PROBE if own_processes_only else SYSTEM_WIDE

    def scan(self, ports: Iterable[Port], *, connections: bool = False) -> Snapshot:
        ports = tuple(ports)
        problems: list[str] = []
        try:
            states = self._scan(ports, connections, problems)
        except ScanError:
            raise
        except Exception as exc:
            raise ScanError(f"psutil scan failed: {exc!r}") from exc
        return Snapshot(states=states, problems=tuple(dict.fromkeys(problems)), backend=self.name)

    def _scan(
        self, ports: Sequence[Port], connections: bool, problems: list[str]
    ) -> tuple[PortState, ...]:
        watched = set(ports)
        sockets = None if self._own_only else self._system_sockets(watched)
        if sockets is None:
            sockets = self._own_sockets(watched)
        listeners = self._listeners(sockets, problems)
        if self._own_only:
            self._probe_missing(watched, sockets, listeners, problems)
        return tuple(
            PortState(
                port,
                tuple(listeners.get(port, ())),
                _connections(port, sockets) if connections else None,
            )
            for port in ports
        )

    def _system_sockets(self, watched: set[Port]) -> list[_Socket] | None:
        """Every socket on a watched port; None (and own mode from now on) if not allowed."""
        try:
            entries = psutil.net_connections(kind="inet")
        except psutil.AccessDenied:
            self._own_only = True
            self.name = OWN_AND_PROBE
            return None
        return [s for s in (_socket(e, e.pid) for e in entries) if s and _port(s) in watched]

    def _own_sockets(self, watched: set[Port]) -> list[_Socket]:
        found: list[_Socket] = []
        for proc in _own_processes():
            try:
                entries = proc.net_connections(kind="inet")
            except _PROCESS_ERRORS:
                continue  # exited, or not ours after all
            found.extend(
                s for s in (_socket(e, proc.pid) for e in entries) if s and _port(s) in watched
            )
        return found

    def _listeners(
        self, sockets: Sequence[_Socket], problems: list[str]
    ) -> dict[Port, list[Listener]]:
        drafts: dict[tuple[Protocol, str, int], _ListenerDraft] = {}
        for sock in sockets:
            if not sock.listening:
                continue
            key = (sock.protocol, sock.address, sock.port)
            draft = drafts.setdefault(
                key, _ListenerDraft(sock.protocol, sock.family, sock.address, sock.port)
            )
            if sock.pid is not None and sock.pid not in draft.pids:
                draft.pids.append(sock.pid)
        result: dict[Port, list[Listener]] = {}
        for draft in drafts.values():
            listener = _listener(draft)
            port = Port(draft.port, draft.protocol)
            result.setdefault(port, []).append(listener)
            if not listener.owners:
                problems.append(
                    f"process hidden: socket of another user on {port}; "
                    "run as administrator to see it"
                )
        return result

    def _probe_missing(
        self,
        watched: set[Port],
        sockets: Sequence[_Socket],
        listeners: dict[Port, list[Listener]],
        problems: list[str],
    ) -> None:
        ours = {_port(s) for s in sockets}
        for port in sorted(watched):
            if port in listeners:
                continue
            if port.protocol == "tcp":
                found = self._tcp_probe(port.number)
            elif port in ours:
                # Our own connected UDP socket on that port would fail the bind test too.
                continue
            else:
                found = _udp_bind_test(port.number, problems)
            if found:
                listeners[port] = [_hidden_listener(port, f, a) for f, a in found]
                problems.append(
                    f"{port}: in use by another user's process, hidden without administrator rights"
                )

    def _tcp_probe(self, number: int) -> list[tuple[int, str]]:
        answered: list[tuple[int, str]] = []
        for family, address in _PROBES:
            try:
                probe = socket.socket(family, socket.SOCK_STREAM)
            except OSError:
                continue  # no IPv6 here
            with probe:
                probe.settimeout(self._probe_timeout)
                try:
                    result = probe.connect_ex((address, number))
                except TimeoutError:
                    result = 0  # loopback never times out unless a full backlog drops the SYN
                except OSError:
                    continue
            if result == 0:
                answered.append((family, address))
        return answered


def _udp_bind_test(number: int, problems: list[str]) -> list[tuple[int, str]]:
    taken: list[tuple[int, str]] = []
    for family, address in _WILDCARDS:
        try:
            test = socket.socket(family, socket.SOCK_DGRAM)
        except OSError:
            continue
        with test:
            try:
                if family == socket.AF_INET6:
                    # Test the IPv6 side alone; 0.0.0.0 already covered IPv4.
                    test.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                test.bind((address, number))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    taken.append((family, address))
                elif exc.errno in (errno.EACCES, errno.EPERM):
                    problems.append(f"{number}/udp: cannot test without administrator rights")
    return taken


def _own_processes() -> Iterator[Any]:
    if hasattr(os, "getuid"):
        me = os.getuid()
        for proc in psutil.process_iter(["uids"], ad_value=None):
            uids = proc.info.get("uids")
            if uids is not None and me in (uids.real, uids.effective):
                yield proc
        return
    try:
        me_name = psutil.Process().username()
    except _PROCESS_ERRORS:
        return
    for proc in psutil.process_iter(["username"], ad_value=None):
        if proc.info.get("username") == me_name:
            yield proc


def _socket(entry: Any, pid: int | None) -> _Socket | None:
    if not entry.laddr:
        return None
    remote = entry.raddr
    return _Socket(
        protocol="tcp" if entry.type == socket.SOCK_STREAM else "udp",
        family=int(entry.family),
        address=str(entry.laddr.ip),
        port=int(entry.laddr.port),
        remote_address=str(remote.ip) if remote else "",
        remote_port=int(remote.port) if remote else 0,
        status=str(entry.status),
        pid=int(pid) if pid is not None and pid >= 0 else None,
    )


def _port(sock: _Socket) -> Port:
    return Port(sock.port, sock.protocol)


def family_name(family: int, address: str) -> Family:
    if family == socket.AF_INET or address.lower().startswith("::ffff:"):
        return "ipv4"  # an IPv6 socket bound to a v4-mapped address only ever sees IPv4
    return "ipv6"  # psutil cannot see V6ONLY, so "dual" is never claimed


def _listener(draft: _ListenerDraft) -> Listener:
    described = tuple(owners.describe(pid) for pid in draft.pids)
    return Listener(
        port=draft.port,
        protocol=draft.protocol,
        address=draft.address,
        family=family_name(draft.family, draft.address),
        username=next((o.username for o in described if o.username), None),
        owners=described,
    )


def _hidden_listener(port: Port, family: int, address: str) -> Listener:
    return Listener(
        port=port.number,
        protocol=port.protocol,
        address=address,
        family=family_name(family, address),
    )


def _connections(port: Port, sockets: Sequence[_Socket]) -> tuple[Connection, ...]:
    return tuple(
        Connection(
            protocol=s.protocol,
            local_address=s.address,
            local_port=s.port,
            remote_address=s.remote_address,
            remote_port=s.remote_port,
            status=s.status if s.protocol == "tcp" else "ESTABLISHED",
            pid=s.pid,
        )
        for s in sockets
        if _port(s) == port and not s.listening
    )
