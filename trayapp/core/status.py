"""What the user is told about a watched port, decided once: its status words (menu, tooltip,
overview), the tray icon's overall state, the text of a notification and whether one is sent.
The tray, the windows and the command line present these; none decides them on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from trayapp.core import config as cfg
from trayapp.core import report
from trayapp.core.events import Event
from trayapp.core.host import OSName
from trayapp.core.model import Port, PortState, Snapshot
from trayapp.core.probe import ProbeResult
from trayapp.core.remote import RemoteCheck
from trayapp.core.remote_monitor import port_of
from trayapp.core.services import label_for

# all: every watched port listens (and is healthy where checked); some / none: some or none
# listen; unhealthy: a port listens but its service fails its health check; trouble: the scan
# itself failed, so nothing can be said.
IconState = Literal["all", "some", "none", "unhealthy", "trouble"]
ICON_MEANING: dict[IconState, str] = {
    "all": "every watched port is listening (and healthy, where it has a health check)",
    "some": "some watched ports are listening, others are not",
    "none": "no watched port is listening",
    "unhealthy": "a port is listening, but its service fails its health check",
    "trouble": "the ports cannot be scanned right now",
}


def port_label(config: cfg.Config, port: Port, os_name: OSName) -> str:
    """The label the user gave the port (or the entry for another machine), else the usual
    name of what listens there (on ``os_name``: some defaults belong to one OS)."""
    label = ""
    if port.host:
        remote = next((e for e in config.remotes if port_of(e.target) == port), None)
        label = remote.label if remote is not None else ""
    else:
        entry = config.watched(port)
        label = entry.label if entry else ""
    return label or label_for(port.number, port.protocol, os_name=os_name) or ""


def port_title(config: cfg.Config, port: Port, os_name: OSName) -> str:
    """'60610 Bluesky Queue Server (HTTP API)', or for another machine 'srv1:60610 ...':
    menus, notifications, windows."""
    label = port_label(config, port, os_name)
    where = port.host or str(port.number)
    return f"{where} {label}" if label else where


def overall_state(
    snapshot: Snapshot | None,
    failed: bool,
    health: Mapping[Port, ProbeResult] | None = None,
    remote: Sequence[RemoteCheck] = (),
) -> IconState:
    """The worst port decides: a failed scan, then a sick service, then what listens. Entries
    on other machines count like local ports (`remote`: their last checks)."""
    if failed or snapshot is None:
        return "trouble"
    health = health or {}
    for state in snapshot.states:
        result = health.get(state.port)
        if state.listening and result is not None and result.verdict == "unhealthy":
            return "unhealthy"
    if any(check.verdict == "unhealthy" for check in remote):
        return "unhealthy"
    listening = [state.listening for state in snapshot.states] + [c.up for c in remote]
    if listening and all(listening):
        return "all"
    return "some" if any(listening) else "none"


def port_status(
    state: PortState | None,
    probe: ProbeResult | None,
    *,
    paused: bool = False,
    failed: bool = False,
    long: bool = False,
) -> str:
    """'listening, uvicorn (pid 42, user alice) [RE Manager idle]', 'free', 'paused', ...
    `long` gives the health in a sentence (tooltips), else in a few words (menus)."""
    if paused:
        return "paused"
    if state is None:
        return "unknown (cannot scan)" if failed else "checking..."
    text = report.summary(state)
    if probe is not None and state.listening:
        text += f" ({probe.summary})" if long else f" [{probe.short}]"
    return text


def remote_status(
    check: RemoteCheck | None, *, paused: bool = False, long: bool = False, health: bool = True
) -> str:
    """A remote entry's words: 'listening on 10.0.0.5 [RE Manager idle]', or why it is down.
    `health=False` leaves the health out (the overview has a column for it)."""
    if paused:
        return "paused"
    if check is None:
        return "checking..."
    if not check.up:
        return check.reach.text
    text = f"listening on {check.reach.address}" if check.reach.address else "listening"
    probe = check.result
    if health and probe is not None and probe.verdict != "unchecked":
        text += f" ({probe.summary})" if long else f" [{probe.short}]"
    return text


def remote_health_words(check: RemoteCheck | None) -> str:
    """The overview's health column for a remote entry, as health_words for a local port."""
    if check is None or not check.up:
        return ""
    probe = check.result
    if probe is None or probe.verdict == "unchecked":
        return "no health check"
    return probe.short


def health_words(probe: ProbeResult | None, state: PortState | None) -> str:
    """The health column of the overview: a few words, never blank for a listening port."""
    if state is None or not state.listening:
        return ""
    if probe is None:
        return "checking..." if state.port.protocol == "tcp" else "no health check"
    return probe.short


def who(event: Event) -> str:
    if event.pid is not None:
        return f"{event.name or '?'} (pid {event.pid}" + (
            f", user {event.username})" if event.username else ")"
        )
    if event.username:
        return f"a process of user {event.username} (hidden without administrator rights)"
    return "a hidden process"


def notification_text(event: Event, title: str) -> tuple[str, str]:
    """(title, body) for one change, e.g. '60610 Bluesky Queue Server (HTTP API)' /
    'now listening: uvicorn (pid 4242, user alice)'."""
    if event.kind in ("unhealthy", "healthy", "service"):
        body = event.detail or event.code or event.kind
    elif event.port.host:  # another machine: no process to name, the address and why
        where = f" on {', '.join(event.addresses)}" if event.addresses else ""
        body = {
            "started": f"now listening{where}",
            "stopped": f"down: {event.detail or 'no longer answers'}",
        }.get(event.kind, event.kind)
    else:
        body = {
            "started": f"now listening: {who(event)}",
            "stopped": f"stopped: {who(event)} no longer listens",
            "owner-changed": f"new owner: {who(event)}",
        }[event.kind]
    if event.count > 1:
        body += f" ({event.count} changes in the last few seconds)"
    return title, body


def wants_notification(config: cfg.Config, event: Event) -> bool:
    """Settings decide: notifications on, the port not muted, and its start/stop choices.
    Ports given on the command line (not in Settings) notify on every change."""
    if not config.notifications:
        return False
    if event.port.host:
        return not any(r.muted and r.target.title == event.port.host for r in config.remotes)
    entry = config.watched(event.port)
    if entry is None:
        return True
    if entry.muted:
        return False
    if event.kind == "started":
        return entry.notify_start
    if event.kind == "stopped":
        return entry.notify_stop
    if event.kind == "owner-changed":
        return entry.notify_start or entry.notify_stop
    return True  # health and service news: only mute silences them


def health_notification(
    port: Port, result: ProbeResult, news: str | None, notices: Sequence[str]
) -> Event | None:
    """One notification for one check: the health change and the service's news, together."""
    lines = list(notices)
    if news == "unhealthy":
        lines.insert(0, f"unhealthy: {result.summary}")
    elif news == "healthy":
        lines.insert(0, f"healthy again: {result.summary}")
    if not lines:
        return None
    kind: Literal["unhealthy", "healthy", "service"] = (
        "unhealthy" if news == "unhealthy" else "service"
    )
    return Event(
        time=result.time, port=port, kind=kind, code=result.health, detail="\n".join(lines)
    )
