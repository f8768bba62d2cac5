"""`portwatch check --nagios` as Icinga/Nagios run it: a subprocess, real listeners and HTTP
servers on loopback, its exit code and stdout checked against the Monitoring Plugins rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.monitoring_support import renamed_listener
from tests.probe_servers import QuietHandler, bluesky_child, serve
from tests.support import free_port, missing_part
from trayapp import cli
from trayapp.core.model import Snapshot
from trayapp.core.scanning import ScanError, Scanner

# 'label'=value[UOM];[warn];[crit];[min];[max] (the Monitoring Plugins development guidelines)
_NUMBER = r"-?[0-9]+(\.[0-9]+)?"
_RANGE = rf"(@?~?(({_NUMBER})?:)?({_NUMBER})?)"
PERFDATA = re.compile(
    rf"'[^'=]+'=({_NUMBER})(s|ms|us|%|B|KB|MB|TB|c)?;{_RANGE};{_RANGE};({_NUMBER})?;({_NUMBER})?"
)
STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def plugin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", "check", "--nagios", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or os.environ.copy(),
    )


def check_grammar(result: subprocess.CompletedProcess[str]) -> tuple[str, list[str]]:
    """The rules every answer keeps; returns the status text and the perfdata items."""
    assert result.returncode in STATES, result
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines and result.stdout.endswith("\n")
    first = lines[0]
    assert first.startswith(f"{STATES[result.returncode]} - "), first
    assert all("|" not in line for line in lines[1:])
    text, _bar, perf = first.partition(" | ")
    assert "|" not in text
    items = perf.split(" ") if perf else []
    for item in items:
        assert PERFDATA.fullmatch(item), item
    return text, items


def test_a_listening_port_is_ok(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = plugin(str(port), "--no-probe")
    text, perf = check_grammar(result)
    assert result.returncode == 0
    # pytest's own process holds the socket: named with its pid, as Icinga shows it
    assert text == f"OK - {port}/tcp listening: {_my_name()} (pid {os.getpid()})"
    assert perf[0] == f"'listening_{port}_tcp'=1;;1:;0;1"
    assert perf[-1].startswith("'scan_time'=") and perf[-1].endswith("s;;;0;")
    assert result.stdout.splitlines()[1].startswith(f"[OK] {port}/tcp listening")


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _my_name() -> str:
    return _comm(os.getpid())


def test_a_free_port_is_critical_and_named_first() -> None:
    free = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = plugin(str(taken), str(free), "--no-probe")
    text, perf = check_grammar(result)
    assert result.returncode == 2
    assert text == f"CRITICAL - {free}/tcp free; 1 OK"
    assert f"'listening_{free}_tcp'=0;;1:;0;1" in perf
    assert f"'listening_{taken}_tcp'=1;;1:;0;1" in perf
    details = result.stdout.splitlines()[1:]
    assert details == [
        f"[OK] {taken}/tcp listening: {_my_name()} (pid {os.getpid()}); on 127.0.0.1",
        f"[CRITICAL] {free}/tcp free",
    ]


class ServerError(QuietHandler):
    server_version = "Broken/1.0"

    def do_GET(self) -> None:
        self.reply(503, b"<title>down for maintenance</title>", "text/html")


class Fine(QuietHandler):
    server_version = "Fine/1.0"

    def do_GET(self) -> None:
        self.reply(404, b"<title>not here</title>", "text/html")


def test_listening_but_unhealthy_is_a_warning() -> None:
    with serve(ServerError) as broken, serve(Fine) as fine:
        result = plugin(str(broken.port), str(fine.port))
    text, perf = check_grammar(result)
    assert result.returncode == 1
    assert text.startswith(f"WARNING - {broken.port}/tcp listening: ")
    assert 'unhealthy: HTTP 503, Broken/1.0, "down for maintenance"; 1 OK' in text
    assert f"'healthy_{broken.port}_tcp'=0;1:;;0;1" in perf
    # a 404 still proves a working server: healthy
    assert f"'healthy_{fine.port}_tcp'=1;1:;;0;1" in perf


def test_a_bluesky_server_without_its_key_warns_and_with_it_is_ok(portwatch_home: Path) -> None:
    with bluesky_child("s3cret") as (port, server):
        without = plugin(str(port))
        text, _perf = check_grammar(without)
        assert without.returncode == 1
        assert "needs an API key" in text
        config = portwatch_home / "config" / "config.json"
        config.parent.mkdir(parents=True)
        entry = {"port": port, "label": "Queue Server", "api_key": "s3cret"}
        config.write_text(json.dumps({"ports": [entry]}))
        with_key = plugin(str(port))
        text, perf = check_grammar(with_key)
        assert with_key.returncode == 0
        assert text == f"OK - {port}/tcp listening: {_comm(server.pid)} (pid {server.pid})"
        assert f"'healthy_{port}_tcp'=1;1:;;0;1" in perf
        assert "RE Manager idle, 2 queued" in with_key.stdout
        assert "(Queue Server)" in with_key.stdout
        assert "s3cret" not in without.stdout + with_key.stdout


def test_expect_free_turns_the_logic_around(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    free = free_port()
    busy = plugin(str(port), "--expect", "free")
    text, perf = check_grammar(busy)
    assert busy.returncode == 2
    assert text == (
        f"CRITICAL - {port}/tcp in use: {_my_name()} (pid {os.getpid()}) (must stay free)"
    )
    assert perf[0] == f"'listening_{port}_tcp'=1;;0;0;1"
    ok = plugin(str(free), "--expect", "free")
    text, perf = check_grammar(ok)
    assert ok.returncode == 0 and text == f"OK - {free}/tcp free"
    assert perf[0] == f"'listening_{free}_tcp'=0;;0;0;1"
    assert not any(item.startswith("'healthy_") for item in perf)  # no health check wanted


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["70000"], "'70000' is not a port"),
        (["80", "--expect", "maybe"], "invalid choice: 'maybe'"),
        ([], "the following arguments are required: SPEC"),
        (["80", "--json"], "--nagios and --json do not go together"),
        (["80", "--bogus"], "unrecognized arguments: --bogus"),
        (["8\x1b0"], "'8\\x1b0' is not a port"),
    ],
)
def test_bad_input_is_unknown_exit_3(args: list[str], says: str) -> None:
    result = plugin(*args)
    assert result.returncode == 3
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    assert line.startswith("UNKNOWN - portwatch check: ")
    assert says in line


def test_abbreviated_nagios_option_still_answers_unknown() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trayapp", "check", "--nag", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3 and result.stdout.startswith("UNKNOWN - ")


class BrokenBackend(Scanner):
    """The kernel interface failing as a whole cannot be made to happen here on demand; this
    raises what a real backend raises then (netlink.py: ScanError('netlink scan failed: ...'))."""

    name = "broken"

    def scan(self, ports: object, *, connections: bool = False) -> Snapshot:
        raise ScanError("netlink scan failed: OSError(105, 'No buffer space available')")


def test_a_failed_scan_is_unknown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_scanner", BrokenBackend)
    assert cli.main(["check", "--nagios", "60610"]) == 3
    out, err = capsys.readouterr()
    assert out == (
        "UNKNOWN - could not scan: netlink scan failed: OSError(105, 'No buffer space available')\n"
    )
    assert err == ""


def test_numbers_are_c_locale_numbers_under_a_german_locale(
    tmp_path: Path, listener: socket.socket
) -> None:
    """Qt, or a host that embeds us, may switch LC_NUMERIC to the user's locale, where 0.5 is
    written '0,5'; perfdata must still say 0.5."""
    if shutil.which("localedef") is None or not Path("/usr/share/i18n/locales/de_DE").exists():
        missing_part("needs localedef and the de_DE locale source (Debian package locales)")
    locales = tmp_path / "locales"
    locales.mkdir()
    subprocess.run(
        ["localedef", "-i", "de_DE", "-f", "UTF-8", str(locales / "de_DE.UTF-8")],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "LOCPATH": str(locales), "LC_ALL": "de_DE.UTF-8"}
    port = listener.getsockname()[1]
    code = (
        "import locale, sys; locale.setlocale(locale.LC_ALL, ''); "
        "assert locale.localeconv()['decimal_point'] == ',', locale.localeconv(); "
        "assert locale.format_string('%.1f', 0.5) == '0,5'; "
        "from trayapp.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "check", "--nagios", "--no-probe", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    _text, perf = check_grammar(result)
    assert result.returncode == 0
    [scan_time] = [item for item in perf if item.startswith("'scan_time'")]
    assert re.fullmatch(r"'scan_time'=[0-9]+\.[0-9]{6}s;;;0;", scan_time)


def test_names_cannot_break_the_output(tmp_path: Path) -> None:
    """A process name with '|' or a line feed would split the status line or start a perfdata
    section: the real process is renamed (prctl) to carry both."""
    port = free_port()
    with renamed_listener(port, b"a|b\nc") as child:
        result = plugin(str(port), "--no-probe")
    text, _perf = check_grammar(result)
    assert result.returncode == 0
    assert text == f"OK - {port}/tcp listening: a/b c (pid {child.pid})"


def test_probed_ports_are_the_ones_asked_for() -> None:
    """One check, several specs: every port appears once, in the perfdata and the details."""
    first = free_port()
    result = plugin(f"{first}", f"{first}/udp", "--no-probe")
    _text, perf = check_grammar(result)
    assert result.returncode == 2
    names = [item.split("=")[0] for item in perf]
    assert names == [f"'listening_{first}_tcp'", f"'listening_{first}_udp'", "'scan_time'"]
    assert len(result.stdout.splitlines()) == 3


def test_a_script_is_named_in_full_not_as_the_kernel_cuts_it(tmp_path: Path) -> None:
    """bluesky-httpserver runs as a script, start-bluesky-httpserver: the kernel keeps 15 bytes
    of that name ("start-bluesky-h"); the plugin names it whole, as the issue's example does."""
    script = tmp_path / "start-bluesky-httpserver"
    script.write_text(
        f"#!{sys.executable}\n"
        "import socket, sys\n"
        "s = socket.socket()\n"
        "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
        "s.listen()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    script.chmod(0o755)
    port = free_port()
    child = subprocess.Popen(
        [str(script), str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        assert _comm(child.pid) == "start-bluesky-h"
        result = plugin(str(port), "--no-probe")
    finally:
        child.communicate(timeout=10)
    text, _perf = check_grammar(result)
    assert text == f"OK - {port}/tcp listening: start-bluesky-httpserver (pid {child.pid})"
