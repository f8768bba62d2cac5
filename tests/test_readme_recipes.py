"""README "Monitoring many machines", followed as written: each snippet is taken from README.md
and run by the real tool it is for (systemd-analyze, node_exporter, promtool, Icinga 2,
blackbox_exporter). Only paths change: the installed command becomes this checkout's, and
system folders become temporary ones; each substitution is listed where it is made."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.monitoring_support import LOOPBACK, http_get, node_exporter, value, wait_for
from tests.support import free_port, require_tools

README = Path(__file__).resolve().parent.parent / "README.md"
INSTALLED = "/usr/local/bin/portwatch"
PORTWATCH = str(Path(sys.executable).parent / "portwatch")  # pip install -e put it there


def section() -> str:
    text = README.read_text()
    start = text.index("## Monitoring many machines")
    return text[start : text.index("\n## ", start + 1)]


def blocks(kind: str) -> list[str]:
    """The fenced code blocks whose info string is `kind` ("" for none), in order."""
    found: list[str] = []
    info: str | None = None
    lines: list[str] = []
    for line in section().splitlines():
        if info is None and line.startswith("```"):
            info, lines = line[3:].strip(), []
        elif info is not None and line == "```":
            if info == kind:
                found.append("".join(text + "\n" for text in lines))
            info = None
        elif info is not None:
            lines.append(line)
    return found


def test_the_snippets_are_there() -> None:
    assert len(blocks("ini")) == 2 and len(blocks("yaml")) == 1 and len(blocks("sh")) == 1
    [icinga] = [block for block in blocks("") if "object CheckCommand" in block]
    assert "apply Service" in icinga


def test_systemd_units_verify_and_their_command_feeds_node_exporter(tmp_path: Path) -> None:
    require_tools("systemd-analyze")
    units = tmp_path / "units"
    units.mkdir()
    folder = tmp_path / "node-exporter"  # for /var/lib/prometheus/node-exporter
    folder.mkdir()
    exec_start = ""
    for block in blocks("ini"):
        name = block.splitlines()[0].removeprefix("# /etc/systemd/system/")
        text = block.replace(INSTALLED, PORTWATCH)
        (units / name).write_text(text)
        exec_start = next(
            (line.removeprefix("ExecStart=") for line in text.splitlines() if "ExecStart=" in line),
            exec_start,
        )
    names = sorted(path.name for path in units.iterdir())
    assert names == ["portwatch-metrics.service", "portwatch-metrics.timer"]
    verified = subprocess.run(
        ["systemd-analyze", "verify", *names],
        cwd=units,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", ""), verified
    # What the timer starts, run once (the scan of 60610: listening or not, it is reported).
    argv = shlex.split(exec_start.replace("/var/lib/prometheus/node-exporter", str(folder)))
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    with node_exporter(folder) as port:
        _status, text = http_get(f"http://{LOOPBACK}:{port}/metrics")
    assert value(text, "node_textfile_scrape_error") == 0
    assert value(text, "portwatch_port_listening", port="60610", protocol="tcp") in (0, 1)


def test_alerting_rules_pass_promtool(tmp_path: Path) -> None:
    require_tools("promtool")
    [rules] = blocks("yaml")
    path = tmp_path / "portwatch.rules.yml"
    path.write_text(rules)
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout


ICINGA_DIRS = ("data", "log", "cache", "spool", "spool/tmp", "run")


def icinga_defines(root: Path) -> list[str]:
    """Icinga's own folders moved under `root`, as root (what the CI and this machine run as)."""
    folders = {
        "DataDir": "data",
        "LogDir": "log",
        "CacheDir": "cache",
        "SpoolDir": "spool",
        "InitRunDir": "run",
    }
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    return [f"-D{key}={root / sub}" for key, sub in folders.items()] + [
        f"-DRunAsUser={user}",
        f"-DRunAsGroup={user}",
    ]


def icinga_snippet() -> tuple[str, str]:
    """The README's CheckCommand, and its apply rule."""
    [block] = [block for block in blocks("") if "object CheckCommand" in block]
    command, _sep, rule = block.partition("apply Service")
    return command.replace(INSTALLED, PORTWATCH), "apply Service" + rule


