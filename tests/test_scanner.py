"""Scanner backends against real sockets and real processes, every backend available here.

Backends differ in what their OS interface can tell (see Backend in scan_fixtures.py): only
netlink sees V6ONLY, socket identity and the socket's uid; the own-processes mode cannot see
sockets that belong to no process (TIME_WAIT).
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from tests.helpers_listeners import (
    DEADLINE,
    Backend,
    Child,
    as_user,
    free_port,
    has_ipv6,
    json_as,
    port_of,
    tcp_listener,
    user_env,
    wait_for_snapshot,
)
from tests.support import IN_CI, user_name
from trayapp.core.model import Port, PortState
from trayapp.platforms import owners
from trayapp.platforms.netlink import DiagSocketClient, NetlinkError, NetlinkScanner
from trayapp.platforms.scanners import create_scanner

if TYPE_CHECKING:
    import pwd  # POSIX only

pytest_plugins = ["tests.scan_fixtures"]

# CI's machines have IPv6 loopback: there a missing one fails the tests instead.
needs_ipv6 = pytest.mark.skipif(
    not has_ipv6() and not IN_CI, reason="no IPv6 loopback on this machine"
)
linux_only = pytest.mark.linux("netlink, /proc and SO_REUSEPORT sharing are Linux's")


def pids(state: PortState) -> set[int]:
    return {owner.pid for owner in state.owners}


# --- what counts as listening, and how it is described ---------------------------------------


def test_ipv4_loopback_listener(backend: Backend) -> None:
    with tcp_listener("127.0.0.1") as sock:
        state = backend.scan(Port(port_of(sock))).states[0]
    assert state.listening
    (listener,) = state.listeners
    assert (listener.address, listener.family, listener.protocol) == ("127.0.0.1", "ipv4", "tcp")
    assert pids(state) == {os.getpid()}
    assert listener.owners[0].username == user_name()
    if backend.knows_socket_uid:
        assert listener.uid == os.geteuid()
        assert listener.inode


@needs_ipv6
def test_ipv6_only_listener(backend: Backend) -> None:
    with tcp_listener("::1", family=socket.AF_INET6, v6only=True) as sock:
        state = backend.scan(Port(port_of(sock))).states[0]
    (listener,) = state.listeners
    assert (listener.address, listener.family) == ("::1", "ipv6")
    assert pids(state) == {os.getpid()}


@needs_ipv6
def test_dual_stack_listener(backend: Backend) -> None:
    with tcp_listener("::", family=socket.AF_INET6, v6only=False) as dual:
        port = port_of(dual)
        with tcp_listener("::", family=socket.AF_INET6, v6only=True) as v6:
            states = backend.scan(Port(port), Port(port_of(v6))).states
    assert [listener.address for s in states for listener in s.listeners] == ["::", "::"]
    expected_dual = "dual" if backend.tells_dual_stack else "ipv6"
    assert [s.listeners[0].family for s in states] == [expected_dual, "ipv6"]


@needs_ipv6
def test_v4_mapped_listener_serves_ipv4(backend: Backend) -> None:
    with tcp_listener("::ffff:127.0.0.1", family=socket.AF_INET6) as sock:
        (listener,) = backend.scan(Port(port_of(sock))).states[0].listeners
    assert (listener.address, listener.family) == ("::ffff:127.0.0.1", "ipv4")


def test_bound_udp_counts_connected_udp_does_not(backend: Backend) -> None:
    bound_port, connected_port = free_port(), free_port()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as connected,
    ):
        bound.bind(("127.0.0.1", bound_port))
        connected.bind(("127.0.0.1", connected_port))
        connected.connect(("127.0.0.1", bound_port))
        snapshot = backend.scan(
            Port(bound_port, "udp"), Port(connected_port, "udp"), connections=True
        )
    served, client = snapshot.states
    assert served.listening and served.listeners[0].protocol == "udp"
    assert pids(served) == {os.getpid()}
    assert not client.listening
    assert client.connections is not None
    assert [(c.status, c.remote_port) for c in client.connections] == [("ESTABLISHED", bound_port)]


def test_tcp_and_udp_on_one_number_are_separate(backend: Backend) -> None:
    with tcp_listener("127.0.0.1") as sock:
        port = port_of(sock)
        tcp, udp = backend.scan(Port(port, "tcp"), Port(port, "udp")).states
    assert tcp.listening and not udp.listening


def test_states_follow_the_order_given_and_only_watched_ports(backend: Backend) -> None:
    with tcp_listener() as a, tcp_listener() as b, tcp_listener() as c:
        numbers = {name: port_of(s) for name, s in (("a", a), ("b", b), ("c", c))}
        free = Port(free_port())
        snapshot = backend.scan(free, Port(numbers["c"]), Port(numbers["a"]), free)
    assert [s.listening for s in snapshot.states] == [False, True, True, False]
    assert [s.listeners[0].port for s in snapshot.states[1:3]] == [numbers["c"], numbers["a"]]
    assert numbers["b"] not in {x.port for s in snapshot.states for x in s.listeners}
    assert snapshot.problems == ()


def test_adjacent_port_ranges_filter_exactly(backend: Backend) -> None:
    """Neighbouring ports merge into one kernel filter range: its edges must be exact."""
    base = free_port(run=4)
    with tcp_listener(port=base), tcp_listener(port=base + 1), tcp_listener(port=base + 2):
        snapshot = backend.scan(Port(base), Port(base + 2), Port(base + 3))
    assert [s.listening for s in snapshot.states] == [True, True, False]
    assert {x.port for s in snapshot.states for x in s.listeners} == {base, base + 2}


# --- owners: other processes, forks, SO_REUSEPORT ------------------------------------------


def test_http_server_child_is_described(backend: Backend) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with Child(argv, terminate=True) as child:
        # Until the owner shows: psutil-own+probe lists its own processes' sockets, then probes
        # the ports still unexplained, so a child that starts listening in between is found by
        # the probe alone (owner unknown) for one scan.
        snapshot = wait_for_snapshot(backend, (Port(port),), lambda s: bool(s.states[0].owners))
        started = psutil.Process(child.pid).create_time()
    (owner,) = snapshot.states[0].owners
    assert owner.pid == child.pid
    assert owner.name is not None and "python" in owner.name
    assert owner.exe is not None and Path(owner.exe).resolve() == Path(sys.executable).resolve()
    assert "http.server" in owner.cmdline and str(port) in owner.cmdline
    assert owner.create_time == pytest.approx(started)


FORKED_LISTENER = r"""
import os, signal, socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
child = os.fork()
if child == 0:
    signal.pause()
    os._exit(0)
