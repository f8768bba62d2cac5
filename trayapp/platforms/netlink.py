"""Linux scanner: ask the kernel directly over NETLINK_SOCK_DIAG, as `ss` does. Stdlib only.

Per poll and family, one dump for TCP LISTEN sockets and one for bound unconnected UDP sockets
(state TCP_CLOSE), filtered by local port in the kernel with INET_DIAG_REQ_BYTECODE. A
LISTEN-only dump walks just the listening hash, never the established sockets, so it stays cheap
with tens of thousands of connections; with ``connections=True`` the other states are added to
the same dumps, and then the kernel filter is what keeps the reply small.

The kernel reports each socket's uid and inode even for other users' sockets: the uid names the
user when the process is hidden, the inode leads to the holding processes (procfs.py).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import socket
import struct
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from trayapp.core.model import Connection, Family, Listener, Owner, Port, PortState, Snapshot
from trayapp.core.model import ProtocolName as Protocol
from trayapp.core.scanning import ScanError, Scanner
from trayapp.platforms import owners
from trayapp.platforms.procfs import Resolution, SocketOwners

log = logging.getLogger(__name__)

# <linux/netlink.h>, <linux/sock_diag.h>, <linux/inet_diag.h>. AF_NETLINK is spelled out so the
# module imports (and type-checks) on systems whose socket module lacks it.
AF_NETLINK = 16
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_SKV6ONLY = 11
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3

TCP_ESTABLISHED = 1
TCP_CLOSE = 7
TCP_LISTEN = 10
# psutil's spelling; a request socket (NEW_SYN_RECV) is what psutil and ss call SYN_RECV.
STATE_NAMES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN_RECV",
}
CONNECTION_PIDS_LIMIT = 512  # connections beyond this many per scan get pid None
TCP_CONNECTION_STATES = sum(1 << s for s in STATE_NAMES if s not in (TCP_CLOSE, TCP_LISTEN))

_NLMSGHDR = struct.Struct("=IHHII")
_REQ_V2 = struct.Struct("=BBBxI48x")  # family, protocol, ext, states, zeroed inet_diag_sockid
_RTATTR = struct.Struct("=HH")
_MSG_HEAD = struct.Struct("=BB2x")  # family, state (timer and retrans skipped)
_MSG_PORTS = struct.Struct("!HH")  # sport, dport: network order
_MSG_UID_INODE = struct.Struct("=II")
_MSG_SIZE = 72  # sizeof(struct inet_diag_msg)
_RECV_SIZE = 1 << 17  # larger than the kernel's biggest dump skb (32 KiB): nothing truncated
_TIMEOUT = 2.0  # a kernel that never answers must not freeze the watch thread


class NetlinkError(OSError):
    """The kernel answered a sock_diag request with an error (errno in .errno)."""


@dataclass(frozen=True)
class DiagSocket:
    """One socket as inet_diag reports it."""

    protocol: Protocol
    family: int  # AF_INET or AF_INET6
    state: int  # TCP_* number; UDP uses TCP_CLOSE (unconnected) and TCP_ESTABLISHED
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    uid: int
    inode: int
    v6only: bool | None  # None when the kernel did not say (not LISTEN/CLOSE, or AF_INET)

    @property
    def listening(self) -> bool:
        wanted = TCP_LISTEN if self.protocol == "tcp" else TCP_CLOSE
        return self.state == wanted


def port_filter(ports: Iterable[int]) -> bytes:
    """inet_diag bytecode accepting a socket whose local port is one of ``ports``.

    Each run of consecutive ports is one block "GE lo; LE hi; JMP accept". A failed test jumps
    to the next block; past the last one the program runs off its end by 4 bytes, which the
    kernel reads as "reject". The kernel's audit wants every jump target on the chain of "yes"
    edges, which this layout (each op's yes = the next op) satisfies. GE/LE rather than S_EQ,
    which older kernels reject.
    """
    code = b""
    for low, high in reversed(_ranges(ports)):
        block = _port_op(INET_DIAG_BC_S_GE, 20, low) + _port_op(INET_DIAG_BC_S_LE, 12, high)
        if code:
            block += struct.pack("=BBH", INET_DIAG_BC_JMP, 4, 4 + len(code))
        code = block + code
    return code


def _port_op(code: int, no: int, port: int) -> bytes:
    return struct.pack("=BBHBBH", code, 8, no, 0, 0, port)


def _ranges(ports: Iterable[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for port in sorted(set(ports)):
        if ranges and ranges[-1][1] == port - 1:
            ranges[-1] = (ranges[-1][0], port)
        else:
            ranges.append((port, port))
    return ranges


class DiagSocketClient:
    """One netlink socket for sequential sock_diag dumps."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._buffer = bytearray(_RECV_SIZE)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def dump(
        self, protocol: Protocol, family: int, states: int, ports: Sequence[int]
    ) -> list[DiagSocket]:
        """Sockets of one protocol and family in ``states`` (bit mask) on ``ports``."""
        body = self._request_body(protocol, family, states, ports)
        try:
            sockets, interrupted = self._dump_once(protocol, body)
        except NetlinkError:
            raise  # the kernel's answer: asking again changes nothing
        except OSError:
            # This socket may hold half of an earlier dump: once more on a fresh one.
            self.close()
            sockets, interrupted = self._dump_once(protocol, body)
        if interrupted:
            # NLM_F_DUMP_INTR: the tables changed mid-dump, so a socket may have been missed.
            sockets, _ = self._dump_once(protocol, body)
        return sockets

    def _request_body(
        self, protocol: Protocol, family: int, states: int, ports: Sequence[int]
    ) -> bytes:
        proto = socket.IPPROTO_TCP if protocol == "tcp" else socket.IPPROTO_UDP
        body = _REQ_V2.pack(family, proto, 0, states)
        bytecode = port_filter(ports)
        return body + _RTATTR.pack(_RTATTR.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(
                AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
            )
            try:
                sock.settimeout(_TIMEOUT)
                sock.bind((0, 0))
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def _dump_once(self, protocol: Protocol, body: bytes) -> tuple[list[DiagSocket], bool]:
        sock = self._socket()
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
        )
        sock.sendto(header + body, (0, 0))
        sockets: list[DiagSocket] = []
        interrupted = False
        # Python retries recv on EINTR by itself (PEP 475).
        while True:
            size = sock.recv_into(self._buffer)
            done, interrupted_now = _parse_reply(
                memoryview(self._buffer)[:size], seq, protocol, sockets
            )
            interrupted |= interrupted_now
            if done:
                return sockets, interrupted


