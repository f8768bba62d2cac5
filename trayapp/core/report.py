"""What the core says about a port, as JSON-ready data and as plain text.

The command line prints these, the port window's "Copy details" copies the text, and the
tooltip/menu reuse the one-line summary, so every surface tells the same story.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from trayapp.core.diagnosis import Finding
from trayapp.core.events import LISTEN_KINDS, Event, iso_time
from trayapp.core.exposure import Exposure, exposure
from trayapp.core.model import Listener, Owner, PortState, who_text
from trayapp.core.probe import ProbeResult
from trayapp.core.ranges import RangeInfo
from trayapp.core.services import KnownService

FAMILY_TEXT = {"ipv4": "IPv4", "ipv6": "IPv6 only", "dual": "IPv6 + IPv4 (dual-stack)"}


def ago(seconds: float, now: float | None = None) -> str:
    """'5 min ago' style; honest about clock skew instead of printing negative ages."""
    delta = (time.time() if now is None else now) - seconds
    if delta < 0:
        return "in the future (clock changed?)"
    if delta < 60:
        return f"{int(delta)} s ago"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        hours, rest = divmod(int(delta), 3600)
        return f"{hours} h {rest // 60} min ago"
    return f"{int(delta // 86400)} days ago"


def local_time(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def hidden_hint(who: str) -> str:
    """`who` as PortState.hidden_owners says it: "user bob", "uid 1001", "another user"."""
    return f"in use by {who}; process hidden without administrator rights"


def owner_text(owner: Owner) -> str:
    parts = [f"pid {owner.pid}"]
    if owner.username:
        parts.append(f"user {owner.username}")
    return f"{owner.full_name or '?'} ({', '.join(parts)})"


def summary(state: PortState) -> str:
    """One line: 'listening, uvicorn (pid 4242, user alice)' / 'free'."""
    if not state.listening:
        return "free"
    owners = state.owners
    if owners:
        first = owner_text(owners[0])
        more = f" and {len(owners) - 1} more" if len(owners) > 1 else ""
        return f"listening, {first}{more}"
    return f"listening, {hidden_hint(' and '.join(state.hidden_owners))}"


def listener_entries(listener: Listener) -> list[dict[str, Any]]:
    """One JSON entry per (socket, owner): a shared socket lists every owner."""
    base = {
        "address": listener.address,
        "family": listener.family,
        "uid": listener.uid,
    }
    if not listener.owners:
        return [
            {
                **base,
                "exposure": exposure(listener).to_json(),
                "pid": None,
                "name": None,
                "exe": None,
                "cmdline": [],
                "username": listener.username,
                "started": None,
                "owner_visible": False,
            }
        ]
    return [
        {
            **base,
            "pid": owner.pid,
            "name": owner.full_name,
            "exe": owner.exe,
            "cmdline": list(owner.cmdline),
            "username": owner.username or listener.username,
            "started": iso_time(owner.create_time) if owner.create_time else None,
            "owner_visible": True,
            "exposure": exposure(listener, owner.full_name).to_json(),
        }
        for owner in listener.owners
    ]


def range_json(info: RangeInfo) -> dict[str, Any]:
    return {
        "name": info.key,
        "title": info.title,
        "first": info.first,
        "last": info.last,
        "explanation": info.explanation,
        "os_ephemeral": list(info.os_ephemeral) if info.os_ephemeral else None,
        "in_os_ephemeral": info.in_os_ephemeral,
        "warning": info.warning,
    }


@dataclass(frozen=True)
class PortReport:
    """Everything said about one port: its scan, range, known use, health and diagnosis."""

    state: PortState
    info: RangeInfo
    label: str = ""
    service: KnownService | None = None
    probe: ProbeResult | None = None
    findings: tuple[Finding, ...] = ()


def service_json(service: KnownService | None) -> dict[str, Any] | None:
    if service is None:
        return None
    return {
        "name": service.name,
        "description": service.description,
        "certain": service.certain,
        "url": service.url,
    }


def service_text(service: KnownService) -> str:
    if service.certain:
        return f"{service.name} (identified from the process)"
    if service.owner_differs:
        return f"usually {service.name}, but this process does not look like it"
    return f"{service.name} (the usual use of this port)"


def state_json(rep: PortReport) -> dict[str, Any]:
    state = rep.state
    data: dict[str, Any] = {
        "port": state.port.number,
        "protocol": state.port.protocol,
        "state": "listening" if state.listening else "free",
        "label": rep.label or None,
        "range": range_json(rep.info),
        "listeners": [e for listener in state.listeners for e in listener_entries(listener)],
        "known_service": service_json(rep.service),
        "probe": rep.probe.to_json() if rep.probe else None,
        "diagnosis": [finding.to_json() for finding in rep.findings],
    }
    if state.connections is not None:
        data["connections"] = _status_counts(state)
    return data


def _status_counts(state: PortState) -> dict[str, int]:
    counts: dict[str, int] = {}
    for conn in state.connections or ():
        counts[conn.status] = counts.get(conn.status, 0) + 1
    return counts


VERDICT_WORDS = {"healthy": "healthy", "unhealthy": "UNHEALTHY", "unchecked": "no health check"}


def health_sentence(probe: ProbeResult) -> str:
    """'healthy: RE Manager idle, ... (checked 10:42:07)', for windows and the CLI."""
    return f"{VERDICT_WORDS[probe.verdict]}: {probe.summary} (checked {local_time(probe.time)})"


def listener_lines(listener: Listener, now: float | None = None) -> list[str]:
    where = f"{_host(listener.address)}:{listener.port}"
    head = f"{where}  {listener.protocol.upper()} {FAMILY_TEXT.get(listener.family, '')}"
    if not listener.owners:
        return [
            f"{head}  {hidden_hint(who_text(listener.username, listener.uid))}",
            *exposure_lines(exposure(listener)),
        ]
    lines = []
    for index, owner in enumerate(listener.owners):
        lines.append(f"{head}  {owner_text(owner)}")
        if owner.create_time:
            stamp = local_time(owner.create_time)
            lines.append(f"    started {stamp} ({ago(owner.create_time, now)})")
        if owner.exe:
            lines.append(f"    exe: {owner.exe}")
        if owner.cmdline:
            lines.append(f"    cmd: {' '.join(owner.cmdline)}")
        if index == 0:
            lines.extend(exposure_lines(exposure(listener, owner.full_name)))
    return lines


def exposure_lines(seen: Exposure) -> list[str]:
    lines = [f"    reachable {seen.text}"]
    if seen.warning:
        lines.append(f"    WARNING: {seen.warning}")
        lines.append(f"    fix: {seen.fix}")
    return lines


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def state_text(rep: PortReport) -> str:
    state, info = rep.state, rep.info
    title = f"{state.port}" + (f"  {rep.label}" if rep.label else "")
    status = "listening" if state.listening else "free (nothing is listening)"
    lines = [f"{title}: {status}"]
    for listener in state.listeners:
        lines.extend("  " + line for line in listener_lines(listener))
    if rep.service:
        lines.append(f"  known use: {service_text(rep.service)}. {rep.service.description}")
    if rep.probe:
        lines.append(f"  health: {health_sentence(rep.probe)}")
        queue = rep.probe.queue
        if queue is not None:
            lines.append(
                f"  queue: {queue.line()}; RE state {queue.re_state or '-'}, "
                f"{queue.items_in_history if queue.items_in_history is not None else '?'} in "
                f"history, autostart {'on' if queue.queue_autostart_enabled else 'off'}"
            )
        if rep.probe.key_origin:
            lines.append(f"  API key from {rep.probe.key_origin}")
    counts = _status_counts(state)
    if counts:
        text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"  other sockets using this port: {text}")
    for finding in rep.findings:
        lines.append(f"  diagnosis: {finding.title}. {finding.detail}")
        lines.extend(f"    $ {command}" for command in finding.commands)
    lines.append(f"  range: {info.title}, {info.first}-{info.last}")
    sentence = info.ephemeral_sentence()
    if sentence:
        lines.append(f"  {sentence}")
    if info.warning and not any(f.commands == info.fix_commands for f in rep.findings):
        lines.append(f"  warning: {info.warning}")
    return "\n".join(lines)


def period_owner_text(pid: int | None, name: str | None, username: str | None) -> str:
    """' uvicorn (pid 42, user alice)', ' (user bob; process hidden ...)', or ''."""
    if pid is not None:
        return f" {name or '?'} (pid {pid}" + (f", user {username})" if username else ")")
    if username:
        return f" {hidden_hint(who_text(username, None))}"
    return ""


def event_text(event: Event) -> str:
    if event.kind not in LISTEN_KINDS:
        return f"{local_time(event.time)}  {event.port}  {event.kind}: {event.detail or event.code}"
    who = ""
    if event.pid is not None:
        who = f" {event.name or '?'} (pid {event.pid}" + (
            f", user {event.username})" if event.username else ")"
        )
    elif event.username:
        who = f" {hidden_hint(who_text(event.username, None))}"
    where = f" on {', '.join(event.addresses)}" if event.addresses else ""
    why = f": {event.detail}" if event.detail else ""  # a remote port: why it went down
    return f"{local_time(event.time)}  {event.port}  {event.kind}{who}{where}{why}"
