"""Why is this port busy, or why can't I bind it? Each finding names a cause and a fix.

Built from one inspection (a PortState scanned with connections) and the port's RangeInfo,
so it works the same for the CLI and the port window. The commands suit the OS the RangeInfo
was explained for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trayapp.core.commands import admin_hint, terminate_hint
from trayapp.core.host import OSName
from trayapp.core.model import Connection, PortState
from trayapp.core.ranges import RangeInfo

Cause = Literal[
    "process",
    "other-user",
    "docker-proxy",
    "source-port",
    "windows-excluded",
    "time-wait",
    "free",
]
SHOWN_CONNECTIONS = 5
# Programs that listen for others (socket activation): stopping them is never the fix.
SOCKET_ACTIVATORS = frozenset({"systemd", "launchd", "inetd", "xinetd"})


@dataclass(frozen=True)
class Finding:
    cause: Cause
    title: str  # one line
    detail: str  # why, and what to do
    commands: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "cause": self.cause,
            "title": self.title,
            "detail": self.detail,
            "commands": list(self.commands),
        }


def _connection_text(conn: Connection) -> str:
    remote = f"[{conn.remote_address}]" if ":" in conn.remote_address else conn.remote_address
    owner = f", pid {conn.pid}" if conn.pid else ""
    return f"{conn.status} to {remote}:{conn.remote_port}{owner}"


def _socket_activation(who: str, port: int, os_name: OSName) -> Finding:
    if os_name == "macos":
        commands: tuple[str, ...] = (
            f"sudo lsof -nP -iTCP:{port} -sTCP:LISTEN",
            "sudo launchctl list",
            "sudo launchctl bootout system/<label>",
        )
    else:
        commands = (
            f"systemctl list-sockets --all | grep ':{port}'",
            "sudo systemctl stop <unit>.socket",
        )
    return Finding(
        "process",
        f"Held by {who} on behalf of a service (socket activation)",
        "The service manager listens here and starts the service on the first connection. "
        "Stop or disable the socket unit, not the service manager.",
        commands,
    )


def diagnose(state: PortState, info: RangeInfo) -> list[Finding]:
    os_name = info.os_name
    port = state.port.number
    findings: list[Finding] = []
    for owner in state.owners:
        who = f"{owner.full_name or '?'} (pid {owner.pid}" + (
            f", user {owner.username})" if owner.username else ")"
        )
        if owner.name == "docker-proxy":
            findings.append(
                Finding(
                    "docker-proxy",
                    f"Published by a Docker container (docker-proxy, pid {owner.pid})",
                    "docker-proxy forwards a container's published port; stopping it breaks "
                    "the container's networking. Find and stop the container instead.",
                    (f"docker ps --filter publish={port}", "docker stop <container>"),
                )
            )
            continue
        if owner.pid == 1 or owner.name in SOCKET_ACTIVATORS:
            findings.append(_socket_activation(who, port, os_name))
            continue
        findings.append(
            Finding(
                "process",
                f"Held by {who}",
                "Stop this process (or change its port) to free the port.",
                (
                    terminate_hint(owner.pid, os_name),
                    terminate_hint(owner.pid, os_name, force=True),
                ),
            )
        )
    for who in state.hidden_owners:
        known = who != "another user"
        findings.append(
            Finding(
                "other-user",
                f"Held by a process of {who}",
                (
                    "The operating system shows the socket and its owner's user, but not the "
                    if known
                    else "The operating system shows that the port is in use, but not the "
                )
                + "process of another user unless you have administrator rights. "
                + admin_hint(os_name),
            )
        )
    connections = state.connections or ()
    active = [c for c in connections if c.status not in ("TIME_WAIT", "LISTEN", "NONE")]
    if active and not state.listening:
        shown = "; ".join(_connection_text(c) for c in active[:SHOWN_CONNECTIONS])
        more = (
            f" (and {len(active) - SHOWN_CONNECTIONS} more)"
            if len(active) > SHOWN_CONNECTIONS
            else ""
        )
        if info.os_ephemeral and info.in_os_ephemeral and not info.os_reserved:
            first, last = info.os_ephemeral
            detail = (
                f"Port {port} lies in this machine's range for outgoing connections "
                f"({first}-{last}) and a connection uses it as "
                f"its source port: {shown}{more}. A server can't bind it until that connection "
                "closes. Reserve the port so it is never handed out again."
            )
        else:
            detail = (
                f"{len(active)} connection(s) still use port {port}: {shown}{more}. Either a "
                "client bound to it, or a server that has stopped listening left connections "
                "it had accepted. A server that sets SO_REUSEADDR can bind the port anyway; "
                "one that doesn't must wait until they close."
            )
        findings.append(
            Finding(
                "source-port",
                (
                    f"Used as the source port of {len(active)} connection(s)"
                    if info.in_os_ephemeral
                    else f"Still used by {len(active)} connection(s)"
                ),
                detail,
                info.fix_commands if info.in_os_ephemeral and not info.os_reserved else (),
            )
        )
    if info.excluded_by is not None:
        findings.append(
            Finding(
                "windows-excluded",
                "Inside a Windows excluded port range",
                info.warning_summary or info.warning or "",
                info.fix_commands,
            )
        )
    waiting = [c for c in connections if c.status == "TIME_WAIT"]
    if waiting and not state.listening:
        only = "" if findings else "Only "
        findings.append(
            Finding(
                "time-wait",
                f"{only}{len(waiting)} TIME_WAIT leftover(s) from closed connections",
                "Nothing listens; recently closed connections linger for up to a minute or two. "
                "They stop a new server from binding only if it does not set SO_REUSEADDR; "
                "most servers set it (in Python: socketserver's allow_reuse_address = True, "
                "or sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1) before bind).",
            )
        )
    if not findings:
        findings.append(
            Finding(
                "free",
                "Free: nothing listens and no connection uses it",
                "A server can bind this port now."
                + (f" {info.warning_summary}" if info.warning_summary else ""),
                info.fix_commands,
            )
        )
    return findings