def _parse_reply(
    data: memoryview, seq: int, protocol: Protocol, out: list[DiagSocket]
) -> tuple[bool, bool]:
    """Append the sockets in one datagram; return (dump finished, dump interrupted)."""
    offset = 0
    interrupted = False
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            raise NetlinkError(errno.EBADMSG, "malformed netlink message")
        payload = offset + _NLMSGHDR.size
        end = offset + length
        offset = (end + 3) & ~3
        if msg_seq != seq:
            continue  # left over from an earlier request
        interrupted |= bool(flags & NLM_F_DUMP_INTR)
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            (error,) = struct.unpack_from("=i", data, payload) if end - payload >= 4 else (0,)
            if error:
                raise NetlinkError(-error, os.strerror(-error))
            return True, interrupted
        if kind == SOCK_DIAG_BY_FAMILY and end - payload >= _MSG_SIZE:
            out.append(_parse_socket(data, payload, end, protocol))
    return False, interrupted


def _parse_socket(data: memoryview, start: int, end: int, protocol: Protocol) -> DiagSocket:
    family, state = _MSG_HEAD.unpack_from(data, start)
    sport, dport = _MSG_PORTS.unpack_from(data, start + 4)
    uid, inode = _MSG_UID_INODE.unpack_from(data, start + 64)
    return DiagSocket(
        protocol=protocol,
        family=family,
        state=state,
        local_address=_address(family, data[start + 8 : start + 24]),
        local_port=sport,
        remote_address=_address(family, data[start + 24 : start + 40]),
        remote_port=dport,
        uid=uid,
        inode=inode,
        v6only=_v6only(data, start + _MSG_SIZE, end),
    )


def _address(family: int, raw: memoryview) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    return socket.inet_ntop(socket.AF_INET6, raw)


def _v6only(data: memoryview, offset: int, end: int) -> bool | None:
    # The kernel adds INET_DIAG_SKV6ONLY by itself to every AF_INET6 socket in LISTEN or
    # CLOSE state; idiag_ext (8 bits) cannot even ask for attribute 11.
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        if kind == INET_DIAG_SKV6ONLY and length > _RTATTR.size:
            return bool(data[offset + _RTATTR.size])
        offset += (length + 3) & ~3
    return None


