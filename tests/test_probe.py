"""The service probe against real servers on loopback: health, Bluesky, API keys, timeouts.

Every server here is real: `python -m http.server` and a Bluesky-like server in child processes,
threaded servers (tests/probe_servers.py) on free loopback ports, and the listeners are found by
the real scanner where the probe starts from a scan (probe_state).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import probe_servers as servers
from tests.helpers_listeners import DEADLINE, Child, free_port, has_ipv6
from tests.support import missing_part
from trayapp.core.model import Listener, Port, PortState
from trayapp.core.probe import (
    STATUS_TIMEOUT,
    NotLoopback,
    ProbeResult,
    looks_like_bluesky,
    loopback_for,
    probe,
    probe_state,
    require_loopback,
)
from trayapp.platforms.scanners import create_scanner

TIMEOUT = 1.0  # the probe's own default
SLACK = 0.5  # what a 1 s timeout may overrun by: the bound the probe promises
KEY = "s3cr3tKey7d1f"  # distinctive, so that finding it anywhere is a leak


def wait_accepting(port: int, host: str = "127.0.0.1", timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"nothing accepted connections on {host}:{port} within {timeout} s")
            time.sleep(0.05)


def scan_listening(port: int, condition: Callable[[PortState], bool] | None = None) -> PortState:
    """The real scanner's view of ``port``, once it listens (and ``condition`` holds)."""
    scanner = create_scanner()
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            state = scanner.scan([Port(port)]).states[0]
            if state.listening and (condition is None or condition(state)):
                return state
            if time.monotonic() > deadline:
                pytest.fail(f"the scanner never saw the expected listener on {port}: {state}")
            time.sleep(0.05)
    finally:
        scanner.close()