def test_icinga_accepts_the_check_command_and_the_apply_rule(tmp_path: Path) -> None:
    """The apply rule runs the check on the agent (command_endpoint): valid in a master/agent
    setup, which needs no second machine to be checked."""
    require_tools("icinga2")
    command, rule = icinga_snippet()
    for sub in ICINGA_DIRS:
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    config = tmp_path / "icinga2.conf"
    config.write_text(
        'const NodeName = "master.lab"\nconst ZoneName = "master"\ninclude <itl>\n'
        'object Endpoint "master.lab" { }\nobject Zone "master" { endpoints = [ "master.lab" ] }\n'
        'object Endpoint "beamline-1" { }\n'
        'object Zone "beamline-1" { endpoints = [ "beamline-1" ]; parent = "master" }\n'
        'object Host "beamline-1" {\n  check_command = "dummy"\n  vars.bluesky = true\n'
        '  zone = "master"\n}\n' + command + rule
    )
    checked = subprocess.run(
        ["icinga2", "daemon", "-C", "-c", str(config), *icinga_defines(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr
    assert "Instantiated 1 Service" in checked.stdout


@contextmanager
def icinga(config: Path, root: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The Icinga 2 daemon in the foreground on `config`; stopped by its pid."""
    daemon = subprocess.Popen(
        ["icinga2", "daemon", "-c", str(config), *icinga_defines(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield daemon
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def test_icinga_runs_the_check_and_reads_its_states_and_perfdata(
    tmp_path: Path, portwatch_home: Path
) -> None:
    require_tools("icinga2")
    command, _rule = icinga_snippet()
    for sub in ICINGA_DIRS:
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    spool = tmp_path / "spool"
    free = free_port()
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        busy = listener.getsockname()[1]
        services = "".join(
            f'object Service "{name}" {{\n  host_name = "lab-pc"\n  check_command = "portwatch"\n'
            f"  vars.portwatch_ports = [ {ports} ]\n{extra}"
            f'  vars.portwatch_home = "{portwatch_home}"\n'
            "  check_interval = 1s\n  retry_interval = 1s\n}\n"
            for name, ports, extra in (
                # the bare socket accepts but never answers HTTP: health is not the point here
                ("listening", f'"{busy}"', "  vars.portwatch_no_probe = true\n"),
                ("free", f'"{busy}", "{free}"', "  vars.portwatch_no_probe = true\n"),
                ("must-stay-free", f'"{busy}"', '  vars.portwatch_expect = "free"\n'),
                ("bad-input", '"70000"', ""),
            )
        )
        config = tmp_path / "icinga2.conf"
        config.write_text(
            "include <itl>\n" + command + 'object CheckerComponent "checker" { }\n'
            f'object PerfdataWriter "perfdata" {{\n  service_perfdata_path = "{spool}/service"\n'
            f'  host_perfdata_path = "{spool}/host"\n  rotation_interval = 1s\n}}\n'
            'object Host "lab-pc" {\n  check_command = "dummy"\n}\n' + services
        )
        with icinga(config, tmp_path):

            def results() -> dict[str, tuple[str, str]] | None:
                seen: dict[str, tuple[str, str]] = {}
                for path in spool.glob("service*"):
                    for line in path.read_text().splitlines():
                        fields = dict(
                            item.split("::", 1) for item in line.split("\t") if "::" in item
                        )
                        seen[fields["SERVICEDESC"]] = (
                            fields["SERVICESTATE"],
                            fields.get("SERVICEPERFDATA", ""),
                        )
                return seen if len(seen) == 4 else None

            seen = wait_for("Icinga's check results of all four services", results, 60)
    assert seen["listening"] == (
        "OK",
        f"listening_{busy}_tcp=1;;1:;0;1 " + _scan(seen["listening"]),
    )
    state, perf = seen["free"]
    assert state == "CRITICAL"
    assert f"listening_{busy}_tcp=1;;1:;0;1 listening_{free}_tcp=0;;1:;0;1 " in perf
    assert seen["must-stay-free"][0] == "CRITICAL"
    assert seen["must-stay-free"][1].startswith(f"listening_{busy}_tcp=1;;0;0;1 ")
    assert seen["bad-input"] == ("UNKNOWN", "")


def _scan(result: tuple[str, str]) -> str:
    """The scan_time item Icinga read back (its value differs on every run)."""
    match = re.search(r"scan_time=[0-9]+\.[0-9]{6}s;;;0;$", result[1])
    assert match, result
    return match.group(0)


def test_the_blackbox_recipe(tmp_path: Path) -> None:
    """The shell lines for the central server; /etc/prometheus/ and /tmp/ become temporary
    folders, and `chown prometheus` is kept when that user exists (Debian's prometheus package
    creates it)."""
    require_tools("prometheus-blackbox-exporter", "promtool")
    [script] = blocks("sh")
    etc = tmp_path / "etc"
    etc.mkdir()
    jobs = tmp_path / "portwatch-jobs.yml"
    script = script.replace("/tmp/portwatch-jobs.yml", str(jobs))
    script = script.replace("/etc/prometheus/", f"{etc}/")
    script = re.sub(r"^portwatch ", f"{PORTWATCH} ", script, flags=re.MULTILINE)
    if subprocess.run(["id", "prometheus"], capture_output=True).returncode != 0:
        pytest.fail("the user prometheus is missing: Debian's prometheus package creates it")
    ran = subprocess.run(["sh", "-ex"], input=script, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "Config file is ok" in ran.stderr
    key = etc / "bluesky.key"
    assert key.read_text() == "the-api-key\n" and (key.stat().st_mode & 0o777) == 0o600
    modules = (etc / "blackbox.yml").read_text()
    assert f'credentials_file: "{key}"' in modules and "the-api-key" not in modules
    assert '- "beamline-2.lab:60610"' in jobs.read_text()
    checked = subprocess.run(
        ["promtool", "check", "config", str(jobs)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
