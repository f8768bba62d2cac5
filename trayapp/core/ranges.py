"""What a port number's range means: IANA's three ranges (RFC 6335) and this OS's own range.

The IANA range says who may claim a number; the OS's ephemeral range says whether a client
socket on this machine may take the port first. The second is what breaks servers, so it gets
the warning and the exact command to fix it.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace
from typing import Literal

from trayapp.core.host import EphemeralInfo, HostFacts, OSName, PortSpan

RangeKey = Literal["well-known", "registered", "dynamic"]

SYSCTL_FILE = "/etc/sysctl.d/90-portwatch.conf"


@dataclass(frozen=True)
class _IanaRange:
    key: RangeKey
    title: str
    first: int
    last: int
    explanation: str


_IANA_RANGES = (
    _IanaRange(
        "well-known",
        "System Ports (well-known)",
        0,
        1023,
        "IANA assigns these ports to the Internet's core services, such as SSH (22), "
        "HTTP (80) and HTTPS (443). "
        "On Linux only root, or a program given CAP_NET_BIND_SERVICE, may listen on them, "
        "unless net.ipv4.ip_unprivileged_port_start is lowered; "
        "macOS has the same rule for a specific address (since 10.14 anyone may listen on all "
        "addresses), and Windows has no such rule.",
    ),
    _IanaRange(
        "registered",
        "User Ports (registered)",
        1024,
        49151,
        "IANA registers services here on request, such as PostgreSQL (5432), Redis (6379) "
        "and Jupyter (8888), and most development servers pick their defaults here. "
        "A registration only records who asked for the number: it reserves nothing on your "
        "machine, so any user's program may listen here, and two programs with the same "
        "default clash.",
    ),
    _IanaRange(
        "dynamic",
        "Dynamic and/or Private Ports (ephemeral)",
        49152,
        65535,
        "This range is a commons that IANA never assigns to anyone. "
        "Operating systems hand ports from it (Linux from 32768-60999 by default) to outgoing "
        "connections as their source ports, and local tools and scientific instruments pick "
        "their defaults here, as the Bluesky Queue Server did with 60610. "
        "Nothing stops two programs from choosing the same port, so check who is listening "
        "before trusting it.",
    ),
)


@dataclass(frozen=True)
class RangeInfo:
    """Everything the port window and ``portwatch explain`` say about one port's range."""

    key: RangeKey
    title: str
    first: int
    last: int
    size: int
    explanation: str
    port: int
    protocol: str = "tcp"
    os_name: OSName = "other"
    # The OS's ephemeral range, None when it could not be read.
    os_ephemeral: PortSpan | None = None
    os_ephemeral_source: str = ""
    in_os_ephemeral: bool = False
    # Linux ip_local_reserved_ports, or a Windows exclusion an administrator added ("*").
    os_reserved: bool = False
    # A Windows exclusion made by a system service (Hyper-V, WinNAT): binding fails there.
    excluded_by: PortSpan | None = None
    # One line: the risk, then the commands that remove it. None when there is nothing to fix.
    warning: str | None = None
    # The same warning without its commands, and the commands alone, for layouts that show
    # commands on their own lines (and copy buttons).
    warning_summary: str | None = None
    fix_commands: tuple[str, ...] = ()

    def ephemeral_sentence(self, source: bool = False) -> str | None:
        """'This OS hands out ports 32768-60999 to outgoing connections: 60610 is inside that
        range.' None when the OS's range could not be read. The one wording for every view."""
        if self.os_ephemeral is None:
            return None
        first, last = self.os_ephemeral
        where = "inside" if self.in_os_ephemeral else "outside"
        origin = (
            f" (from {self.os_ephemeral_source})" if source and self.os_ephemeral_source else ""
        )
        sentence = (
            f"{_OS_TITLES[self.os_name]} hands out ports {first}-{last} to outgoing "
            f"connections{origin}: {self.port} is {where} that range."
        )
        if self.os_reserved:
            sentence += f" {self.port} is reserved, so the OS will not hand it out."
        return sentence