print(sock.getsockname()[1], os.getpid(), child, flush=True)
sys.stdin.readline()  # "kill the child"
os.kill(child, signal.SIGTERM)
os.waitpid(child, 0)
print("child gone", flush=True)
sys.stdin.read()
"""


@pytest.mark.posix("the child forks: Windows has no fork")
def test_forked_listener_lists_every_holder_and_drops_stale_ones(backend: Backend) -> None:
    with Child.python(FORKED_LISTENER) as child:
        port, parent, forked = (int(word) for word in child.read_line().split())
        ports = (Port(port),)
        holders = {parent, forked} if backend.lists_every_holder else {forked}
        snapshot = wait_for_snapshot(backend, ports, lambda s: pids(s.states[0]) == holders)
        if backend.tells_sockets_apart:
            assert len(snapshot.states[0].listeners) == 1  # one socket, two holders
        assert child.proc.stdin is not None
        child.proc.stdin.write("kill the child\n")
        child.proc.stdin.flush()
        assert child.read_line() == "child gone"
        snapshot = wait_for_snapshot(backend, ports, lambda s: forked not in pids(s.states[0]))
    assert pids(snapshot.states[0]) == {parent}


@linux_only
def test_reuseport_sockets_are_both_listed(backend: Backend) -> None:
    with tcp_listener(reuseport=True) as first:
        port = port_of(first)
        with tcp_listener(port=port, reuseport=True):
            state = backend.scan(Port(port)).states[0]
    assert pids(state) == {os.getpid()}
    if backend.tells_sockets_apart:
        assert len(state.listeners) == 2
        assert len({listener.inode for listener in state.listeners}) == 2


# --- busy but not listening: TIME_WAIT, a client's source port -----------------------------


def test_time_wait_is_a_connection_not_a_listener(backend: Backend) -> None:
    port = free_port()
    with (
        tcp_listener("127.0.0.1", port) as server,
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client,
    ):
        accepted, _ = server.accept()
        accepted.close()  # the server closes first, so TIME_WAIT stays on its port
        assert client.recv(1) == b""
    ports = (Port(port),)
    if not backend.sees_fileless_sockets:
        state = backend.scan(*ports, connections=True).states[0]
        assert not state.listening
        return
    snapshot = wait_for_snapshot(
        backend,
        ports,
        lambda s: any(c.status == "TIME_WAIT" for c in s.states[0].connections or ()),
        connections=True,
    )
    state = snapshot.states[0]
    assert not state.listening
    assert state.connections is not None
    leftover = next(c for c in state.connections if c.status == "TIME_WAIT")
    assert (leftover.local_port, leftover.pid) == (port, None)
    assert backend.scan(*ports).states[0].connections is None  # not asked: not looked at


def test_client_source_port_is_not_a_listener(backend: Backend) -> None:
    port = free_port()
    with tcp_listener() as server, socket.socket() as client:
        client.bind(("127.0.0.1", port))
        client.connect(("127.0.0.1", port_of(server)))
        accepted, _ = server.accept()
        with accepted:
            state = backend.scan(Port(port), connections=True).states[0]
        server_port = port_of(server)
    assert not state.listening
    assert state.connections is not None
    (connection,) = state.connections
    assert (connection.status, connection.local_port) == ("ESTABLISHED", port)
    assert (connection.remote_address, connection.remote_port) == ("127.0.0.1", server_port)
    assert connection.pid == os.getpid()


# --- robustness ------------------------------------------------------------------------------

CHURN = r"""
import os, random, select, socket, sys, time
ports = [int(p) for p in sys.argv[1:]]
print("ready", flush=True)
alive = started = 0
while not select.select([sys.stdin], [], [], 0)[0]:  # until told to stop
    if alive >= 6:
        os.wait()
        alive -= 1
    started += 1
    if os.fork() == 0:
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", ports[started % len(ports)]))
            sock.listen()
            time.sleep(random.random() * 0.03)
        finally:
            os._exit(0)
    alive += 1
