"""One place that assembles everything said about a port (used by the CLI and the GUI)."""

from __future__ import annotations

from trayapp.core.apikey import KeyChoice, choose_key
from trayapp.core.diagnosis import diagnose
from trayapp.core.host import HostFacts
from trayapp.core.model import PortState
from trayapp.core.probe import ProbeResult
from trayapp.core.ranges import explain_on
from trayapp.core.report import PortReport
from trayapp.core.service_check import ServiceMemory, run_check
from trayapp.core.services import identify


def make_report(
    state: PortState,
    host: HostFacts,
    *,
    label: str = "",
    api_key: str | KeyChoice | None = None,
    probe: bool = True,
    probe_result: ProbeResult | None = None,
) -> PortReport:
    """``host``: the machine the port is on (platforms.host_facts() for this one). The probe
    touches the network (loopback, a few seconds at most): pass probe=False to skip it. A key
    given as text is the Settings key; the Bluesky environment variables apply when there is
    none."""
    port = state.port
    info = explain_on(host, port.number, port.protocol)
    service = identify(port.number, port.protocol, state.evidence, os_name=host.os_name)
    if probe_result is None and probe and state.listening and port.protocol == "tcp":
        key = api_key if isinstance(api_key, KeyChoice) else choose_key(api_key)
        probe_result = run_check(state, ServiceMemory(), key).result
    findings = tuple(diagnose(state, info)) if state.connections is not None else ()
    return PortReport(state, info, label, service, probe_result, findings)