def _iana(port: int) -> _IanaRange:
    if not 0 <= port <= 65535:
        raise ValueError(f"not a port number: {port}")
    return next(r for r in _IANA_RANGES if r.first <= port <= r.last)


def iana_range(port: int) -> tuple[RangeKey, int, int]:
    """``("dynamic", 49152, 65535)`` for 60610. Raises ValueError outside 0-65535."""
    found = _iana(port)
    return (found.key, found.first, found.last)


def _spans_text(spans: list[PortSpan]) -> str:
    """Spans as Linux writes ip_local_reserved_ports: merged, sorted, "8080,60610-60620"."""
    merged: list[list[int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in merged)


def _linux_fix(port: int, eph: EphemeralInfo) -> tuple[str, tuple[str, ...]]:
    # The sysctl replaces the whole list, so the command must carry the ports reserved now.
    value = _spans_text([*eph.reserved, (port, port)])
    commands = (
        f"sudo sysctl -w net.ipv4.ip_local_reserved_ports={value}",
        f"echo 'net.ipv4.ip_local_reserved_ports = {value}' | sudo tee {SYSCTL_FILE}",
    )
    kept = f", keeping the ports reserved now ({_spans_text(list(eph.reserved))})"
    text = (
        f"Reserve it{kept if eph.reserved else ''}: {commands[0]} (until reboot); "
        f"to keep it after reboots: {commands[1]} "
        "(if another file in /etc/sysctl.d sets this list, merge the ports there instead)."
    )
    return text, commands


def _macos_fix(port: int, eph: EphemeralInfo) -> tuple[str, tuple[str, ...]]:
    # macOS has no per-port reservation: the only lever is the range itself. Cut it on the side
    # of the port that leaves the most ports to outgoing connections.
    if eph.first == eph.last:
        return "macOS cannot reserve a single port: pick a port outside this range.", ()
    if port - eph.first >= eph.last - port:
        setting = f"net.inet.ip.portrange.last={port - 1}"
    else:
        setting = f"net.inet.ip.portrange.first={port + 1}"
    command = f"sudo sysctl -w {setting}"
    text = (
        "macOS cannot reserve a single port: pick a port outside "
        f"{eph.first}-{eph.last}, or move the range's end past it: {command} "
        "(until restart)."
    )
    return text, (command,)


def _windows_reserve(port: int, protocol: str) -> str:
    return (
        f"netsh int ipv4 add excludedportrange protocol={protocol} startport={port} numberofports=1"
    )


def _windows_fix(port: int, protocol: str) -> tuple[str, tuple[str, ...]]:
    command = _windows_reserve(port, protocol)
    text = (
        f"Reserve it in an administrator prompt while nothing uses it: {command} "
        "(it stays after restarts)."
    )
    return text, (command,)


def _warning(
    port: int, protocol: str, os_name: OSName, eph: EphemeralInfo, excluded: PortSpan | None
) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(full one-line warning, the warning without commands, commands)."""
    if excluded is not None:
        first, last = excluded
        block = str(first) if first == last else f"{first}-{last}"
        summary = (
            f"Windows has excluded port{'' if first == last else 's'} {block} for a system "
            "service (Hyper-V, WSL or Docker's WinNAT): binding to "
            f"{port} fails with WinError 10013 (access forbidden) even though nothing shows "
            "as listening."
        )
        commands: tuple[str, ...] = (
            "net stop winnat",
            _windows_reserve(port, protocol),
            "net start winnat",
        )
        fix = (
            "Free it in an administrator prompt: "
            + ", then ".join(commands)
            + " (or pick a port outside the block)."
        )
        return f"{summary} {fix}", summary, commands
    if port not in eph or eph.reserved_span(port) is not None:
        return None, None, ()
    who = "an outgoing connection" if protocol == "tcp" else "a client socket"
    summary = (
        f"Port {port} lies in the range this machine hands out as source ports "
        f"({eph.first}-{eph.last}): {who} may take it, and your server then fails to start "
        'with "address already in use" although nothing is listening.'
    )
    if os_name == "linux":
        fix, commands = _linux_fix(port, eph)
    elif os_name == "macos":
        fix, commands = _macos_fix(port, eph)
    elif os_name == "windows":
        fix, commands = _windows_fix(port, protocol)
    else:
        return summary, summary, ()
    return f"{summary} {fix}", summary, commands


def explain_port(
    port: int, protocol: str = "tcp", *, ephemeral: EphemeralInfo | None, os_name: OSName
) -> RangeInfo:
    """Explain ``port``'s IANA range and where it stands in the OS's ephemeral range.

    ``ephemeral``: the range of the machine the port is on, None when it is not known.
    ``os_name`` picks the commands in the warning. Raises ValueError for a number outside
    0-65535.
    """
    found = _iana(port)
    info = RangeInfo(
        key=found.key,
        title=found.title,
        first=found.first,
        last=found.last,
        size=found.last - found.first + 1,
        explanation=found.explanation,
        port=port,
        protocol=protocol,
        os_name=os_name,
    )
    if ephemeral is None:
        return info
    excluded = ephemeral.excluded_span(port)
    warning, summary, commands = _warning(port, protocol, os_name, ephemeral, excluded)
    return replace(
        info,
        os_ephemeral=(ephemeral.first, ephemeral.last),
        os_ephemeral_source=ephemeral.source,
        in_os_ephemeral=port in ephemeral,
        os_reserved=ephemeral.reserved_span(port) is not None,
        excluded_by=excluded,
        warning=warning,
        warning_summary=summary,
        fix_commands=commands,
    )


def explain_on(host: HostFacts, port: int, protocol: str = "tcp") -> RangeInfo:
    """explain_port on the machine ``host`` describes; its range is read only now."""
    _iana(port)  # a bad number fails before the range is read (netsh on Windows: seconds)
    return explain_port(port, protocol, ephemeral=host.ephemeral(protocol), os_name=host.os_name)


_OS_TITLES: dict[OSName, str] = {
    "linux": "Linux",
    "macos": "macOS",
    "windows": "Windows",
    "other": "this OS",
}
_WIDTH = 88


def _fill(text: str, indent: str = "") -> str:
    return textwrap.fill(
        text,
        _WIDTH,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def explanation_text(info: RangeInfo) -> str:
    """Several lines of plain text for ``portwatch explain``; commands stand on their own lines
    so they can be copied whole."""
    lines = [
        f"Port {info.port}/{info.protocol}: {info.title}, "
        f"ports {info.first}-{info.last} ({info.size:,} ports).",
        _fill(info.explanation),
        "",
    ]
    os_title = _OS_TITLES[info.os_name]
    if info.os_ephemeral is None:
        lines.append(f"Could not read the range {os_title} hands out to outgoing connections.")
    else:
        lines.append(_fill(info.ephemeral_sentence(source=True) or ""))
    if info.warning_summary:
        lines += ["", _fill("Warning: " + info.warning_summary)]
        if info.fix_commands:
            lines.append(_fill(_fix_intro(info)))
            lines += [f"    {command}" for command in info.fix_commands]
            if info.os_name == "linux" and info.excluded_by is None:
                kept = info.fix_commands[0].rsplit("=", 1)[-1] != str(info.port)
                lines.append(
                    _fill(
                        "The first lasts until reboot; the second keeps it after reboots"
                        + (" (the list keeps the ports reserved now)" if kept else "")
                        + ". If another file in /etc/sysctl.d sets this list, merge the ports "
                        "there instead."
                    )
                )
    return "\n".join(lines)


def _fix_intro(info: RangeInfo) -> str:
    if info.excluded_by is not None:
        return "To fix it, run these in this order in an administrator prompt:"
    if info.os_name == "windows":
        return (
            "To fix it, run this in an administrator prompt while nothing uses the port "
            "(it stays after restarts):"
        )
    if info.os_name == "macos" and info.os_ephemeral is not None:
        first, last = info.os_ephemeral
        return (
            f"macOS cannot reserve a single port: pick a port outside {first}-{last}, or move "
            "the range's end past it (until restart) with:"
        )
    return "To fix it, run these:"