def family_of(sock: DiagSocket) -> Family:
    if sock.family == socket.AF_INET:
        return "ipv4"
    address = ipaddress.IPv6Address(sock.local_address)
    if address.ipv4_mapped is not None:
        return "ipv4"  # an IPv6 socket bound to ::ffff:a.b.c.d only ever sees IPv4
    if address.is_unspecified and sock.v6only is False:
        return "dual"
    return "ipv6"


@functools.lru_cache(maxsize=256)
def username(uid: int) -> str | None:
    import pwd  # here, not at the top: the module must import anywhere (tests collect it)

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def read_proc_net_udp(ports: Iterable[int], proc_root: str = "/proc") -> list[DiagSocket]:
    """UDP sockets on ``ports`` from /proc/net/udp{,6}: for kernels without udp_diag.

    That text has no V6ONLY flag, so an IPv6 wildcard socket reads as "ipv6", never "dual".
    """
    wanted = set(ports)
    found: list[DiagSocket] = []
    for name, family in (("udp", socket.AF_INET), ("udp6", socket.AF_INET6)):
        try:
            with open(f"{proc_root}/net/{name}", encoding="ascii") as table:
                lines = table.readlines()[1:]
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
        found.extend(s for s in _proc_net_rows(lines, family) if s.local_port in wanted)
    return found


def _proc_net_rows(lines: Iterable[str], family: int) -> Iterator[DiagSocket]:
    for line in lines:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, remote = fields[1].split(":"), fields[2].split(":")
        yield DiagSocket(
            protocol="udp",
            family=family,
            state=int(fields[3], 16),
            local_address=_proc_net_address(family, local[0]),
            local_port=int(local[1], 16),
            remote_address=_proc_net_address(family, remote[0]),
            remote_port=int(remote[1], 16),
            uid=int(fields[7]),
            inode=int(fields[9]),
            v6only=None,
        )


