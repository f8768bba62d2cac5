"""The commands shown for checking a port by hand: right port and protocol on every OS, and on
Linux they are run for real against sockets this test opens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support import require_tools
from trayapp.core.commands import admin_hint, check_commands, terminate_hint
from trayapp.core.host import OSName

ALL_OS: list[OSName] = ["linux", "macos", "windows", "other"]


def shell(command: str) -> subprocess.CompletedProcess[str]:
    # The socket belongs to this test's own process, so every tool sees it without sudo;
    # running the sudo variants unprivileged keeps the test independent of a sudo setup.
    if command.startswith("sudo "):
        command = command.removeprefix("sudo ")
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def udp_bound() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# --- Every OS: the port and the protocol are in the command -------------------------------------


@pytest.mark.parametrize("os_name", ALL_OS)
@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_commands_name_the_port_and_protocol(os_name: OSName, protocol: str) -> None:
    commands = check_commands(60610, protocol, os_name)
    assert len(commands) >= 2
    for description, command in commands:
        assert description and command
        if "<pid>" not in command:
            assert "60610" in command, command
        other = "udp" if protocol == "tcp" else "tcp"
        assert other not in command.lower(), command
    assert any(protocol in command.lower() for _description, command in commands)


def test_linux_commands() -> None:
    assert [c for _d, c in check_commands(60615, "tcp", "linux")] == [
        "ss -tlnp 'sport = :60615'",
        "sudo lsof -nP -iTCP:60615 -sTCP:LISTEN",
        "sudo ss -tanp 'sport = :60615'",
    ]
    assert [c for _d, c in check_commands(60615, "udp", "linux")] == [
        "ss -ulnp 'sport = :60615'",
        "sudo lsof -nP -iUDP:60615",
        "sudo ss -uanp 'sport = :60615'",
    ]


def test_macos_commands() -> None:
    tcp = [c for _d, c in check_commands(8080, "tcp", "macos")]
    assert tcp == [
        "lsof -nP -iTCP:8080 -sTCP:LISTEN",
        "sudo lsof -nP -iTCP:8080 -sTCP:LISTEN",
        "netstat -anv -p tcp | grep '\\.8080 '",
    ]
    udp = [c for _d, c in check_commands(5353, "udp", "macos")]
    assert udp[0] == "lsof -nP -iUDP:5353"
    assert udp[2] == "netstat -anv -p udp | grep '\\.5353 '"


def test_macos_netstat_filter_matches_only_that_port() -> None:
    """The grep pattern, run by the real grep over lines in macOS netstat's format."""
    lines = [
        "tcp4       0      0  *.80                   *.*                    LISTEN",
        "tcp4       0      0  *.8080                 *.*                    LISTEN",
        "tcp6       0      0  *.8000                 *.*                    LISTEN",
        "tcp4       0      0  10.0.0.80.53000        1.2.3.4.443            ESTABLISHED",
        "tcp46      0      0  *.80                   *.*                    LISTEN",
    ]
    command = check_commands(80, "tcp", "macos")[2][1]
    sample = "printf '%s\\n' " + " ".join(f"'{line}'" for line in lines)
    result = shell(command.replace("netstat -anv -p tcp", sample))
    assert result.stdout.splitlines() == [lines[0], lines[4]]


def test_windows_commands() -> None:
    tcp = check_commands(60610, "tcp", "windows")
    assert [c for _d, c in tcp] == [
        'netstat -ano | findstr /R /C:"^ *TCP  *[^ ]*:60610 "',
        "Get-NetTCPConnection -LocalPort 60610 -State Listen"
        " | Select-Object LocalAddress,LocalPort,OwningProcess",
        'tasklist /FI "PID eq <pid>"',
    ]
    assert "PowerShell" in tcp[1][0]
    udp = [c for _d, c in check_commands(60610, "udp", "windows", pid=4)]
    assert udp[0] == 'netstat -ano | findstr /R /C:"^ *UDP  *[^ ]*:60610 "'
    assert udp[1].startswith("Get-NetUDPEndpoint -LocalPort 60610 ")
    assert udp[2] == 'tasklist /FI "PID eq 4"'


def test_known_pid_adds_a_process_command_on_unix() -> None:
    assert check_commands(80, "tcp", "linux", pid=1234)[-1][1] == "ps -o pid,user,command -p 1234"
    assert "-p 1234" in check_commands(80, "tcp", "macos", pid=1234)[-1][1]


@pytest.mark.parametrize(
    ("port", "protocol"), [(-1, "tcp"), (65536, "tcp"), (True, "tcp"), (80, "sctp")]
)
def test_bad_input_is_refused(port: int, protocol: str) -> None:
    with pytest.raises(ValueError):
        check_commands(port, protocol, "linux")