def timed(call: Callable[[], ProbeResult]) -> tuple[ProbeResult, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def leaks(result: ProbeResult, key: str) -> bool:
    return key in result.summary or key in json.dumps(result.to_json()) or key in repr(result)


# --- plain HTTP -------------------------------------------------------------------------------


def test_python_http_server(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]
    argv += ["--directory", str(tmp_path), str(port)]
    with Child(argv, terminate=True):
        wait_accepting(port)
        result = probe(port)
    assert (result.health, result.status, result.host, result.port) == (
        "http",
        200,
        "127.0.0.1",
        port,
    )
    assert result.server is not None and result.server.startswith("SimpleHTTP/")
    assert result.title == "Directory listing for /"
    assert result.summary == f'HTTP 200, {result.server}, "Directory listing for /"'
    assert result.queue is None
    assert result.verdict == "healthy"
    assert result.to_json()["http_status"] == 200


def test_401_everywhere_is_http_and_needs_a_key_for_bluesky() -> None:
    with servers.serve(servers.Unauthorized) as server:
        plain = probe(server.port)
        bluesky = probe(server.port, bluesky=True)
        rejected = probe(server.port, bluesky=True, api_key="wrong")
    assert (plain.health, plain.status, plain.server) == ("http", 401, "AuthGate/1.0")
    assert plain.title == "401 Unauthorized"
    assert (bluesky.health, bluesky.status) == ("needs-key", 401)
    assert "needs an API key" in bluesky.summary
    assert (rejected.health, rejected.status) == ("key-rejected", 401)
    assert "API key (Settings) was rejected" in rejected.summary
    assert bluesky.verdict == rejected.verdict == "unhealthy"
    assert [path for path, _ in server.requests] == ["/", "/", "/api/status", "/", "/api/status"]


# --- Bluesky ----------------------------------------------------------------------------------


def test_bluesky_status_is_ok_with_the_manager_summary() -> None:
    with servers.serve(servers.BlueskyLike) as server:
        result = probe(server.port, bluesky=True)
        plain = probe(server.port)
    assert (result.health, result.status, result.server) == ("ok", 200, "uvicorn")
    assert result.summary == ("RE Manager idle, 2 queued, 5 in history, worker environment idle")
    assert result.short == "RE Manager idle, 2 queued"
    assert result.queue is not None
    assert result.to_json()["bluesky"] == {
        "manager_state": "idle",
        "re_state": "idle",
        "worker_environment_exists": True,
        "worker_environment_state": "idle",
        "items_in_queue": 2,
        "items_in_history": 5,
        "running_item_uid": None,
        "queue_stop_pending": False,
        "pause_pending": False,
        "queue_autostart_enabled": False,
        "plan_history_uid": "0cb63d03",
    }
    # Without the Bluesky hint only / is looked at: FastAPI's 404 there is still a live server.
    assert (plain.health, plain.status, plain.summary) == ("http", 404, "HTTP 404, uvicorn")
    assert [path for path, _ in server.requests] == ["/", "/api/status", "/"]


def test_api_key_is_sent_only_when_set_and_only_to_the_status_endpoint() -> None:
    with servers.serve(servers.BlueskyLike, api_key="secret") as server:
        without = probe(server.port, bluesky=True)
        assert server.header_values("/api/status", "Authorization") == [[]]
        with_key = probe(server.port, bluesky=True, api_key="secret")
        wrong = probe(server.port, bluesky=True, api_key="not-the-key")
    assert (without.health, without.status) == ("needs-key", 401)
    assert "needs an API key" in without.summary
    assert (with_key.health, with_key.status) == ("ok", 200)
    assert (wrong.health, wrong.status) == ("key-rejected", 401)
    assert "rejected" in wrong.summary
    # Exactly one Authorization header, exactly this value, and only where it was needed.
    assert server.header_values("/api/status", "Authorization") == [
        [],
        ["ApiKey secret"],
        ["ApiKey not-the-key"],
    ]
    assert server.header_values("/", "Authorization") == [[], [], []]


def test_manager_unreachable_408() -> None:
    with servers.serve(servers.BlueskyLike, manager="unreachable") as server:
        result = probe(server.port, bluesky=True)
    assert (result.health, result.status) == ("manager-unreachable", 408)
    assert result.summary == "HTTP server up, RE Manager unreachable"
    assert result.server == "uvicorn"


def test_manager_that_never_answers_times_out() -> None:
    with servers.serve(servers.BlueskyLike, manager="hang") as server:
        result, took = timed(lambda: probe(server.port, bluesky=True, timeout=TIMEOUT))
        assert [path for path, _ in server.requests] == ["/", "/api/status"]
    assert result.health == "manager-unreachable"
    assert "no status in" in result.summary
    # The status request waits longer than the others: the real server needs 2 s to say 408.
    assert STATUS_TIMEOUT * 0.9 <= took < STATUS_TIMEOUT + SLACK


def test_bluesky_found_from_the_owners_command_line() -> None:
    """probe_state() asks /api/status because the listener's process looks like the server."""
    script = str(Path(servers.__file__))
    with Child([sys.executable, script, "bluesky_httpserver", "--api-key", "secret"]) as child:
        port = int(child.read_line())
        state = scan_listening(port, lambda s: any(o.pid == child.pid for o in s.owners))
        (owner,) = state.owners
        evidence = [" ".join((owner.name or "", *owner.cmdline))]
        assert looks_like_bluesky(port, evidence)
        with_key = probe_state(state, api_key="secret")
        without = probe_state(state)
    assert (with_key.host, with_key.health) == ("127.0.0.1", "ok")
    assert "RE Manager idle" in with_key.summary
    assert without.health == "needs-key"


@pytest.mark.parametrize(
    ("port", "evidence", "expected"),
    [
        (60610, [], True),  # the Queue Server's default port, even with nothing known
        (8000, ["python3 /usr/local/bin/start-bluesky-httpserver --port 8000"], True),
        (8000, ["uvicorn bluesky_httpserver.server:app --port 8000"], True),
        (8000, ["python -m Bluesky_HTTPServer"], True),
        (8000, ["pip install bluesky-httpserver"], True),
        (60611, [], False),
        (8000, ["python -m http.server 8000"], False),
        (8000, ["bluesky start-re-manager"], False),
    ],
)
def test_looks_like_bluesky(port: int, evidence: list[str], expected: bool) -> None:
    assert looks_like_bluesky(port, evidence) is expected


# --- not HTTP, no answer, nothing there ---------------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    [servers.SshBannerThenClose, servers.SshBanner, servers.Garbage],
    ids=lambda h: h.__name__,
)
def test_tcp_service_that_is_not_http(handler: type) -> None:
    with servers.serve(handler) as server:
        result, took = timed(lambda: probe(server.port))
        bluesky = probe(server.port, bluesky=True)
    assert (result.health, result.summary) == ("not-http", "answers, but not HTTP")
    assert result.status is None and result.server is None
    assert bluesky.health == "not-http"
    assert took < TIMEOUT + SLACK


def test_server_that_accepts_and_never_answers() -> None:
    with servers.serve(servers.Silent) as server:
        result, took = timed(lambda: probe(server.port, timeout=TIMEOUT))
    assert (result.health, result.summary) == ("no-answer", "no answer within 1 s")
    assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK


def test_nothing_listening_is_connection_refused() -> None:
    port = free_port()
    result, took = timed(lambda: probe(port))
    assert result.health not in ("http", "ok")
    assert (result.health, result.summary) == ("refused", "connection refused")
    assert took < TIMEOUT


