"""What Port Watch sees, in Prometheus' text exposition format (version 0.0.4).

Read by node_exporter's (and windows_exporter's) textfile collector, or printed for a person.
No sample carries a timestamp (the textfile collector rejects them) and no API key is ever a
label. Families without samples are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from trayapp.core.events import EVENT_KINDS, Event, EventKind
from trayapp.core.health_rule import is_healthy
from trayapp.core.model import Port, PortState, Snapshot
from trayapp.core.probe import ProbeResult
from trayapp.core.remote import RemoteCheck
from trayapp.core.remote_monitor import port_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# RE Manager's states (bluesky-queueserver's MState); one it reports that is not here is added.
MANAGER_STATES = (
    "initializing",
    "idle",
    "paused",
    "creating_environment",
    "starting_queue",
    "executing_queue",
    "executing_task",
    "closing_environment",
    "destroying_environment",
)


def escape_label(value: str) -> str:
    """A label value as the format requires: backslash, double quote and line feed escaped;
    text that is not valid Unicode (a process name read as undecodable bytes) made valid."""
    text = value.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    """Go's ParseFloat reads this back exactly; never locale-dependent."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass
class Family:
    name: str
    kind: str  # "gauge" or "counter"
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float) -> None:
        self.samples.append((labels, value))

    def lines(self) -> list[str]:
        if not self.samples:
            return []
        out = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            text = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels.items())
            out.append(
                f"{self.name}{{{text}}} {number(value)}" if text else f"{self.name} {number(value)}"
            )
        return out


class ChangeCounter:
    """Changes seen since this process started watching, per port and kind. Every watched port
    starts at 0 for every kind, so a counter exists before its first change (rate() needs that)."""

    def __init__(self, ports: Iterable[Port] = ()) -> None:
        self._counts: dict[tuple[Port, EventKind], int] = {}
        self.watch(ports)

    def watch(self, ports: Iterable[Port]) -> None:
        for port in ports:
            for kind in EVENT_KINDS:
                self._counts.setdefault((port, kind), 0)

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.kind == "watch-began" or event.kind == "watch-ended":
                continue  # no change of the port
            key = (event.port, event.kind)
            self._counts[key] = self._counts.get(key, 0) + max(1, event.count)

    def counts(self, ports: Iterable[Port]) -> list[tuple[Port, EventKind, int]]:
        wanted = set(ports)
        return [
            (port, kind, count)
            for (port, kind), count in sorted(self._counts.items())
            if port in wanted
        ]


def _port_labels(port: Port) -> dict[str, str]:
    """`host`: "" on this machine (Prometheus reads an empty label as none, so local series
    stay what they were), else the entry as typed and as the history names it
    ("xf11id-srv1:60610", "https://xf11id-srv1/qserver"), unique per entry."""
    return {"port": str(port.number), "protocol": port.protocol, "host": port.host}


@dataclass(frozen=True)
class _Row:
    port: Port
    listening: bool
    owners: list[dict[str, str]]
    result: ProbeResult | None  # the health check's, while listening


def _rows(
    snapshot: Snapshot, probes: Mapping[Port, ProbeResult], remote: Sequence[RemoteCheck]
) -> list[_Row]:
    rows = [
        _Row(s.port, s.listening, _owner_rows(s), probes.get(s.port) if s.listening else None)
        for s in snapshot.states
    ]
    # Another machine's owner is not known here: no owner rows for its entries.
    rows.extend(_Row(port_of(c.target), c.up, [], c.result if c.up else None) for c in remote)
    return rows


def _owner_rows(state: PortState) -> list[dict[str, str]]:
    rows = [
        {"pid": str(owner.pid), "name": owner.full_name or "", "user": owner.username or ""}
        for owner in state.owners
    ]
    hidden = {
        listener.username or ("" if listener.uid is None else str(listener.uid))
        for listener in state.listeners
        if not listener.owner_visible
    }
    rows.extend({"pid": "", "name": "", "user": user} for user in sorted(hidden))
    return rows


def _number_field(data: Mapping[str, object], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return None


def render(
    snapshot: Snapshot,
    *,
    labels: Mapping[Port, str] | None = None,
    probes: Mapping[Port, ProbeResult] | None = None,
    changes: ChangeCounter | None = None,
    remote: Sequence[RemoteCheck] = (),
) -> str:
    """The whole exposition, ending in a line feed (windows_exporter insists on it).
    `remote`: the last checks of entries on other machines (labels keyed by their Port)."""
    labels = labels or {}
    probes = probes or {}
    rows = _rows(snapshot, probes, remote)
    ports = [row.port for row in rows]
    listening = Family(
        "portwatch_port_listening",
        "gauge",
        "1 if a service listens on the port (TCP LISTEN or bound UDP), 0 if it is free.",
    )
    healthy = Family(
        "portwatch_port_healthy",
        "gauge",
        "1 if the service's health check passed, 0 if not; only ports with a health check.",
    )
    owner = Family(
        "portwatch_port_owner_info",
        "gauge",
        "The processes holding the port (pid and name empty when hidden from this user).",
    )
    queue = Family("portwatch_bluesky_items_in_queue", "gauge", "Plans in the RE Manager's queue.")
    history = Family(
        "portwatch_bluesky_items_in_history", "gauge", "Plans in the RE Manager's history."
    )
    environment = Family(
        "portwatch_bluesky_worker_environment_exists",
        "gauge",
        "1 if the RE Manager's worker environment is open.",
    )
    manager = Family(
        "portwatch_bluesky_manager_state",
        "gauge",
        "The RE Manager's state: 1 for the current state, 0 for the others.",
    )
    for row in rows:
        base = _port_labels(row.port)
        listening.add({**base, "label": labels.get(row.port, "")}, 1 if row.listening else 0)
        for who in row.owners:
            owner.add({**base, **who}, 1)
        result = row.result
        verdict = is_healthy(result)
        if verdict is not None:
            healthy.add(base, 1 if verdict else 0)
        if result is None or result.queue is None:
            continue
        figures = result.queue.to_json()
        for family, key in (
            (queue, "items_in_queue"),
            (history, "items_in_history"),
            (environment, "worker_environment_exists"),
        ):
            value = _number_field(figures, key)
            if value is not None:
                family.add(base, value)
        current = figures.get("manager_state")
        if isinstance(current, str):
            states = MANAGER_STATES if current in MANAGER_STATES else (*MANAGER_STATES, current)
            for name in states:
                manager.add({**base, "state": name}, 1 if name == current else 0)
    counter = Family(
        "portwatch_port_changes_total",
        "counter",
        "Changes seen since this watch started (kind: started, stopped, owner-changed).",
    )
    for port, kind, count in changes.counts(ports) if changes else []:
        counter.add({**_port_labels(port), "kind": kind}, count)
    scanned = Family(
        "portwatch_last_scan_timestamp_seconds",
        "gauge",
        "When the ports were last scanned successfully, in seconds since the epoch.",
    )
    scanned.add({}, snapshot.time)
    duration = Family("portwatch_scan_duration_seconds", "gauge", "How long the last scan took.")
    if snapshot.duration is not None:
        duration.add({}, snapshot.duration)
    families = (
        listening,
        healthy,
        owner,
        counter,
        scanned,
        duration,
        queue,
        history,
        environment,
        manager,
    )
    return "".join(line + "\n" for family in families for line in family.lines())
