"""One place that assembles everything said about a port (used by the CLI and the GUI)."""

from __future__ import annotations

from trayapp.core.diagnosis import diagnose
from trayapp.core.model import PortState
from trayapp.core.probe import ProbeResult, probe_state
from trayapp.core.ranges import explain_port
from trayapp.core.report import PortReport
from trayapp.core.services import identify


def make_report(
    state: PortState,
    *,
    label: str = "",
    api_key: str | None = None,
    probe: bool = True,
    probe_result: ProbeResult | None = None,
) -> PortReport:
    """The probe touches the network (loopback, 1 s at most): pass probe=False to skip it."""
    port = state.port
    info = explain_port(port.number, port.protocol)
    service = identify(port.number, port.protocol, state.evidence)
    if probe_result is None and probe and state.listening and port.protocol == "tcp":
        probe_result = probe_state(state, api_key)
    findings = tuple(diagnose(state, info)) if state.connections is not None else ()
    return PortReport(state, info, label, service, probe_result, findings)
