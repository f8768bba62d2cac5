"""Why is this port busy? Each cause made for real and diagnosed from a real scan; only the
Windows excluded range, which this OS cannot make, comes from recorded netsh output.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from tests.helpers_listeners import (
    DEADLINE,
    Child,
    as_user,
    free_port,
    is_free,
    json_as,
    port_of,
    system_users,
    tcp_listener,
    user_env,
)
from tests.helpers_listeners import user_sandbox as sandbox_for
from tests.support import user_name
from trayapp.core.diagnosis import Finding, diagnose
from trayapp.core.host import EphemeralInfo
from trayapp.core.model import Port, PortState
from trayapp.core.ranges import explain_on, explain_port
from trayapp.platforms import ephemeral, host_facts
from trayapp.platforms.ephemeral import parse_netsh_dynamicport, parse_netsh_excluded
from trayapp.platforms.scanners import create_scanner

if TYPE_CHECKING:
    import pwd  # POSIX only

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
linux_only = pytest.mark.linux("Linux's own behaviour (source ports, /proc/<pid>/comm)")

LISTENER = r"""
import socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("ready", flush=True)
sys.stdin.read()
"""


def scan(port: int, condition: Callable[[PortState], bool] = lambda s: True) -> PortState:
    """A real scan of ``port`` with connections, repeated until ``condition`` holds."""
    scanner = create_scanner()
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            state = scanner.scan([Port(port)], connections=True).states[0]
            if condition(state):
                return state
            if time.monotonic() > deadline:
                pytest.fail(f"scan of {port} never met the condition; last state: {state}")
            time.sleep(0.05)
    finally:
        scanner.close()


def findings_for(state: PortState) -> list[Finding]:
    return diagnose(state, explain_on(host_facts(), state.port.number, state.port.protocol))


def causes(findings: list[Finding]) -> list[str]:
    return [f.cause for f in findings]


def owned_by(pid: int) -> Callable[[PortState], bool]:
    return lambda state: any(owner.pid == pid for owner in state.owners)


def time_wait_only(state: PortState) -> bool:
    return not state.listening and any(c.status == "TIME_WAIT" for c in state.connections or ())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m trayapp ...` as a user would run it (PORTWATCH_HOME is the test's own)."""
    return subprocess.run(
        [sys.executable, "-m", "trayapp", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_json(port: int, exit_code: int) -> Any:
    """`portwatch check PORT --json`: exit 0 when it listens, 1 when free."""
    done = cli("check", str(port), "--json")
    assert done.returncode == exit_code, done.stderr
    (entry,) = json.loads(done.stdout)
    return entry


# --- held by a process ------------------------------------------------------------------------


def test_held_by_a_process() -> None:
    port = free_port()
    with Child.python(LISTENER, str(port)) as child:
        assert child.read_line() == "ready"
        findings = findings_for(scan(port, owned_by(child.pid)))
    (finding,) = findings
    assert finding.cause == "process"
    assert f"(pid {child.pid}, user {user_name()})" in finding.title
    assert finding.commands == (f"kill {child.pid}", f"kill -9 {child.pid}")


def test_held_by_a_process_through_the_cli() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with Child(argv, terminate=True) as child:
        scan(port, owned_by(child.pid))
        entry = check_json(port, 0)
        explained = cli("explain", str(port))
    assert entry["state"] == "listening"
    (finding,) = entry["diagnosis"]
    assert finding["cause"] == "process"
    assert f"pid {child.pid}" in finding["title"]
    assert finding["commands"] == [f"kill {child.pid}", f"kill -9 {child.pid}"]
    assert entry["probe"]["health"] == "http"
    assert explained.returncode == 0, explained.stderr
    text = explained.stdout
    assert "Right now:" in text
    right_now = text.split("Right now:", 1)[1]
    assert finding["title"] in right_now
    assert f"$ kill {child.pid}" in right_now


# --- held by another user's process -----------------------------------------------------------

DIAG_USERS = ("portwatch-d1", "portwatch-d2")  # not test_scanner's: its teardown removes those

DIAGNOSE_AS_USER = r"""
import json, sys
from trayapp.core.diagnosis import diagnose
from trayapp.core.model import Port
from trayapp.core.ranges import explain_on
from trayapp.platforms import host_facts
from trayapp.platforms.scanners import create_scanner, make_scanner
port, backend = int(sys.argv[1]), sys.argv[2]
scanner = create_scanner() if backend == "default" else make_scanner(backend)
try:
    state = scanner.scan([Port(port)], connections=True).states[0]
finally:
    scanner.close()
print(json.dumps({
    "backend": scanner.name,
    "listening": state.listening,
    "owners": [owner.pid for owner in state.owners],
    "findings": [finding.to_json() for finding in diagnose(state, explain_on(host_facts(), port))],
}))
"""


@pytest.fixture(scope="module")
def diag_users() -> Iterator[tuple[pwd.struct_passwd, ...]]:
    with system_users(DIAG_USERS) as users:
        yield users


@pytest.fixture(scope="module")
def user_sandbox(diag_users: tuple[pwd.struct_passwd, ...]) -> Iterator[tuple[str, str]]:
    """(python, PYTHONPATH) the test users may run."""
    check = "import psutil, trayapp.core.diagnosis"
    with sandbox_for(diag_users[1], "portwatch-diag-", check) as found:
        yield found


@pytest.mark.root
@pytest.mark.linux("setpriv (util-linux) runs each side as its own user")
@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: creates two system users and runs a listener and the scan as each",
)
def test_held_by_another_users_process(
    diag_users: tuple[pwd.struct_passwd, ...], user_sandbox: tuple[str, str]
) -> None:
    owner_user, other_user = diag_users
    python, pythonpath = user_sandbox
    port = free_port()
    argv = [*as_user(owner_user), python, "-c", LISTENER, str(port)]
    with Child(argv, env=user_env(pythonpath)) as listener:
        assert listener.read_line() == "ready"
        as_root = findings_for(scan(port, owned_by(listener.pid)))
        seen = json_as(other_user, user_sandbox, DIAGNOSE_AS_USER, str(port), "default")
    assert seen["backend"] == ("netlink" if sys.platform.startswith("linux") else "psutil")
    assert seen["listening"] and seen["owners"] == []
    (finding,) = seen["findings"]
    assert finding["cause"] == "other-user"
    assert finding["title"] == f"Held by a process of user {owner_user.pw_name}"
    assert "sudo" in finding["detail"]
    # Root sees the process itself, and whose it is.
    (mine,) = as_root
    assert mine.cause == "process"
    assert f"(pid {listener.pid}, user {owner_user.pw_name})" in mine.title


@pytest.mark.root
@pytest.mark.linux("setpriv (util-linux) runs each side as its own user")
@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: creates two system users and runs a listener and the scan as each",
)
def test_another_users_process_seen_through_psutil(
    diag_users: tuple[pwd.struct_passwd, ...], user_sandbox: tuple[str, str]
) -> None:
    """The psutil backend (the fallback without sock_diag) as an unprivileged user."""
    owner_user, other_user = diag_users
    python, pythonpath = user_sandbox
    port = free_port()
    argv = [*as_user(owner_user), python, "-c", LISTENER, str(port)]
    with Child(argv, env=user_env(pythonpath)) as listener:
        assert listener.read_line() == "ready"
        seen = json_as(other_user, user_sandbox, DIAGNOSE_AS_USER, str(port), "psutil")
    assert (seen["backend"], seen["listening"], seen["owners"]) == ("psutil", True, [])
    (finding,) = seen["findings"]
    assert finding["cause"] == "other-user"
    assert "user an unknown user" not in finding["title"], finding["title"]