def test_protocol_case_does_not_matter() -> None:
    assert check_commands(53, "UDP", "linux") == check_commands(53, "udp", "linux")


def test_hints() -> None:
    assert "sudo" in admin_hint("linux")
    assert "sudo" in admin_hint("macos")
    assert "Run as administrator" in admin_hint("windows")
    assert "elevated" in admin_hint("windows")
    assert terminate_hint(4242, "linux") == "kill 4242"
    assert terminate_hint(4242, "macos", force=True) == "kill -9 4242"
    assert terminate_hint(4242, "windows") == "taskkill /PID 4242"
    assert terminate_hint(4242, "windows", force=True) == "taskkill /F /PID 4242"
    with pytest.raises(ValueError):
        terminate_hint(0, "linux")


# --- Linux: the commands run here ----------------------------------------------------------------

needs_linux = pytest.mark.linux("runs the Linux commands")


@needs_linux
def test_ss_finds_the_tcp_listener(tcp_listener: int) -> None:
    require_tools("ss")
    for _description, command in check_commands(tcp_listener, "tcp", "linux"):
        if not command.removeprefix("sudo ").startswith("ss "):
            continue
        result = shell(command)
        assert result.returncode == 0, result.stderr
        assert f"127.0.0.1:{tcp_listener}" in result.stdout
        assert f"pid={os.getpid()}," in result.stdout


@needs_linux
def test_ss_finds_the_udp_socket(udp_bound: int) -> None:
    require_tools("ss")
    for _description, command in check_commands(udp_bound, "udp", "linux"):
        if command.removeprefix("sudo ").startswith("ss "):
            result = shell(command)
            assert result.returncode == 0, result.stderr
            assert f"127.0.0.1:{udp_bound}" in result.stdout


@needs_linux
def test_ss_filter_is_exact(tcp_listener: int) -> None:
    require_tools("ss")
    # A port that is a prefix of ours must not show our socket.
    command = check_commands(tcp_listener // 10, "tcp", "linux")[0][1]
    result = shell(command)
    assert result.returncode == 0, result.stderr  # an ss that failed would show nothing, too
    assert f":{tcp_listener}" not in result.stdout
    exact = shell(check_commands(tcp_listener, "tcp", "linux")[0][1])
    assert f":{tcp_listener}" in exact.stdout  # the same command does see the socket itself


@needs_linux
def test_all_sockets_command_shows_time_wait() -> None:
    require_tools("ss")
    """The third Linux command is the one that explains a port that looks busy after a crash."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            accepted, _address = server.accept()
            # The side that closes first keeps the TIME_WAIT: here that is the local port.
            accepted.close()
            assert client.recv(1) == b""  # the FIN arrived
        listening_only, _lsof, all_sockets = (c for _d, c in check_commands(port, "tcp", "linux"))
        deadline = time.monotonic() + 5
        output = shell(all_sockets).stdout
        while "TIME-WAIT" not in output and time.monotonic() < deadline:
            time.sleep(0.05)
            output = shell(all_sockets).stdout
        assert "TIME-WAIT" in output
        assert "LISTEN" in output
        listening = shell(listening_only)
        assert listening.returncode == 0, listening.stderr
        assert "LISTEN" in listening.stdout and "TIME-WAIT" not in listening.stdout


@needs_linux
def test_lsof_finds_the_tcp_listener(tcp_listener: int) -> None:
    require_tools("ss")
    require_tools("lsof")
    result = shell(check_commands(tcp_listener, "tcp", "linux")[1][1])
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{tcp_listener} (LISTEN)" in result.stdout
    assert str(os.getpid()) in result.stdout


@needs_linux
def test_lsof_finds_the_udp_socket(udp_bound: int) -> None:
    require_tools("ss")
    require_tools("lsof")
    result = shell(check_commands(udp_bound, "udp", "linux")[1][1])
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{udp_bound}" in result.stdout
    assert str(os.getpid()) in result.stdout


@needs_linux
@pytest.mark.parametrize(("force", "signal_name"), [(False, "SIGTERM"), (True, "SIGKILL")])
def test_terminate_hint_stops_a_process(force: bool, signal_name: str) -> None:
    require_tools("ss")
    expected = -int(getattr(signal, signal_name))  # looked up late: Windows has no SIGKILL
    child = subprocess.Popen(["sleep", "60"])
    try:
        result = shell(terminate_hint(child.pid, "linux", force=force))
        assert result.returncode == 0, result.stderr
        assert child.wait(timeout=10) == expected
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