while alive:
    os.wait()
    alive -= 1
print(started, flush=True)
"""


@linux_only
def test_processes_exiting_mid_lookup_do_not_break_the_scan(backend: Backend) -> None:
    ports = tuple(Port(free_port()) for _ in range(3))
    scans = 0
    with Child.python(CHURN, *(str(p.number) for p in ports)) as child:
        assert child.read_line() == "ready"
        busy_until = time.monotonic() + 1.0
        while scans < 5 or time.monotonic() < busy_until:
            snapshot = backend.scan(*ports)
            assert len(snapshot.states) == len(ports)
            scans += 1
        assert child.proc.stdin is not None
        child.proc.stdin.write("stop\n")
        child.proc.stdin.flush()
        started = int(child.read_line())
    assert started > 20


@pytest.mark.posix("zombies (exited, not yet reaped) exist on POSIX only")
def test_describe_tolerates_vanished_and_zombie_processes() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        deadline = time.monotonic() + DEADLINE
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "child never became a zombie"
            time.sleep(0.01)
        zombie = owners.describe(proc.pid)
    assert zombie.pid == proc.pid
    gone = owners.describe(proc.pid)  # reaped now: nothing to read
    assert (gone.name, gone.exe, gone.cmdline) == (None, None, ())
    me = owners.describe(os.getpid())
    assert me is owners.describe(os.getpid())  # cached by (pid, create_time)


def test_create_scanner_prefers_netlink_on_linux() -> None:
    scanner = create_scanner()
    try:
        expected = "netlink" if sys.platform.startswith("linux") else scanner.name
        assert scanner.name == expected
        assert scanner.scan([Port(free_port())]).backend == expected
    finally:
        scanner.close()


@linux_only
def test_kernel_errors_arrive_as_netlink_errors() -> None:
    client = DiagSocketClient()
    try:
        with pytest.raises(NetlinkError) as raised:
            client.dump("tcp", 250, 1 << 10, [80])  # no such address family
        assert raised.value.errno == errno.EINVAL
        assert client.dump("tcp", socket.AF_INET, 1 << 10, [0]) == []  # still usable
    finally:
        client.close()


@linux_only
def test_udp_without_udp_diag_falls_back_to_proc_net_udp() -> None:
    scanner = NetlinkScanner(udp_diag=False)
    port, connected_port = free_port(), free_port()
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as connected,
        ):
            bound.bind(("127.0.0.1", port))
            connected.bind(("127.0.0.1", connected_port))
            connected.connect(("127.0.0.1", port))
            snapshot = scanner.scan([Port(port, "udp"), Port(connected_port, "udp")])
    finally:
        scanner.close()
    served, client = snapshot.states
    assert served.listening and pids(served) == {os.getpid()}
    assert served.listeners[0].uid == os.geteuid()
    assert not client.listening
    assert any("/proc/net/udp" in problem for problem in snapshot.problems)


# --- another user's listener: root creates two users, the second must not see the first's --

USER_LISTENER = r"""
import socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("ready", flush=True)
sys.stdin.read()
"""

SCAN_AS_USER = r"""
import dataclasses, json, sys
from trayapp.core.model import Port
from trayapp.platforms.scanners import make_scanner
scanner = make_scanner(sys.argv[1])
snapshot = scanner.scan([Port(int(sys.argv[2]))])
scanner.close()
print(json.dumps({
    "backend": snapshot.backend,
    "problems": list(snapshot.problems),
    "listeners": [dataclasses.asdict(listener) for listener in snapshot.states[0].listeners],
}))
"""


@pytest.mark.root
@linux_only  # setpriv (util-linux) runs each side as its own user
@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: creates two system users and runs processes as each",
)
def test_other_users_listener_is_hidden_but_busy(
    backend: Backend, scan_users: tuple[pwd.struct_passwd, ...], sandbox: tuple[str, str]
) -> None:
    owner_user, other_user = scan_users
    python, pythonpath = sandbox
    port = free_port()
    argv = [*as_user(owner_user), python, "-c", USER_LISTENER, str(port)]
    with Child(argv, env=user_env(pythonpath)) as listener:
        assert listener.read_line() == "ready"
        as_root = backend.scan(Port(port)).states[0]
        seen = json_as(other_user, sandbox, SCAN_AS_USER, backend.name, str(port))
    assert seen["backend"] == backend.name
    assert seen["listeners"], f"another user's listener looked free: {seen}"
    assert all(listener["owners"] == [] for listener in seen["listeners"])
    problems = " ".join(seen["problems"])
    assert "administrator" in problems
    if backend.knows_socket_uid:
        assert {(x["uid"], x["username"]) for x in seen["listeners"]} == {
            (owner_user.pw_uid, owner_user.pw_name)
        }
        assert owner_user.pw_name in problems
    # Root may look at any process; the own-processes mode, by design, only at root's.
    assert as_root.listening
    if backend.name != "psutil-own+probe":
        (owner,) = as_root.owners
        assert (owner.pid, owner.username) == (listener.pid, owner_user.pw_name)