# --- a client's source port -------------------------------------------------------------------


def ephemeral_free_port() -> int:
    """A free port inside this OS's range for outgoing connections, not reserved."""
    info = ephemeral.read_ephemeral(max_age=0)
    if info is None:
        pytest.fail("could not read this OS's ephemeral port range")
    for _ in range(200):
        port = random.randint(info.first, info.last)
        if info.reserved_span(port) is None and is_free(port):
            return port
    raise RuntimeError("no free port in the ephemeral range")


@linux_only
def test_source_port_of_a_connection() -> None:
    port = ephemeral_free_port()
    info = explain_on(host_facts(), port)
    assert info.in_os_ephemeral and not info.os_reserved
    with tcp_listener() as server, socket.socket() as client:
        client.bind(("127.0.0.1", port))
        client.connect(("127.0.0.1", port_of(server)))
        accepted, _ = server.accept()
        with accepted:
            state = scan(port, lambda s: bool(s.connections))
        server_port = port_of(server)
    assert not state.listening
    (finding,) = diagnose(state, info)
    assert finding.cause == "source-port"
    assert finding.title == "Used as the source port of 1 connection(s)"
    assert f"ESTABLISHED to 127.0.0.1:{server_port}, pid {os.getpid()}" in finding.detail
    first, last = info.os_ephemeral or (0, 0)
    assert f"({first}-{last})" in finding.detail
    assert finding.commands == info.fix_commands
    reserve = finding.commands[0]
    assert reserve.startswith("sudo sysctl -w net.ipv4.ip_local_reserved_ports=")
    spans = ephemeral.parse_linux_reserved(reserve.rsplit("=", 1)[1])
    assert spans is not None and any(first <= port <= last for first, last in spans)