def test_a_trickling_answer_is_still_bounded_by_the_timeout() -> None:
    with servers.serve(servers.Trickle, seconds=2.0) as server:
        _, took = timed(lambda: probe(server.port, timeout=0.5))
    assert took < 0.5 + SLACK


# --- which address is probed ------------------------------------------------------------------


def test_probe_state_uses_the_ipv4_loopback_listener() -> None:
    with servers.serve(servers.BlueskyLike) as server:
        state = scan_listening(server.port)
        result = probe_state(state)
        requests = server.requests
    assert [x.address for x in state.listeners] == ["127.0.0.1"]
    assert (result.host, result.health, result.status) == ("127.0.0.1", "ok", 200)
    # No hint in the owner's command line: the public /openapi.json names the server.
    assert [path for path, _ in requests] == ["/", "/openapi.json", "/api/status"]


def test_probe_state_uses_ipv6_loopback_for_a_listener_on_it_only() -> None:
    if not has_ipv6():
        missing_part("no IPv6 loopback (::1) on this machine")
    with servers.serve(servers.BlueskyLike, host="::1") as server:
        state = scan_listening(server.port)
        result = probe_state(state)
        requests = server.requests
    assert [x.address for x in state.listeners] == ["::1"]
    assert (result.host, result.health, result.status) == ("::1", "ok", 200)
    assert [path for path, _ in requests] == ["/", "/openapi.json", "/api/status"]


def test_probe_state_reaches_a_v4_mapped_loopback_listener() -> None:
    if not has_ipv6():
        missing_part("no IPv6 sockets on this machine")
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::ffff:127.0.0.1", 0))
        sock.listen()
        port = int(sock.getsockname()[1])
        state = scan_listening(port)
        result = probe_state(state, timeout=0.3)
    assert [x.address for x in state.listeners] == ["::ffff:127.0.0.1"]
    assert result.health == "no-answer"  # it got there: the socket accepts and never answers


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        (["127.0.0.1"], "127.0.0.1"),
        (["127.5.5.5"], "127.5.5.5"),
        (["0.0.0.0"], "127.0.0.1"),
        (["::1"], "::1"),
        (["::"], "::1"),
        (["::1", "127.0.0.1"], "127.0.0.1"),
        (["192.168.1.10"], None),
        (["fe80::1"], None),
        (["10.0.0.1", "fe80::1"], None),
        ([], None),
    ],
)
def test_loopback_for(addresses: list[str], expected: str | None) -> None:
    assert loopback_for(addresses) == expected


# --- loopback only ----------------------------------------------------------------------------

NOT_LOOPBACK = [
    "example.com",
    "localhost",  # a name: resolving it is already traffic we refuse to depend on
    "10.0.0.1",
    "192.168.1.1",
    "::ffff:10.0.0.1",
    "8.8.8.8",
    "169.254.169.254",
    "0.0.0.0",
    "::",
    "fe80::1",
    "fe80::1%lo",
    "2001:db8::1",
    "[2001:db8::1]",
    "224.0.0.1",
    "255.255.255.255",
    "127.0.0.1.nip.io",
    "2130706433",
    "0x7f000001",
    "127.1",
    "10.0.0.1\n",
    " 127.0.0.1",
    "",
]


