"""`portwatch prometheus-config`: blackbox_exporter modules and Prometheus scrape jobs, so a
lab's central Prometheus probes the same ports from outside.

Written by hand as YAML (every string as a JSON string, which YAML reads as it is). The Bluesky
API key is referred to by a file on the Prometheus server (`credentials_file`), never written
into the output.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from trayapp.core.model import Port
from trayapp.core.probe import BLUESKY_PORTS

TCP_MODULE = "portwatch_tcp"
BLUESKY_MODULE = "portwatch_bluesky"
BLUESKY_PATH = "/api/status"
DEFAULT_EXPORTER = "127.0.0.1:9115"
BLUESKY_BODY = '"manager_state"'  # what /api/status says when RE Manager answered
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class ConfigInputError(ValueError):
    """An option the configuration cannot be built from; the message says what is allowed."""


@dataclass(frozen=True)
class Target:
    port: Port
    label: str = ""
    bluesky: bool = False


def is_bluesky(port: Port, label: str) -> bool:
    """A Bluesky HTTP server by its port or by what the user called it (no scan: the
    configuration is for another machine)."""
    return port.protocol == "tcp" and (port.number in BLUESKY_PORTS or "bluesky" in label.lower())


def q(text: str) -> str:
    return json.dumps(text)


def host_text(host: str) -> str:
    """`host` as it goes before `:port` in a target; ConfigInputError if it is no host name or
    IP address."""
    try:
        address = ipaddress.ip_address(host.strip("[]") if host.startswith("[") else host)
    except ValueError:
        if _HOSTNAME.match(host):
            return host
        raise ConfigInputError(
            f"'{host}' is not a host name or IP address (letters, digits, '-' and '.')"
        ) from None
    return f"[{address}]" if address.version == 6 else str(address)


def exporter_text(address: str) -> str:
    """HOST:PORT of the blackbox exporter, as Prometheus will contact it."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ConfigInputError(
            f"'{address}' is not HOST:PORT (e.g. {DEFAULT_EXPORTER}, where blackbox_exporter "
            "listens as seen from Prometheus)"
        )
    return f"{host_text(host)}:{int(port)}"


def key_file_text(path: str) -> str:
    if not path.startswith("/") or not path.isprintable():
        raise ConfigInputError(
            f"'{path}' is not an absolute path: give the key file's path on the Prometheus server"
        )
    return path


def blackbox_modules(targets: Sequence[Target], api_key_file: str | None) -> str:
    lines = [
        "# blackbox_exporter modules for Port Watch (portwatch prometheus-config --only blackbox):",
        "# put them into blackbox.yml on the server that runs blackbox_exporter.",
        "modules:",
        f"  {TCP_MODULE}:",
        "    prober: tcp",
        "    timeout: 5s",
    ]
    if any(target.bluesky for target in targets):
        lines += [
            f"  {BLUESKY_MODULE}:",
            "    prober: http",
            "    timeout: 5s",
            "    http:",
            "      method: GET",
            "      valid_status_codes: [200]",
            "      fail_if_body_not_matches_regexp:",
            f"        - {q(BLUESKY_BODY)}",
        ]
        if api_key_file:
            lines += [
                "      # Sends 'Authorization: ApiKey <the file's content>'; the key stays in that",
                "      # file (readable by the exporter's user only), never in this configuration.",
                "      authorization:",
                "        type: ApiKey",
                f"        credentials_file: {q(api_key_file)}",
            ]
        else:
            lines.append(
                "      # The server needs an API key? Generate this again with --api-key-file PATH."
            )
    return "\n".join(lines) + "\n"


def _job(
    name: str, module: str, exporter: str, groups: list[tuple[list[str], dict[str, str]]]
) -> list[str]:
    lines = [
        f"  - job_name: {q(name)}",
        "    metrics_path: /probe",
        "    params:",
        f"      module: [{q(module)}]",
        "    static_configs:",
    ]
    for addresses, labels in groups:
        lines.append("      - targets:")
        lines.extend(f"          - {q(address)}" for address in addresses)
        if labels:
            lines.append("        labels:")
            lines.extend(f"          {key}: {q(value)}" for key, value in labels.items())
    lines += [
        "    relabel_configs:",
        "      - source_labels: [__address__]",
        "        target_label: __param_target",
        "      - source_labels: [__param_target]",
        "        target_label: instance",
        "      - target_label: __address__",
        f"        replacement: {q(exporter)}",
    ]
    return lines


def scrape_jobs(targets: Sequence[Target], hosts: Sequence[str], exporter: str) -> str:
    lines = [
        "# Prometheus scrape jobs for Port Watch (portwatch prometheus-config --only scrape):",
        "# add them under scrape_configs: in prometheus.yml. Each probes every host through",
        f"# blackbox_exporter at {exporter}; probe_success is 1 while the port answers.",
        "scrape_configs:",
    ]
    tcp = [t for t in targets if t.port.protocol == "tcp"]
    skipped = [t for t in targets if t.port.protocol != "tcp"]
    groups = [([f"{host}:{t.port.number}" for host in hosts], _labels(t)) for t in tcp]
    if groups:
        lines += _job("portwatch_tcp", TCP_MODULE, exporter, groups)
    bluesky = [
        ([f"http://{host}:{t.port.number}{BLUESKY_PATH}" for host in hosts], _labels(t))
        for t in tcp
        if t.bluesky
    ]
    if bluesky:
        lines += _job("portwatch_bluesky", BLUESKY_MODULE, exporter, bluesky)
    for target in skipped:
        lines.append(
            f"# {target.port}: blackbox_exporter cannot probe a UDP port in general; the "
            "node_exporter textfile recipe reports it."
        )
    if not groups:
        lines.append("  []  # no TCP ports to probe")
    return "\n".join(lines) + "\n"


def _labels(target: Target) -> dict[str, str]:
    labels = {"port": str(target.port.number)}
    if target.label:
        labels["portwatch_label"] = target.label
    return labels