def test_accepted_connection_left_by_a_stopped_server() -> None:
    port = free_port()
    with socket.socket() as server, socket.socket() as client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        client.settimeout(DEADLINE)
        client.connect(("127.0.0.1", port))
        accepted, _ = server.accept()
        server.close()  # the listener is gone, the connection it accepted is not
        with accepted:
            state = scan(port, lambda s: bool(s.connections))
            with socket.socket() as again:  # what the diagnosis is about: can a server bind?
                again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                again.bind(("127.0.0.1", port))
                again.listen()
    (finding,) = findings_for(state)
    assert "can't bind" not in finding.detail, finding


# --- a Windows excluded range (recorded netsh output) -----------------------------------------


def windows_info() -> EphemeralInfo:
    def text(name: str) -> str:
        return ephemeral._decode((DATA / name).read_bytes())

    span = parse_netsh_dynamicport(text("windows_dynamicport_tcp_en.txt"))
    rows = parse_netsh_excluded(text("windows_excludedportrange_tcp_en.txt"))
    assert span is not None and rows is not None
    return EphemeralInfo(
        span[0],
        span[1],
        reserved=tuple((r.first, r.last) for r in rows if r.administered),
        excluded=tuple((r.first, r.last) for r in rows if not r.administered),
        source="netsh int ipv4 show dynamicport tcp",
    )


def test_windows_excluded_range() -> None:
    eph = windows_info()
    assert eph.excluded_span(54300) == (54235, 54334)  # Hyper-V/WinNAT, no "*"
    info = explain_port(54300, ephemeral=eph, os_name="windows")
    (finding,) = diagnose(PortState(Port(54300)), info)
    assert finding.cause == "windows-excluded"
    assert "54235-54334" in finding.detail and "10013" in finding.detail
    assert finding.commands == (
        "net stop winnat",
        "netsh int ipv4 add excludedportrange protocol=tcp startport=54300 numberofports=1",
        "net start winnat",
    )


def test_windows_administered_exclusion_is_not_a_problem() -> None:
    eph = windows_info()
    info = explain_port(50010, ephemeral=eph, os_name="windows")  # "*": an admin reserved it
    (finding,) = diagnose(PortState(Port(50010)), info)
    assert (finding.cause, finding.commands) == ("free", ())


# --- only TIME_WAIT leftovers -----------------------------------------------------------------


def leave_time_wait(port: int) -> None:
    """One connection to a listener on ``port`` that the server side closes first."""
    with (
        tcp_listener("127.0.0.1", port) as server,
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client,
    ):
        accepted, _ = server.accept()
        accepted.close()
        assert client.recv(1) == b""


def test_only_time_wait_leftovers_also_through_the_cli() -> None:
    port = free_port()
    leave_time_wait(port)
    state = scan(port, time_wait_only)
    (finding,) = findings_for(state)
    assert finding.cause == "time-wait"
    assert finding.title == "Only 1 TIME_WAIT leftover(s) from closed connections"
    assert "SO_REUSEADDR" in finding.detail and "allow_reuse_address" in finding.detail
    # The leftover lasts about a minute: long enough for the command line to see it too.
    entry = check_json(port, 1)
    assert entry["state"] == "free"
    assert entry["connections"] == {"TIME_WAIT": 1}
    assert [f["cause"] for f in entry["diagnosis"]] == ["time-wait"]
    assert entry["probe"] is None
    explained = cli("explain", str(port))
    assert explained.returncode == 0, explained.stderr
    right_now = explained.stdout.split("Right now:", 1)[1]
    assert "Only 1 TIME_WAIT leftover(s)" in right_now and "SO_REUSEADDR" in right_now


# --- docker-proxy -----------------------------------------------------------------------------


@linux_only
def test_docker_proxy(tmp_path: Path) -> None:
    # The process name is the executable's file name (/proc/<pid>/comm): a link named
    # docker-proxy to Python makes a real process called docker-proxy.
    fake = tmp_path / "docker-proxy"
    fake.symlink_to(os.path.realpath(sys.executable))
    port = free_port()
    with Child([str(fake), "-I", "-c", LISTENER, str(port)]) as child:
        assert child.read_line() == "ready"
        assert psutil.Process(child.pid).name() == "docker-proxy"
        findings = findings_for(scan(port, owned_by(child.pid)))
    (finding,) = findings
    assert finding.cause == "docker-proxy"
    assert f"pid {child.pid}" in finding.title
    assert finding.commands == (f"docker ps --filter publish={port}", "docker stop <container>")


# --- free -------------------------------------------------------------------------------------


def test_free_port() -> None:
    port = free_port()
    findings = findings_for(scan(port))
    assert causes(findings) == ["free"]
    assert findings[0].title == "Free: nothing listens and no connection uses it"
    assert findings[0].commands == ()  # outside the OS's ephemeral range: nothing to reserve