def _proc_net_address(family: int, text: str) -> str:
    # The kernel prints each 32-bit word of the address as a host-order integer.
    raw = b"".join(
        int(text[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(text), 8)
    )
    return socket.inet_ntop(family, raw)


class NetlinkScanner(Scanner):
    """Listeners from sock_diag, owners from /proc, descriptions from psutil (cached)."""

    name = "netlink"

    def __init__(self, *, udp_diag: bool = True, owner_index: SocketOwners | None = None) -> None:
        """``udp_diag=False`` reads UDP from /proc/net/udp as on a kernel without udp_diag."""
        self._client = DiagSocketClient()
        self._udp_diag = udp_diag
        self._owner_index = owner_index or SocketOwners()
        # (inode, pid) -> Owner. The holder check in procfs proves the same process still
        # holds the socket, so its description cannot have gone stale through pid reuse.
        self._owner_cache: dict[tuple[int, int], Owner] = {}

    def close(self) -> None:
        self._client.close()
        self._owner_index.clear()
        self._owner_cache.clear()

    def check(self) -> None:
        """Raise ScanError unless sock_diag with a port filter works here."""
        try:
            self._client.dump("tcp", socket.AF_INET, 1 << TCP_LISTEN, [0])
        except OSError as exc:
            raise ScanError(f"netlink sock_diag unavailable: {exc}") from exc

    def scan(self, ports: Iterable[Port], *, connections: bool = False) -> Snapshot:
        ports = tuple(ports)
        problems: list[str] = []
        try:
            sockets = self._sockets(ports, connections, problems)
            resolutions = self._resolve(sockets, connections)
            states = self._states(ports, sockets, resolutions, connections, problems)
        except ScanError:
            raise
        except Exception as exc:
            # Whatever broke, this scan knows nothing: the caller keeps the previous state.
            self._client.close()
            raise ScanError(f"netlink scan failed: {exc!r}") from exc
        return Snapshot(states=states, problems=tuple(dict.fromkeys(problems)), backend=self.name)

    def _sockets(
        self, ports: Sequence[Port], connections: bool, problems: list[str]
    ) -> list[DiagSocket]:
        tcp = sorted({p.number for p in ports if p.protocol == "tcp"})
        udp = sorted({p.number for p in ports if p.protocol == "udp"})
        found: list[DiagSocket] = []
        if tcp:
            states = 1 << TCP_LISTEN | (TCP_CONNECTION_STATES if connections else 0)
            for family in (socket.AF_INET, socket.AF_INET6):
                found += self._client.dump("tcp", family, states, tcp)
        if udp:
            found += self._udp_sockets(udp, connections, problems)
        return found

    def _udp_sockets(
        self, ports: Sequence[int], connections: bool, problems: list[str]
    ) -> list[DiagSocket]:
        states = 1 << TCP_CLOSE | (1 << TCP_ESTABLISHED if connections else 0)
        if self._udp_diag:
            try:
                return [
                    sock
                    for family in (socket.AF_INET, socket.AF_INET6)
                    for sock in self._client.dump("udp", family, states, ports)
                ]
            except NetlinkError as exc:
                if exc.errno not in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                log.info("udp_diag unavailable (%s): reading /proc/net/udp instead", exc)
                self._udp_diag = False
        problems.append(
            "UDP read from /proc/net/udp (kernel without udp_diag): dual-stack not detected"
        )
        return [s for s in read_proc_net_udp(ports) if (1 << s.state) & states]

    def _resolve(self, sockets: Sequence[DiagSocket], connections: bool) -> dict[int, Resolution]:
        # inode 0: TIME_WAIT and request sockets belong to no file, so to no process.
        wanted = {s.inode: s.uid for s in sockets if s.inode and s.listening}
        if connections:
            # Each resolved inode costs a readlink per poll: bound that for a busy server.
            others = [s for s in sockets if s.inode and not s.listening]
            wanted.update((s.inode, s.uid) for s in others[:CONNECTION_PIDS_LIMIT])
        resolutions = self._owner_index.resolve(wanted)
        for key in [k for k in self._owner_cache if k[0] not in wanted]:
            del self._owner_cache[key]
        return resolutions

    def _states(
        self,
        ports: Sequence[Port],
        sockets: Sequence[DiagSocket],
        resolutions: dict[int, Resolution],
        connections: bool,
        problems: list[str],
    ) -> tuple[PortState, ...]:
        listeners: dict[Port, list[Listener]] = {}
        others: dict[Port, list[Connection]] = {}
        for sock in sockets:
            port = Port(sock.local_port, sock.protocol)
            resolution = resolutions.get(sock.inode, Resolution(()))
            if sock.listening:
                listener = self._listener(sock, resolution)
                listeners.setdefault(port, []).append(listener)
                problems.extend(
                    _hidden_problem(port, listener, resolution, self._owner_index.privileged)
                )
            elif connections:
                others.setdefault(port, []).append(_connection(sock, resolution))
        return tuple(
            PortState(
                port,
                tuple(sorted(listeners.get(port, ()), key=_listener_order)),
                tuple(others.get(port, ())) if connections else None,
            )
            for port in ports
        )

    def _listener(self, sock: DiagSocket, resolution: Resolution) -> Listener:
        return Listener(
            port=sock.local_port,
            protocol=sock.protocol,
            address=sock.local_address,
            family=family_of(sock),
            uid=sock.uid,
            username=username(sock.uid),
            inode=sock.inode,
            owners=tuple(self._owner(sock.inode, pid) for pid in resolution.pids),
        )

    def _owner(self, inode: int, pid: int) -> Owner:
        key = (inode, pid)
        owner = self._owner_cache.get(key)
        if owner is None:
            owner = self._owner_cache[key] = owners.describe(pid)
        return owner


def _connection(sock: DiagSocket, resolution: Resolution) -> Connection:
    pids = resolution.pids
    return Connection(
        protocol=sock.protocol,
        local_address=sock.local_address,
        local_port=sock.local_port,
        remote_address=sock.remote_address,
        remote_port=sock.remote_port,
        status=STATE_NAMES.get(sock.state, str(sock.state)),
        uid=sock.uid if sock.inode else None,  # kernel says 0 for sockets without a file
        pid=pids[0] if pids else None,
    )


def _hidden_problem(
    port: Port, listener: Listener, resolution: Resolution, privileged: bool
) -> list[str]:
    if listener.owners:
        return []
    user = listener.username or f"uid {listener.uid}"
    if resolution.denied and privileged:
        # Root refused too: a container or a security module hides some processes' files.
        return [
            f"process hidden: socket of user {user} on {port}; the system refused to show "
            "its process even to an administrator (container or security policy)"
        ]
    if resolution.denied:
        return [f"process hidden: socket of user {user} on {port}; run as administrator to see it"]
    return [
        f"no process found holding the socket of user {user} on {port} "
        "(closing, or in another container)"
    ]


_FAMILY_ORDER = {"ipv4": 0, "dual": 1, "ipv6": 2}


def _listener_order(listener: Listener) -> tuple[int, str, int]:
    return (_FAMILY_ORDER[listener.family], listener.address, listener.inode or 0)
