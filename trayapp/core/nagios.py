"""`portwatch check --nagios`: the Monitoring Plugins conventions (Nagios, Icinga, Naemon).

Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; a first line that starts with the state, then
`|` and the performance data (`'label'=value[UOM];warn;crit;min;max`, numbers in the C locale,
whatever the locale of the process); the details on the lines after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from trayapp.core.health_rule import is_healthy
from trayapp.core.model import Port, PortState, Snapshot
from trayapp.core.probe import ProbeResult
from trayapp.core.remote import RemoteCheck
from trayapp.core.remote_monitor import port_of

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
Expect = Literal["listening", "free"]
SHOWN = 3  # ports named on the first line; the rest are counted (the details list them all)


@dataclass(frozen=True)
class PluginResult:
    code: int
    output: str  # every line, ending in a line feed

    @property
    def state(self) -> str:
        return STATE_NAMES[self.code]


def clean(text: str) -> str:
    """Plugin output is read line by line and split at `|`: neither may come from a name."""
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.replace("|", "/").split())


def unknown(message: str) -> PluginResult:
    """Bad input or a failed scan: the state of the ports is not known."""
    return PluginResult(UNKNOWN, f"UNKNOWN - {clean(message)}\n")


def _owners(state: PortState) -> str:
    owners = state.owners
    if owners:
        first = f"{owners[0].full_name or '?'} (pid {owners[0].pid})"
        return first + (f" and {len(owners) - 1} more" if len(owners) > 1 else "")
    hidden = " and ".join(state.hidden_owners) or "another user"
    return f"{hidden} (process hidden)"


def _port_state(state: PortState, result: ProbeResult | None, expect: Expect) -> tuple[int, str]:
    port = state.port
    if expect == "free":
        if state.listening:
            return CRITICAL, f"{port} in use: {_owners(state)} (must stay free)"
        return OK, f"{port} free"
    if not state.listening:
        return CRITICAL, f"{port} free"
    text = f"{port} listening: {_owners(state)}"
    if is_healthy(result) is False and result is not None:
        return WARNING, f"{text}, unhealthy: {result.summary}"
    return OK, text


def _perfdata(state: PortState, result: ProbeResult | None, expect: Expect) -> list[str]:
    name = f"{state.port.number}_{state.port.protocol}"
    critical = "1:" if expect == "listening" else "0"  # a Nagios range: outside it is critical
    data = [f"'listening_{name}'={1 if state.listening else 0};;{critical};0;1"]
    verdict = is_healthy(result) if state.listening and expect == "listening" else None
    if verdict is not None:
        data.append(f"'healthy_{name}'={1 if verdict else 0};1:;;0;1")
    return data


def _remote_state(check: RemoteCheck, expect: Expect) -> tuple[int, str]:
    """An entry on another machine, by the same rule as a local port: down is CRITICAL, a
    failing health check WARNING. Expected free, only a refusal proves that nothing listens:
    a host that does not answer (or resolve) leaves it unknown."""
    title = check.target.title
    if expect == "free":
        if check.up:
            return CRITICAL, f"{title} in use (must stay free)"
        if check.reach.code == "refused":
            return OK, f"{title} free"
        return UNKNOWN, f"{title}: cannot tell whether it is free: {check.reach.text}"
    if not check.up:
        return CRITICAL, f"{title} down: {check.reach.text}"
    text = f"{title} {check.reach.text}"
    result = check.result
    if is_healthy(result) is False and result is not None:
        return WARNING, f"{text}, unhealthy: {result.summary}"
    return OK, text


def _remote_perfdata(check: RemoteCheck, expect: Expect) -> list[str]:
    # A quoted label may hold anything but its quote and '=': the entry's title, cleaned.
    name = clean(check.target.title).replace("'", "_").replace("=", "_")
    critical = "1:" if expect == "listening" else "0"
    data = [f"'listening_{name}'={1 if check.up else 0};;{critical};0;1"]
    verdict = is_healthy(check.result) if check.up and expect == "listening" else None
    if verdict is not None:
        data.append(f"'healthy_{name}'={1 if verdict else 0};1:;;0;1")
    data.append(f"'time_{name}'={check.seconds:.6f}s;;;0;")
    return data


def evaluate(
    snapshot: Snapshot,
    *,
    expect: Expect = "listening",
    probes: Mapping[Port, ProbeResult] | None = None,
    labels: Mapping[Port, str] | None = None,
    remote: Sequence[RemoteCheck] = (),
) -> PluginResult:
    """`remote`: the checks of entries on other machines (labels keyed by their Port too)."""
    probes = probes or {}
    labels = labels or {}
    verdicts: list[tuple[int, str]] = []
    details: list[str] = []
    perfdata: list[str] = []

    def add(code: int, text: str, label: str, where: str, result: ProbeResult | None) -> None:
        verdicts.append((code, clean(text)))
        detail = f"[{STATE_NAMES[code]}] {text}"
        if label:
            detail += f" ({label})"
        if where:
            detail += f"; on {where}"
        if result is not None:
            detail += f"; health: {result.summary}"
        details.append(clean(detail))

    for state in snapshot.states:
        result = probes.get(state.port) if state.listening else None
        code, text = _port_state(state, result, expect)
        where = ", ".join(dict.fromkeys(listener.address for listener in state.listeners))
        add(code, text, labels.get(state.port, ""), where, result)
        perfdata.extend(_perfdata(state, result, expect))
    for check in remote:
        code, text = _remote_state(check, expect)
        result = check.result if check.up else None
        add(code, text, labels.get(port_of(check.target), ""), "", result)
        perfdata.extend(_remote_perfdata(check, expect))
    if snapshot.duration is not None:
        perfdata.append(f"'scan_time'={snapshot.duration:.6f}s;;;0;")
    if not verdicts:
        return unknown("no ports to check")
    worst = max(code for code, _text in verdicts)
    ordered = sorted(verdicts, key=lambda item: -item[0])  # stable: worst first, else as given
    bad = [text for code, text in ordered if code != OK]
    good = len(verdicts) - len(bad)
    if bad:
        parts = bad[:SHOWN]
        if len(bad) > SHOWN:
            parts.append(f"{len(bad) - SHOWN} more not OK")
        if good:
            parts.append(f"{good} OK")
    else:
        parts = [text for _code, text in ordered[:SHOWN]]
        if good > SHOWN:
            parts.append(f"{good - SHOWN} more OK")
    lines = [f"{STATE_NAMES[worst]} - {'; '.join(parts)} | {' '.join(perfdata)}"]
    lines.extend(details)
    lines.extend(f"note: {clean(problem)}" for problem in snapshot.problems)
    return PluginResult(worst, "".join(line + "\n" for line in lines))
