"""Healthy, unhealthy, or not checked: the one rule the monitoring outputs (Prometheus metrics,
Nagios status) apply to a health check's result."""

from __future__ import annotations

from trayapp.core.probe import ProbeResult


def is_healthy(result: ProbeResult | None) -> bool | None:
    """True or False, or None when the port has no health check (not checked, a service that
    is not HTTP, or one not reachable on loopback): the probe's verdict, as the monitoring
    formats want it. An HTTP answer below 500 counts as healthy: a 404 or a login page still
    proves the server works; a 5xx says it does not."""
    if result is None or result.verdict == "unchecked":
        return None
    return result.verdict == "healthy"