class NetworkGuard:
    """Stands in for the socket functions the probe could reach the network with.

    A loopback IP literal is let through (or refused without traffic when `offline`); anything
    else is recorded as a violation and never sent.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, offline: bool = True) -> None:
        self.violations: list[tuple[str, object]] = []
        self.loopback: list[tuple[str, object]] = []
        self.offline = offline
        real_create, real_getaddrinfo = socket.create_connection, socket.getaddrinfo
        real_connect = socket.socket.connect

        def create_connection(address: tuple[str, int], *args: object, **kwargs: object) -> object:
            self._check("create_connection", address[0])
            return real_create(address, *args, **kwargs)  # type: ignore[arg-type]

        def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
            self._check("getaddrinfo", host)
            return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

        def connect(sock: socket.socket, address: object) -> None:
            self._check("connect", address[0] if isinstance(address, tuple) else address)
            real_connect(sock, address)  # type: ignore[arg-type]

        monkeypatch.setattr(socket, "create_connection", create_connection)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)

    def _check(self, what: str, host: object) -> None:
        try:
            loopback = ipaddress.ip_address(str(host)).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            self.violations.append((what, host))
            raise OSError(f"test guard: {what} to {host!r} refused")
        self.loopback.append((what, host))
        if self.offline:
            raise ConnectionRefusedError(f"test guard: {what} to {host!r} allowed, but offline")

    @property
    def loopback_hosts(self) -> set[object]:
        return {host for _, host in self.loopback}


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_other_hosts_are_refused_before_any_traffic(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = NetworkGuard(monkeypatch)
    with pytest.raises(NotLoopback):
        require_loopback(host)
    with pytest.raises(NotLoopback):
        probe(80, host, timeout=0.2)
    with pytest.raises(NotLoopback):
        probe(60610, host, timeout=0.2, api_key=KEY, bluesky=True)
    assert guard.violations == [] and guard.loopback == []


def test_probe_refuses_hosts_that_only_look_like_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """BUG (core/probe.py): require_loopback() checked host.strip("[]"), but the probe then
    connected to `host` as given. "127.0.0.1]" passed the check, and http.client (which only
    strips a matching pair of brackets) handed "127.0.0.1]" to getaddrinfo: a DNS query for a
    name, possibly completed by a search domain, instead of a refusal before any traffic."""
    guard = NetworkGuard(monkeypatch)
    for host in ("127.0.0.1]", "::1]", "[::1", "[127.0.0.1", "]]127.0.0.1"):
        with contextlib.suppress(NotLoopback):
            probe(80, host, timeout=0.2)
    assert guard.violations == []


_HOST_ALPHABET = st.characters(codec="utf-8", exclude_characters="[]")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.text(_HOST_ALPHABET, max_size=40),
        st.text("0123456789abcdef.:%xl ", max_size=40),
    )
)
def test_any_host_is_refused_or_a_loopback_literal(host: str) -> None:
    # A fresh guard per example: hypothesis reuses the function, not a fixture.
    with pytest.MonkeyPatch.context() as monkeypatch:
        guard = NetworkGuard(monkeypatch)
        try:
            probe(80, host, timeout=0.2)
        except NotLoopback:
            assert guard.loopback == []
        else:
            assert ipaddress.ip_address(host).is_loopback
        assert guard.violations == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.5.5", "::1", "[::1]"])
def test_require_loopback_accepts(host: str) -> None:
    require_loopback(host)


def test_probe_reaches_loopback_and_only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = NetworkGuard(monkeypatch, offline=False)
    with servers.serve(servers.Unauthorized) as server:
        result = probe(server.port, "127.0.0.1", timeout=2)
    assert (result.health, result.status, result.title) == ("http", 401, "401 Unauthorized")
    assert guard.violations == [] and guard.loopback_hosts == {"127.0.0.1"}


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.10", "fe80::1", "2001:db8::7"])
def test_probe_state_skips_listeners_not_on_loopback(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = NetworkGuard(monkeypatch)
    family = "ipv6" if ":" in address else "ipv4"
    listener = Listener(8080, "tcp", address, family)  # type: ignore[arg-type]
    result = probe_state(PortState(Port(8080), (listener,)), api_key=KEY)
    assert (result.health, result.host) == ("skipped", "")
    assert address in result.summary and "loopback only" in result.summary
    assert guard.violations == [] and guard.loopback == []


# --- the API key stays secret -----------------------------------------------------------------


def test_api_key_never_appears_in_results() -> None:
    results: list[ProbeResult] = []
    with servers.serve(servers.BlueskyLike, api_key=KEY) as server:
        results += [probe(server.port, bluesky=True, api_key=KEY)]  # accepted
    with servers.serve(servers.BlueskyLike, api_key="other") as server:
        results += [probe(server.port, bluesky=True, api_key=KEY)]  # rejected
    with servers.serve(servers.BlueskyLike, api_key=KEY, manager="unreachable") as server:
        results += [probe(server.port, bluesky=True, api_key=KEY)]
    with servers.serve(servers.Unauthorized) as server:
        results += [probe(server.port, bluesky=True, api_key=KEY)]
    with servers.serve(servers.SshBanner) as server:
        results += [probe(server.port, bluesky=True, api_key=KEY)]
    results += [probe(free_port(), bluesky=True, api_key=KEY)]
    assert [r.health for r in results] == [
        "ok",
        "key-rejected",
        "manager-unreachable",
        "key-rejected",
        "not-http",
        "refused",
    ]
    assert [r for r in results if leaks(r, KEY)] == []


@pytest.mark.parametrize(
    "key", [f"{KEY}ключ", f"{KEY} x", "\x00"], ids=["non-ascii", "space", "nul"]
)
def test_an_unsendable_api_key_gives_a_result_without_the_key(key: str) -> None:
    with servers.serve(servers.BlueskyLike, api_key=KEY) as server:
        result = probe(server.port, bluesky=True, api_key=key)
    assert result.health == "needs-key"
    assert "cannot be sent" in result.summary
    assert not leaks(result, KEY)


def test_a_pasted_key_with_a_trailing_newline_still_works() -> None:
    with servers.serve(servers.BlueskyLike, api_key=KEY) as server:
        result = probe(server.port, bluesky=True, api_key=f"  {KEY}\n")
    assert result.health == "ok"
