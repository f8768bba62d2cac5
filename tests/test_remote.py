"""Remote entries: a service on another machine, watched from here.

The other machine is a network namespace behind a veth pair (tests/netns.py) with real servers
in it: http.server, a plain TCP listener, an HTTPS server with a certificate from a CA made here
(openssl), and the real Bluesky stack (Redis, RE Manager, bluesky-httpserver) bound to the
namespace's address. Needs root (skipped without, a failure under CI=true). No packet leaves
this machine: the namespace has no route beyond the pair.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.netns import OtherMachine, other_machine, stop
from tests.support import free_port, missing_part
from trayapp.core import config as cfg
from trayapp.core.apikey import KeyChoice
from trayapp.core.events import Event
from trayapp.core.model import Port
from trayapp.core.remote import (
    RemoteCheck,
    RemoteSettings,
    RemoteSpecError,
    RemoteTarget,
    check_remote,
    looks_remote,
    parse_remote,
    reach,
)
from trayapp.core.remote_monitor import RemoteEntry, RemoteMonitor, port_of
from trayapp.core.remote_report import key_for, suggested_target

# Parsing, wording and Settings run on every OS; the other machine needs Linux namespaces.
NETNS = pytest.mark.linux("network namespaces and ip netns are Linux only")

HTTP_PORT, TCP_PORT, TLS_PORT, CLOSED_PORT = 8000, 7000, 8443, 7001
TCP_SERVER = (
    "import socket,sys,time\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()\n"
    "while True:\n    c,_=s.accept(); c.close()\n"
)
TLS_SERVER = (
    "import http.server,ssl,sys\n"
    "srv=http.server.HTTPServer((sys.argv[1], int(sys.argv[2])),"
    " http.server.SimpleHTTPRequestHandler)\n"
    "ctx=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[3], sys.argv[4])\n"
    "srv.socket=ctx.wrap_socket(srv.socket, server_side=True)\n"
    "srv.serve_forever()\n"
)


# -- what people type ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target", "title"),
    [
        ("xf11id-srv1:60610", RemoteTarget("xf11id-srv1", 60610), "xf11id-srv1:60610"),
        ("10.0.0.5:60610", RemoteTarget("10.0.0.5", 60610), "10.0.0.5:60610"),
        ("[fd00::5]:60610", RemoteTarget("fd00::5", 60610), "[fd00::5]:60610"),
        ("http://Host:60610/", RemoteTarget("host", 60610, "http"), "http://host:60610"),
        (
            "https://host/qserver",
            RemoteTarget("host", 443, "https", "/qserver"),
            "https://host/qserver",
        ),
        (
            "https://[fd00::5]:8443",
            RemoteTarget("fd00::5", 8443, "https"),
            "https://[fd00::5]:8443",
        ),
    ],
)
def test_remote_entries_as_typed(text: str, target: RemoteTarget, title: str) -> None:
    assert looks_remote(text)
    parsed = parse_remote(text)
    assert parsed == target
    assert parsed.title == title
    assert parse_remote(parsed.title) == parsed  # what is saved reads back the same


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("host:", "bad port"),
        ("host:0", "bad port"),
        ("host:70000", "bad port"),
        ("host:60610x", "bad port"),
        ("fd00::5:60610", "IPv6 address in brackets"),
        ("[nothost]:60610", "not an IPv6 address"),
        ("bad_host!:60610", "not a host name"),
        ("ftp://host:21", "only http:// and https://"),
        ("http://user:pw@host:60610", "user name or password"),
        ("http://host:60610/?x=1", "with ? or #"),
        ("http://:60610", "no host"),
        ("host name:60610", "not a host and port"),
        ("999.1.1.1:80", "not an IP address"),
    ],
)
def test_bad_remote_entries_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(RemoteSpecError) as caught:
        parse_remote(text)
    message = str(caught.value)
    assert says in message and "\n" not in message


def test_local_specs_are_not_taken_for_hosts() -> None:
    for text in ("60610", "60610/tcp", "8000-8010", "5353/udp"):
        assert not looks_remote(text)


def test_a_remote_entrys_history_is_its_own_and_old_logs_still_load() -> None:
    """Periods are keyed by the entry (host, port), apart from this machine's port with the
    same number; a line written before remote entries (no "host") is this machine's."""
    from trayapp.core import timeline

    local = Event.from_json(
        {"time": "2026-11-29T08:00:00+00:00", "port": 60610, "event": "started", "pid": 7}
    )
    assert local.port == Port(60610)
    there = port_of(parse_remote("xf11id-srv1:60610"))
    began = Event(local.time + 1, there, "watch-began", code="start", listening=False)
    events = [local, began, Event(local.time + 60, there, "started", addresses=("10.0.0.5",))]
    again = [Event.from_json(json.loads(json.dumps(e.to_json()))) for e in events]
    assert again == events
    spans = timeline.periods(again)
    assert [s.state for s in spans[Port(60610)]] == ["up"]
    assert [s.state for s in spans[there]] == ["down", "up"]
    assert str(there) == "xf11id-srv1:60610"


def test_remote_entries_in_config_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "remotes": [
                    {
                        "target": "https://beamline.example/qserver",
                        "label": "QS",
                        "api_key": "k3y",
                        "ca_file": "/etc/lab-ca.pem",
                        "interval": 15,
                    },
                    {"target": "beamline:60610", "allow_plain_key": True, "api_key": "a b"},
                    {"target": "beamline:60610"},
                    {"target": "ftp://x"},
                    {"target": 5},
                ]
            }
        )
    )
    result = cfg.load(path)
    remotes = result.config.remotes
    assert [r.target.title for r in remotes] == [
        "https://beamline.example/qserver",
        "beamline:60610",
    ]
    first, second = remotes
    assert (first.label, first.api_key, first.ca_file, first.interval) == (
        "QS",
        "k3y",
        "/etc/lab-ca.pem",
        15.0,
    )
    assert second.allow_plain_key and second.api_key is None
    text = " ".join(result.problems)
    assert "API key of beamline:60610 dropped" in text
    assert "a duplicate of beamline:60610" in text
    assert "only http:// and https://" in text and "'target' must be text" in text
    # The repaired file was written back; it loads clean and keeps every valid part.
    again = cfg.load(path)
    assert again.problems == [] and again.config.remotes == remotes


def test_the_bluesky_environment_is_suggested_and_its_key_goes_only_there() -> None:
    env = {
        "QSERVER_HTTP_SERVER_URI": "http://xf11id-srv1:60610",
        "QSERVER_HTTP_SERVER_API_KEY": "envkey",
    }
    target = suggested_target(env)
    assert target == RemoteTarget("xf11id-srv1", 60610, "http")
    assert key_for(target, None, env).key == "envkey"
    assert key_for(RemoteTarget("elsewhere", 60610, "http"), None, env).key is None
    assert key_for(RemoteTarget("elsewhere", 60610), "own", env).key == "own"
    assert suggested_target({"QSERVER_HTTP_SERVER_URI": "http://localhost:60610"}) is None
    assert suggested_target({"QSERVER_HTTP_SERVER_URI": "not a url"}) is None


def test_a_key_over_plain_http_needs_the_users_agreement() -> None:
    key = KeyChoice("k3y", "Settings")
    plain = RemoteTarget("beamline", 60610, "http")
    held, why = RemoteSettings(key).key_for(plain)
    assert held.key is None and why is not None and "unencrypted" in why
    assert RemoteSettings(key, allow_plain_key=True).key_for(plain)[0].key == "k3y"
    assert RemoteSettings(key).key_for(RemoteTarget("beamline", 443, "https"))[0].key == "k3y"
    assert RemoteSettings(key).key_for(RemoteTarget("127.0.0.1", 60610, "http"))[0].key == "k3y"


def test_a_name_under_invalid_is_not_found_without_asking_dns() -> None:
    started = time.monotonic()
    result = reach(parse_remote("beamline.invalid:60610"))
    assert not result.up and result.code == "name-not-found"
    assert result.text == "name not found: beamline.invalid"
    assert time.monotonic() - started < 0.5


# -- on the other machine --------------------------------------------------------------------


def portwatch(
    *args: str, home: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("QSERVER_")},
            "PORTWATCH_HOME": str(home),
            **(env or {}),
        },
    )


def _make_ca(folder: Path, address: str) -> tuple[Path, Path, Path]:
    if shutil.which("openssl") is None:
        missing_part("needs openssl (Debian package openssl)")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60)

    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem")
    )
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=Port Watch test lab CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/CN={address}",
    )
    ext = folder / "san.ext"
    ext.write_text(f"subjectAltName=IP:{address}\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


class Lab:
    def __init__(self, machine: OtherMachine, folder: Path, ca: Path, tcp: subprocess.Popen[bytes]):
        self.machine = machine
        self.folder = folder
        self.ca = ca
        self.tcp = tcp

    @property
    def address(self) -> str:
        return self.machine.address


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("lab")
    with other_machine() as machine:
        address = machine.address
        ca, cert, key = _make_ca(folder, address)
        site = folder / "site"
        site.mkdir()
        (site / "index.html").write_text("<title>Beamline notes</title>")
        machine.run(
            [sys.executable, "-m", "http.server", "--bind", address, str(HTTP_PORT)],
            folder / "http.log",
            cwd=site,
        )
        tcp = machine.run(
            [sys.executable, "-c", TCP_SERVER, address, str(TCP_PORT)], folder / "tcp.log"
        )
        machine.run(
            [sys.executable, "-c", TLS_SERVER, address, str(TLS_PORT), str(cert), str(key)],
            folder / "tls.log",
            cwd=site,
        )
        for port in (HTTP_PORT, TCP_PORT, TLS_PORT):
            machine.wait_listening(port)
        yield Lab(machine, folder, ca, tcp)


def tcp_listener(lab: Lab, port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A plain TCP listener over there, listening when this returns; stop it by its pid."""
    listener = lab.machine.run(
        [sys.executable, "-c", TCP_SERVER, lab.address, str(port)], folder / f"tcp{port}.log"
    )
    lab.machine.wait_listening(port)
    return listener


@NETNS
def test_up_refused_and_its_words(lab: Lab) -> None:
    up = check_remote(parse_remote(f"http://{lab.address}:{HTTP_PORT}"))
    assert up.up and up.reach.address == lab.address
    assert up.result is not None and up.result.health == "http"
    assert up.result.title == "Beamline notes" and up.verdict == "healthy"
    plain = check_remote(parse_remote(f"{lab.address}:{TCP_PORT}"))
    assert plain.up and plain.result is None and plain.verdict == "unchecked"
    refused = check_remote(parse_remote(f"{lab.address}:{CLOSED_PORT}"))
    assert not refused.up and refused.reach.code == "refused"
    assert refused.line == f"{lab.address}:{CLOSED_PORT}: refused: nothing listens there"


@NETNS
def test_black_holed_host_is_said_so_within_the_timeout(lab: Lab) -> None:
    lab.machine.black_hole()
    try:
        started = time.monotonic()
        result = reach(parse_remote(f"{lab.address}:{HTTP_PORT}"))
        took = time.monotonic() - started
    finally:
        lab.machine.open_again()
    assert not result.up and result.code == "timeout"
    assert result.text == "no answer in 2 s: host down or a firewall drops it"
    assert 1.8 <= took < 3.0
    assert reach(parse_remote(f"{lab.address}:{HTTP_PORT}")).up  # open again: answers again


@NETNS
def test_tls_with_a_lab_ca_is_trusted_only_when_given(lab: Lab) -> None:
    target = parse_remote(f"https://{lab.address}:{TLS_PORT}")
    untrusted = check_remote(target)
    assert untrusted.up and untrusted.result is not None
    assert untrusted.result.verdict == "unhealthy"
    assert untrusted.result.summary.startswith("certificate not trusted")
    trusted = check_remote(target, RemoteSettings(ca_file=str(lab.ca)))
    assert trusted.result is not None and trusted.result.health == "http", trusted.line
    assert trusted.result.title == "Beamline notes"
    wrong = check_remote(target, RemoteSettings(ca_file=str(lab.folder / "nothing.pem")))
    assert wrong.result is not None and "does not exist" in wrong.result.summary


@NETNS
def test_cli_check_says_where_the_process_is(lab: Lab, tmp_path: Path) -> None:
    spec = f"{lab.address}:{HTTP_PORT}"
    result = portwatch("check", spec, f"{lab.address}:{CLOSED_PORT}", home=tmp_path)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert f"{spec}\n  listening (on {lab.address})" in out
    assert f"{lab.address}:{CLOSED_PORT}\n  down: refused: nothing listens there" in out
    assert "The process is on another machine" in out
    assert f"ss -tlnp 'sport = :{HTTP_PORT}'" in out
    assert "Port 8000: User Ports (registered), ports 1024-49151." in out
    assert "ephemeral" not in out.lower()  # this machine's range says nothing about that one
    as_json = json.loads(portwatch("check", "--json", spec, home=tmp_path).stdout)
    assert as_json[0]["state"] == "listening" and as_json[0]["listeners"] is None
    assert "os_ephemeral" not in as_json[0]["range"]
    bad = portwatch("check", "host:99999", home=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "bad port" in bad.stderr
    missing = portwatch("check", "beamline.invalid:60610", home=tmp_path)
    assert missing.returncode == 1 and "down: name not found: beamline.invalid" in missing.stdout


@NETNS
def test_cli_check_uses_the_entrys_ca_file_from_settings(lab: Lab, tmp_path: Path) -> None:
    spec = f"https://{lab.address}:{TLS_PORT}"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(
        json.dumps({"remotes": [{"target": spec, "ca_file": str(lab.ca)}]})
    )
    result = portwatch("check", spec, home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "health: healthy: HTTP 200" in result.stdout


@NETNS
def test_down_and_up_again_are_events_and_a_dead_host_delays_no_other(
    lab: Lab, tmp_path: Path
) -> None:
    machine = lab.machine
    log = tmp_path / "tcp2.log"
    listener = machine.run([sys.executable, "-c", TCP_SERVER, lab.address, "7002"], log)
    machine.wait_listening(7002)
    watched = parse_remote(f"{lab.address}:7002")
    # An address on the pair's subnet that no machine has: a host that is down (no ARP
    # answer), so every check of it takes its whole 2 s.
    dead = parse_remote(f"{lab.machine.gateway.rsplit('.', 1)[0]}.99:{HTTP_PORT}")
    seen: list[tuple[float, str, list[str]]] = []
    lock = threading.Lock()

    def on_check(check: object, events: list[object]) -> None:
        with lock:
            seen.append(
                (time.monotonic(), str(check.target), [e.kind for e in events])  # type: ignore[attr-defined]
            )

    try:
        monitor = RemoteMonitor(
            [RemoteEntry(watched, 0.2, RemoteSettings()), RemoteEntry(dead, 0.2, RemoteSettings())],
            on_check,  # type: ignore[arg-type]
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with lock:
                    if any(t == str(watched) for _when, t, _kinds in seen):
                        break
                time.sleep(0.05)
            stop(listener)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with lock:
                    if any("stopped" in kinds for _w, t, kinds in seen if t == str(watched)):
                        break
                time.sleep(0.05)
            time.sleep(2.5)
        finally:
            monitor.close()
    finally:
        stop(listener)
    ours = [(when, kinds) for when, t, kinds in seen if t == str(watched)]
    theirs = [when for when, t, _kinds in seen if t == str(dead)]
    assert ours[0][1] == ["watch-began", "started"]
    assert ["stopped"] in [kinds for _w, kinds in ours]
    # Many checks of the live entry while each check of the dead one took 2 s.
    assert len(ours) >= 4 * max(1, len(theirs)), (len(ours), len(theirs))
    assert monitor.last[watched].reach.text == "refused: nothing listens there"
    assert monitor.last[dead].reach.text == "no answer in 2 s: host down or a firewall drops it"
    assert port_of(watched).host == str(watched)


# -- the real Bluesky Queue Server over there ------------------------------------------------


@pytest.fixture(scope="module")
def remote_bluesky(lab: Lab) -> Iterator[object]:
    from tests.bluesky_stack import BlueskyStack, missing

    reason = missing()
    if reason:
        missing_part(reason)
    with BlueskyStack(http_port=60610, host=lab.address, netns=lab.machine.name) as stack:
        stack.wait_status("the RE Manager to be idle", lambda s: s["manager_state"] == "idle")
        yield stack


@NETNS
def test_remote_bluesky_key_only_after_agreeing_to_plain_http(
    lab: Lab, remote_bluesky: object, tmp_path: Path
) -> None:
    from tests.bluesky_stack import API_KEY

    target = parse_remote(f"{lab.address}:60610")
    key = KeyChoice(API_KEY, "Settings")
    held = check_remote(target, RemoteSettings(key))
    assert held.up and held.result is not None and held.result.health == "needs-key"
    assert "not sent over plain http://" in held.result.summary
    agreed = check_remote(target, RemoteSettings(key, allow_plain_key=True))
    assert agreed.result is not None and agreed.result.health == "ok", agreed.line
    assert agreed.result.queue is not None and agreed.result.queue.manager_state == "idle"

    config = tmp_path / "config"
    config.mkdir()
    entry = {"target": str(target), "api_key": API_KEY}
    (config / "config.json").write_text(json.dumps({"remotes": [entry]}))
    waited = portwatch("wait", str(target), "--healthy", "--timeout", "4", home=tmp_path)
    assert waited.returncode == 1 and "not sent over plain http://" in waited.stderr
    (config / "config.json").write_text(
        json.dumps({"remotes": [{**entry, "allow_plain_key": True}]})
    )
    waited = portwatch("wait", str(target), "--healthy", "--timeout", "20", home=tmp_path)
    assert waited.returncode == 0, waited.stderr
    checked = portwatch("check", str(target), home=tmp_path)
    assert "health: healthy: RE Manager idle" in checked.stdout, checked.stdout
    assert API_KEY not in checked.stdout + checked.stderr


@NETNS
def test_watch_a_remote_bluesky_server_through_an_outage(
    lab: Lab, remote_bluesky: object, tmp_path: Path
) -> None:
    from tests.bluesky_stack import API_KEY

    target = f"{lab.address}:60610"
    config = tmp_path / "config"
    config.mkdir()
    entry = {"target": target, "api_key": API_KEY, "allow_plain_key": True}
    (config / "config.json").write_text(json.dumps({"remotes": [entry]}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "watch", target, "--health-interval", "2", "--log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PORTWATCH_HOME": str(tmp_path)},
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        _wait_for_line(lines, "now " + target + ": healthy: RE Manager idle", 20)
        lab.machine.black_hole()
        try:
            _wait_for_line(lines, "stopped: no answer in 2 s: host down or a firewall drops it", 20)
        finally:
            lab.machine.open_again()
        _wait_for_line(lines, f"{target}  started on {lab.address}", 20)
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    events = [
        json.loads(line) for line in (tmp_path / "data" / "events.jsonl").read_text().splitlines()
    ]
    assert [e["event"] for e in events if e.get("host") == target][:4] == [
        "watch-began",
        "started",
        "stopped",
        "started",
    ]
    assert API_KEY not in (tmp_path / "data" / "events.jsonl").read_text()
    history = portwatch("history", "--json", target, home=tmp_path)
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert [(r["host"], r["state"]) for r in rows][:3] == [
        (target, "up"),
        (target, "down"),
        (target, "up"),
    ]


@NETNS
def test_a_remote_re_manager_gone_and_back_is_told_like_a_local_one(
    lab: Lab, remote_bluesky: object
) -> None:
    """The last user of the module's stack: its RE Manager is killed and started again."""
    from tests.bluesky_stack import API_KEY, BlueskyStack
    from trayapp.ui.controller import remote_notifications

    stack = remote_bluesky
    assert isinstance(stack, BlueskyStack)
    target = parse_remote(f"{lab.address}:60610")
    settings = RemoteSettings(KeyChoice(API_KEY, "Settings"), allow_plain_key=True)
    seen: list[tuple[RemoteCheck, list[Event]]] = []
    lock = threading.Lock()

    def on_check(check: RemoteCheck, events: list[Event]) -> None:
        with lock:
            seen.append((check, events))

    def first(kind: str) -> tuple[RemoteCheck, list[Event]] | None:
        with lock:
            return next((s for s in seen if kind in [e.kind for e in s[1]]), None)

    def wait(kind: str, timeout: float) -> tuple[RemoteCheck, list[Event]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = first(kind)
            if found is not None:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no {kind!r} event in {timeout:g} s: {seen!r}")

    monitor = RemoteMonitor([RemoteEntry(target, 1.0, settings)], on_check)
    try:
        started = wait("started", 15)
        assert started[0].result is not None and started[0].result.health == "ok"
        stack.kill_manager()
        gone = wait("unhealthy", 20)
        stack.start_manager()
        back = wait("healthy", 60)
    finally:
        monitor.close()
    assert [e.code for e in gone[1]] == ["manager-unreachable"]
    [note] = remote_notifications(*gone)
    assert note.kind == "unhealthy" and note.port == port_of(target)
    assert note.detail == "unhealthy: HTTP server up, RE Manager unreachable"
    [note] = remote_notifications(*back)
    assert note.detail is not None and note.detail.startswith("healthy again: RE Manager idle")


def _wait_for_line(lines: list[str], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in list(lines)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no line with {text!r} in {timeout:g} s; got {lines!r}")


# -- the tray ----------------------------------------------------------------------------------


@NETNS
def test_tray_shows_remote_entries_in_menu_icon_window_and_notifications(
    qtbot: object, lab: Lab, portwatch_home: Path, tmp_path: Path
) -> None:
    from pytestqt.qtbot import QtBot

    from trayapp.core.history import EventLog
    from trayapp.platforms.scanners import create_scanner
    from trayapp.ui.controller import Controller
    from trayapp.ui.remote_window import RemoteWindow
    from trayapp.ui.tray import Tray

    assert isinstance(qtbot, QtBot)
    listener = tcp_listener(lab, 7003, tmp_path)
    plain = parse_remote(f"{lab.address}:7003")
    web = parse_remote(f"http://{lab.address}:{HTTP_PORT}")
    config = cfg.Config(
        ports=(),
        remotes=(
            cfg.WatchedRemote(plain, interval=2.0),
            cfg.WatchedRemote(web, label="Notes", interval=2.0),
        ),
    )
    log = EventLog(tmp_path / "events.jsonl")
    controller = Controller(portwatch_home / "config.json", config, create_scanner, event_log=log)
    controller.start()
    try:
        tray = Tray(controller)
        sent: list[tuple[str, str]] = []
        tray.send_notification = lambda title, body, _r: sent.append((title, body)) or len(sent)
        plain_port, web_port = port_of(plain), port_of(web)
        # Both checked (an entry not checked yet does not count for the icon), and all up.
        qtbot.waitUntil(
            lambda: len(controller.remote_checks) == 2 and tray.icon_state == "all", timeout=15000
        )
        assert tray.port_line(plain_port) == f"{plain}: listening on {lab.address}"
        assert tray.port_line(web_port) == (f"{web} Notes: listening on {lab.address} [HTTP 200]")
        assert f"{web} Notes: listening on {lab.address} (HTTP 200, SimpleHTTP" in tray.tooltip()
        tray.menu.aboutToShow.emit()
        texts = [action.text() for action in tray.menu.actions()]
        assert tray.port_line(plain_port) in texts and tray.port_line(web_port) in texts
        opened: list[object] = []
        tray.open_port.connect(opened.append)
        tray.menu.actions()[texts.index(tray.port_line(web_port))].trigger()
        assert opened == [web_port]
        window = RemoteWindow(controller, web_port)
        text = window.details.toPlainText()
        assert "The process is on another machine" in text
        assert f"ss -tlnp 'sport = :{HTTP_PORT}'" in text
        assert "ephemeral" not in text.lower()
        window.close()
        assert sorted(sent) == sorted(
            [
                (f"{plain}", f"now listening on {lab.address}"),
                (f"{web} Notes", f"now listening on {lab.address}"),
            ]
        )
        stop(listener)
        qtbot.waitUntil(lambda: tray.icon_state == "some", timeout=15000)
        assert tray.port_line(plain_port) == f"{plain}: refused: nothing listens there"
        # Within 10 s of its start notification: folded by the flood limit, said at its end.
        qtbot.waitUntil(lambda: len(sent) == 3, timeout=15000)
        assert sent[2] == (f"{plain}", "down: refused: nothing listens there")
        # Paused: no entry is checked, and the lines say so; resumed: checked again at once.
        controller.set_paused(True)
        assert tray.port_line(web_port) == f"{web} Notes: paused"
        controller.remote_checks.clear()
        qtbot.wait(2500)  # longer than the entries' interval
        assert controller.remote_checks == {}
        controller.set_paused(False)
        qtbot.waitUntil(lambda: web_port in controller.remote_checks, timeout=5000)
    finally:
        controller.stop()
        stop(listener)
    events = [(e.port.host, e.kind) for e in log.read().events]
    assert (str(plain), "stopped") in events and (str(web), "started") in events


def test_settings_offer_the_bluesky_server_and_say_the_key_rules(
    qtbot: object, portwatch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QDialogButtonBox, QLineEdit

    from trayapp.platforms.autostart import XdgAutostart
    from trayapp.platforms.scanners import create_scanner
    from trayapp.ui import remote_settings as rs
    from trayapp.ui.controller import Controller
    from trayapp.ui.settings_dialog import SettingsDialog

    monkeypatch.setenv("QSERVER_HTTP_SERVER_URI", "http://xf11id-srv1:60610")
    path = portwatch_home / "config" / "config.json"
    controller = Controller(path, cfg.Config(ports=()), create_scanner)
    dialog = SettingsDialog(controller, XdgAutostart(config_home=tmp_path / "xdg"))
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    table = dialog.remotes.table
    assert table.rowCount() == 0  # offered, not added by itself
    button = dialog.remotes.suggest_button
    assert not button.isHidden()
    assert button.text() == "Add http://xf11id-srv1:60610 (from QSERVER_HTTP_SERVER_URI)"
    assert "unencrypted" in dialog.remotes.note.text()
    button.click()
    assert table.item(0, rs.TARGET).text() == "http://xf11id-srv1:60610"
    assert button.isHidden()
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    dialog.remotes.add_row(None, "xf11id-srv1:99999")
    assert "Host row 2" in dialog.error.text() and "bad port" in dialog.error.text()
    assert not save.isEnabled()
    table.item(1, rs.TARGET).setText("https://xf11id-srv1/qserver")
    table.item(1, rs.CA).setText(str(tmp_path / "missing.pem"))
    assert "does not exist" in dialog.error.text() and not save.isEnabled()
    table.item(1, rs.CA).setText("")
    key = table.cellWidget(0, rs.KEY)
    assert isinstance(key, QLineEdit)
    key.setText("k3y")
    table.item(0, rs.PLAIN).setCheckState(Qt.CheckState.Checked)
    assert save.isEnabled(), dialog.error.text()
    save.click()
    saved = cfg.load(path).config
    assert [(r.target.title, r.api_key, r.allow_plain_key) for r in saved.remotes] == [
        ("http://xf11id-srv1:60610", "k3y", True),
        ("https://xf11id-srv1/qserver", None, False),
    ]
    assert controller.config.remotes == saved.remotes


@NETNS
def test_overview_lists_remote_entries_with_their_health_and_failures_in_words(
    qtbot: object, lab: Lab, portwatch_home: Path, tmp_path: Path
) -> None:
    """Each way of failing, in the words the issue asks for, in the overview, the menu, the
    port window and the notifications; a working entry's health like a local row's."""
    from pytestqt.qtbot import QtBot

    from trayapp.platforms.scanners import create_scanner
    from trayapp.ui.controller import Controller
    from trayapp.ui.overview import OverviewWindow
    from trayapp.ui.remote_window import RemoteWindow
    from trayapp.ui.tray import Tray

    assert isinstance(qtbot, QtBot)
    web = parse_remote(f"http://{lab.address}:{HTTP_PORT}")
    plain = parse_remote(f"{lab.address}:{TCP_PORT}")
    refused = parse_remote(f"{lab.address}:{CLOSED_PORT}")
    unknown = parse_remote("beamline.invalid:60610")
    # An address on the pair's subnet that no machine has: no answer within the 2 s.
    dead = parse_remote(f"{lab.machine.gateway.rsplit('.', 1)[0]}.99:{TCP_PORT}")
    config = cfg.Config(
        ports=(),
        remotes=tuple(
            cfg.WatchedRemote(t, label="Notes" if t == web else "", interval=2.0)
            for t in (web, plain, refused, unknown, dead)
        ),
    )
    controller = Controller(portwatch_home / "config.json", config, create_scanner)
    controller.start()
    try:
        tray = Tray(controller)
        sent: list[tuple[str, str]] = []
        tray.send_notification = lambda title, body, _r: sent.append((title, body)) or len(sent)
        overview = OverviewWindow(controller)
        qtbot.addWidget(overview)
        overview.show()
        qtbot.waitUntil(lambda: len(controller.remote_checks) == 5, timeout=15000)
        overview.refresh()
        rows = {
            overview.table.topLevelItem(i).text(0): [
                overview.table.topLevelItem(i).text(c) for c in range(5)
            ]
            for i in range(overview.table.topLevelItemCount())
        }
        assert rows[str(web)] == [
            str(web),
            "Notes",
            f"listening on {lab.address}",
            "HTTP 200",
            lab.address,
        ]
        assert rows[str(plain)][2:] == [
            f"listening on {lab.address}",
            "no health check",
            lab.address,
        ]
        label = rows[str(plain)][1]
        assert label == (controller.label(port_of(plain)))
        words = {
            refused: "refused: nothing listens there",
            unknown: "name not found: beamline.invalid",
            dead: "no answer in 2 s: host down or a firewall drops it",
        }
        for target, text in words.items():
            assert rows[str(target)][2:] == [text, "", ""], rows[str(target)]
            line = tray.port_line(port_of(target))
            assert line == f"{controller.title(port_of(target))}: {text}"
            window = RemoteWindow(controller, port_of(target))
            assert f"down: {text}" in window.details.toPlainText()
            window.close()
        # Opening a row opens that entry, as a local row does.
        opened: list[object] = []
        overview.open_port.connect(opened.append)
        item = next(
            overview.table.topLevelItem(i)
            for i in range(overview.table.topLevelItemCount())
            if overview.table.topLevelItem(i).text(0) == str(web)
        )
        overview.table.itemActivated.emit(item, 0)
        assert opened == [port_of(web)]
        controller.set_paused(True)
        overview.refresh()
        assert overview.table.topLevelItem(0).text(2) == "paused"
        controller.set_paused(False)
    finally:
        controller.stop()
    # The first look tells what is up (a first look at a down entry is no change to notify).
    assert (f"{web} Notes", f"now listening on {lab.address}") in sent


COUNTING_SERVER = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()\n"
    "while True:\n"
    "    c,_=s.accept(); c.close()\n"
    "    with open(sys.argv[3], 'a') as f: f.write('x\\n')\n"
)


@NETNS
@pytest.mark.parametrize(
    ("entry_interval", "flags", "checks_in_5s"),
    [
        (2, [], (3, 4)),  # the entry's own interval: at 0, 2 and 4 s
        (30, ["--health-interval", "2"], (3, 4)),  # given: it overrides the entry's
        (30, [], (1, 1)),  # not given: the entry's 30 s, not the 10 s default
    ],
)
def test_watch_keeps_the_entrys_interval_unless_one_is_given(
    lab: Lab, tmp_path: Path, entry_interval: int, flags: list[str], checks_in_5s: tuple[int, int]
) -> None:
    port = 7010 + entry_interval + len(flags)
    accepts = tmp_path / "accepts"
    accepts.touch()
    server = lab.machine.run(
        [sys.executable, "-c", COUNTING_SERVER, lab.address, str(port), str(accepts)],
        tmp_path / "count.log",
    )
    try:
        lab.machine.wait_listening(port)  # one connect of ours: counted, then cleared
        time.sleep(0.2)
        accepts.write_text("")
        target = f"{lab.address}:{port}"
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.json").write_text(
            json.dumps({"remotes": [{"target": target, "interval": entry_interval}]})
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "trayapp", "watch", target, *flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PORTWATCH_HOME": str(tmp_path)},
        )
        try:
            deadline = time.monotonic() + 20
            while not accepts.read_text() and time.monotonic() < deadline:
                time.sleep(0.02)
            first = time.monotonic()
            time.sleep(max(0.0, first + 4.9 - time.monotonic()))
        finally:
            proc.terminate()
            proc.wait(10)
        count = len(accepts.read_text().splitlines())
    finally:
        stop(server)
    low, high = checks_in_5s
    assert low <= count <= high, (count, entry_interval, flags)


def test_only_the_other_machine_tests_are_linux_only() -> None:
    """Parsing, wording, config and Settings run on every OS (CI's Windows and macOS jobs);
    only tests that build the other machine (a namespace) carry the Linux marker."""
    assert "pytestmark" not in globals()  # no marker for the whole module
    tests = {name: fn for name, fn in globals().items() if name.startswith("test_")}
    assert len(tests) > 10
    for name, fn in tests.items():
        needs_namespace = "lab" in inspect.signature(fn).parameters
        linux = any(mark.name == "linux" for mark in getattr(fn, "pytestmark", []))
        assert linux == needs_namespace, name


ERROR_SERVER = (
    "import http.server,sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(503); self.send_header('Content-Length','0'); self.end_headers()\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()\n"
)
ERROR_PORT = 8503


@pytest.fixture(scope="module")
def failing_web(lab: Lab) -> str:
    """An HTTP server over there that answers 503: up, but unhealthy."""
    lab.machine.run(
        [sys.executable, "-c", ERROR_SERVER, lab.address, str(ERROR_PORT)],
        lab.folder / "error.log",
    )
    lab.machine.wait_listening(ERROR_PORT)
    return f"http://{lab.address}:{ERROR_PORT}"


@NETNS
def test_nagios_checks_remote_entries_like_local_ports(
    lab: Lab, failing_web: str, tmp_path: Path
) -> None:
    from tests.test_nagios import check_grammar

    web, plain = f"http://{lab.address}:{HTTP_PORT}", f"{lab.address}:{TCP_PORT}"
    refused = f"{lab.address}:{CLOSED_PORT}"
    ok = portwatch("check", "--nagios", web, plain, home=tmp_path)
    text, perf = check_grammar(ok)
    assert ok.returncode == 0, ok.stdout
    assert text.startswith(f"OK - {web} listening (on {lab.address})")
    assert f"'listening_{web}'=1;;1:;0;1" in perf and f"'healthy_{web}'=1;1:;;0;1" in perf
    assert f"'listening_{plain}'=1;;1:;0;1" in perf
    assert not any(item.startswith(f"'healthy_{plain}'") for item in perf)  # no health check
    for name in (web, plain):  # the response time, in C-locale seconds
        [took] = [item for item in perf if item.startswith(f"'time_{name}'")]
        assert re.fullmatch(rf"'time_{re.escape(name)}'=[0-9]+\.[0-9]{{6}}s;;;0;", took), took
    [detail] = [line for line in ok.stdout.splitlines() if line.startswith(f"[OK] {web} ")]
    assert "; health: HTTP 200" in detail, detail

    sick = portwatch("check", "--nagios", failing_web, plain, home=tmp_path)
    text, perf = check_grammar(sick)
    assert sick.returncode == 1, sick.stdout
    assert text.startswith(f"WARNING - {failing_web} listening (on {lab.address}), unhealthy:")
    assert f"'healthy_{failing_web}'=0;1:;;0;1" in perf and text.endswith("; 1 OK")

    for spec, words in (
        (refused, "refused: nothing listens there"),
        ("beamline.invalid:60610", "name not found: beamline.invalid"),
    ):
        down = portwatch("check", "--nagios", spec, plain, home=tmp_path)
        text, perf = check_grammar(down)
        assert down.returncode == 2, down.stdout
        assert text == f"CRITICAL - {spec} down: {words}; 1 OK"
        assert f"'listening_{spec}'=0;;1:;0;1" in perf

    # Expected free: a refusal proves it; a host that does not answer proves nothing.
    free = portwatch("check", "--nagios", "--expect", "free", refused, home=tmp_path)
    assert free.returncode == 0 and free.stdout.startswith(f"OK - {refused} free"), free.stdout
    busy = portwatch("check", "--nagios", "--expect", "free", plain, home=tmp_path)
    assert busy.returncode == 2 and "in use" in busy.stdout
    unknown = portwatch("check", "--nagios", "--expect", "free", "x.invalid:1", home=tmp_path)
    assert unknown.returncode == 3 and "cannot tell whether it is free" in unknown.stdout
    bad = portwatch("check", "--nagios", f"{lab.address}:99999", home=tmp_path)
    assert bad.returncode == 3 and bad.stdout.startswith("UNKNOWN - ") and "bad port" in bad.stdout


@NETNS
def test_metrics_carry_remote_entries_with_a_host_label(
    lab: Lab, failing_web: str, tmp_path: Path
) -> None:
    from tests.monitoring_support import promtool_check_metrics, value

    web, refused = f"http://{lab.address}:{HTTP_PORT}", f"{lab.address}:{CLOSED_PORT}"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(
        json.dumps(
            {
                "ports": [{"port": 60610}],
                "remotes": [{"target": web, "label": "Notes"}, {"target": refused}],
            }
        )
    )
    # Without specs: the settings' ports and entries; with specs: those given.
    for args in ((), (web, refused, "60610")):
        done = portwatch("metrics", *args, home=tmp_path)
        assert done.returncode == 0, done.stderr
        text = done.stdout
        checked = promtool_check_metrics(text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        listening = "portwatch_port_listening"
        assert value(text, listening, host=web, port=str(HTTP_PORT), label="Notes") == 1
        assert value(text, listening, host=refused, port=str(CLOSED_PORT)) == 0
        assert value(text, listening, host="", port="60610") is not None  # this machine
        assert value(text, "portwatch_port_healthy", host=web) == 1
        assert value(text, "portwatch_port_healthy", host=refused) is None
    one = portwatch("metrics", failing_web, home=tmp_path)
    assert value(one.stdout, "portwatch_port_healthy", host=failing_web) == 0
    assert "portwatch_port_owner_info" not in one.stdout  # the owner is over there


@NETNS
def test_the_trays_textfile_and_history_carry_remote_entries(
    qtbot: object, lab: Lab, portwatch_home: Path, tmp_path: Path
) -> None:
    """Watch records and changes in events.jsonl (began at the start, ended when removed in
    Settings, paused and at quit), `history` with the entry's title, and the textfile."""
    from pytestqt.qtbot import QtBot

    from tests.monitoring_support import promtool_check_metrics, value
    from trayapp.core import textfile
    from trayapp.core.history import EventLog
    from trayapp.platforms.scanners import create_scanner
    from trayapp.ui.controller import Controller
    from trayapp.ui.metrics_export import MetricsExporter

    assert isinstance(qtbot, QtBot)
    listener = tcp_listener(lab, 7004, tmp_path)
    flapping = parse_remote(f"{lab.address}:7004")
    web = parse_remote(f"http://{lab.address}:{HTTP_PORT}")
    refused = parse_remote(f"{lab.address}:{CLOSED_PORT}")
    folder = tmp_path / "textfile"
    folder.mkdir()
    config = cfg.Config(
        ports=(),
        remotes=tuple(cfg.WatchedRemote(t, interval=2.0) for t in (flapping, web, refused)),
        textfile_dir=str(folder),
    )
    log = EventLog(portwatch_home / "data" / "events.jsonl")
    path = portwatch_home / "config" / "config.json"
    controller = Controller(path, config, create_scanner, event_log=log)
    exporter = MetricsExporter(controller, refresh=1.0)
    exporter.start()
    controller.start()

    def metric(name: str, **labels: str) -> float | None:
        file = folder / textfile.FILE_NAME
        return value(file.read_text(), name, **labels) if file.exists() else None

    try:
        qtbot.waitUntil(
            lambda: (
                metric("portwatch_port_listening", host=str(flapping)) == 1
                and metric("portwatch_port_healthy", host=str(web)) == 1
                and metric("portwatch_port_listening", host=str(refused)) == 0
            ),
            timeout=15000,
        )
        stop(listener)
        qtbot.waitUntil(
            lambda: metric("portwatch_port_listening", host=str(flapping)) == 0, timeout=15000
        )
        text = (folder / textfile.FILE_NAME).read_text()
        checked = promtool_check_metrics(text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert value(text, "portwatch_port_changes_total", host=str(flapping), kind="stopped") == 1
        controller.set_paused(True)
        controller.set_paused(False)

        def began() -> int:
            return sum(e.kind == "watch-began" for e in log.read().events)

        qtbot.waitUntil(lambda: began() == 6, timeout=15000)
        # Removed in Settings: its watch ends; the others go on without a new record.
        controller.apply(cfg.Config(ports=(), remotes=config.remotes[:2], textfile_dir=str(folder)))
        controller.apply(cfg.Config(ports=(), remotes=config.remotes, textfile_dir=str(folder)))
        qtbot.waitUntil(lambda: began() == 7, timeout=15000)
        qtbot.wait(2500)  # the others' next checks
    finally:
        controller.stop()
        exporter.stop()
        stop(listener)
    records = [(e.port.host, e.kind, e.code, e.listening) for e in log.read().events if e.port.host]
    began = [(h, code, up) for h, kind, code, up in records if kind == "watch-began"]
    ended = [(h, code) for h, kind, code, _up in records if kind == "watch-ended"]
    assert sorted(began[:3]) == sorted(
        [(str(flapping), "start", True), (str(web), "start", True), (str(refused), "start", False)]
    )
    assert sorted(began[3:6]) == sorted(
        [
            (str(flapping), "resumed", False),
            (str(web), "resumed", True),
            (str(refused), "resumed", False),
        ]
    )
    assert began[6:] == [(str(refused), "added", False)]
    assert sorted(ended[:3]) == sorted((str(t), "paused") for t in (flapping, web, refused))
    assert ended[3] == (str(refused), "removed")
    assert sorted(ended[4:]) == sorted((str(t), "quit") for t in (flapping, web, refused))
    assert (str(flapping), "stopped", "refused", None) in records
    # `portwatch history`: the entry by its title, down while it was, unwatched while paused.
    shown = portwatch("history", str(flapping), home=portwatch_home)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{flapping}: last day"), shown.stdout
    rows = json.loads(portwatch("history", "--json", home=portwatch_home).stdout)
    states = [r["state"] for r in rows if r.get("host") == str(flapping)]
    assert states == ["up", "down", "unwatched", "down"], rows
    refused_rows = [(r["state"], r["end"] is None) for r in rows if r.get("host") == str(refused)]
    # The History window: a strip for each entry, named by its title.
    from trayapp.ui.history_window import HistoryWindow

    window = HistoryWindow(controller, log)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: port_of(flapping) in window.strips, timeout=10000)
    strip = window.strips[port_of(flapping)]
    assert strip.accessibleName() == f"Timeline of {flapping}"
    assert "down 0 s" not in strip.accessibleDescription(), strip.accessibleDescription()
    assert "down " in strip.accessibleDescription() and "up " in strip.accessibleDescription()
    assert window.port_filter.findData(str(port_of(web))) > 0
    # Down, paused, down, removed and added again, down until the quit.
    assert refused_rows == [("down", False), ("unwatched", False)] * 2 + [("down", False)]
    assert f"{flapping}  not watched since" in shown.stdout


@NETNS
def test_a_restart_does_not_repeat_a_remote_servers_news_and_tells_what_came_meanwhile(
    qtbot: object, lab: Lab, portwatch_home: Path, tmp_path: Path
) -> None:
    """The imitation of bluesky-httpserver (tests/probe_servers.py) on the other machine; the
    app started four times over one data folder (service-state.json)."""
    from pytestqt.qtbot import QtBot

    from tests.probe_servers import RE_MANAGER_STATUS
    from trayapp.core import paths
    from trayapp.core.service_check import ServiceStore
    from trayapp.platforms.scanners import create_scanner
    from trayapp.ui.controller import Controller

    assert isinstance(qtbot, QtBot)
    options = tmp_path / "server.json"
    done = {
        "item_uid": "a",
        "name": "count",
        "result": {"exit_status": "completed", "time_stop": 1},
    }
    failed = {"item_uid": "b", "name": "scan", "result": {"exit_status": "failed", "time_stop": 2}}

    def server_says(manager: str, uid: str, history: list[object]) -> None:
        status = {**RE_MANAGER_STATUS, "plan_history_uid": uid}
        options.write_text(json.dumps({"manager": manager, "status": status, "history": history}))

    server_says("idle", "h1", [done])
    script = Path(__file__).with_name("probe_servers.py")
    log = tmp_path / "bluesky-like.log"
    command = f"sleep 3600 | {sys.executable} {script} bluesky_httpserver --host {lab.address}"
    server = lab.machine.run(["sh", "-c", f"{command} --options-file {options}"], log)
    try:
        deadline = time.monotonic() + 20
        while not log.read_text().strip().isdigit() and time.monotonic() < deadline:
            time.sleep(0.05)
        target = parse_remote(f"http://{lab.address}:{int(log.read_text())}")
        config = cfg.Config(ports=(), remotes=(cfg.WatchedRemote(target, interval=2.0),))

        def run_app() -> list[str]:
            """One start of the app until its first check is in; what it told."""
            told: list[str] = []
            store = ServiceStore.load(paths.service_state_file())
            controller = Controller(
                portwatch_home / "config.json", config, create_scanner, service_store=store
            )
            controller.events.connect(
                lambda events: told.extend(e.detail or e.kind for e in events if e.port.host)
            )
            controller.start()
            try:
                qtbot.waitUntil(lambda: port_of(target) in controller.remote_checks, timeout=10000)
                qtbot.wait(300)  # anything else it would tell
            finally:
                controller.stop()
            return told

        # The first look tells nothing old (plan "count" was there before us).
        assert run_app() == ["started"]

        server_says("unreachable", "h1", [done])
        assert run_app() == ["started", "unhealthy: HTTP server up, RE Manager unreachable"]
        # Restarted while it is still so: no news (it was told before the restart).
        assert run_app() == ["started"]
        # Meanwhile, with the app off: the RE Manager back, and a plan that failed.
        server_says("idle", "h2", [done, failed])
        told = run_app()
        assert told[0] == "started" and len(told) == 2, told
        assert (
            told[1].startswith("healthy again: RE Manager idle") and "plan 'scan' failed" in told[1]
        )
        assert run_app() == ["started"]  # and told once only
        saved = json.loads(paths.service_state_file().read_text())
        assert saved[f"remote {lab.address}:{target.port}"]["history_uid"] == "h2"
    finally:
        stop(server)


REDIRECTING_SERVER = (
    "import http.server,json,sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        with open(sys.argv[4], 'a') as f:\n"
    "            f.write(json.dumps([self.path, self.headers.get('Authorization')]) + '\\n')\n"
    "        if self.path == '/openapi.json':\n"
    "            body = json.dumps({'info': {'title': 'Bluesky HTTP Server'}}).encode()\n"
    "            self.send_response(200); self.send_header('Content-Type', 'application/json')\n"
    "        else:\n"
    "            body = b''\n"
    "            self.send_response(307); self.send_header('Location', sys.argv[3] + self.path)\n"
    "        self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()\n"
)


@NETNS
def test_a_redirect_to_another_host_gets_no_key(lab: Lab, tmp_path: Path) -> None:
    """A server that redirects its API elsewhere: the key goes to the entry's host only, and
    the check does not follow (the other host is never contacted)."""
    elsewhere_accepts = tmp_path / "elsewhere"
    elsewhere_accepts.touch()
    requests = tmp_path / "requests"
    requests.touch()
    elsewhere = f"http://{lab.address}:7020"
    lab.machine.run(
        [sys.executable, "-c", COUNTING_SERVER, lab.address, "7020", str(elsewhere_accepts)],
        tmp_path / "elsewhere.log",
    )
    lab.machine.run(
        [sys.executable, "-c", REDIRECTING_SERVER, lab.address, "8307", elsewhere, str(requests)],
        tmp_path / "redirect.log",
    )
    for port in (7020, 8307):
        lab.machine.wait_listening(port)
    time.sleep(0.2)
    elsewhere_accepts.write_text("")  # our own readiness connects
    target = parse_remote(f"http://{lab.address}:8307")
    settings = RemoteSettings(KeyChoice("s3cret-key", "Settings"), allow_plain_key=True)
    check = check_remote(target, settings)
    assert check.up and check.result is not None and check.result.status == 307, check.line
    seen = [json.loads(line) for line in requests.read_text().splitlines()]
    assert ["/api/status", "ApiKey s3cret-key"] in seen, seen  # the key went to its own host
    time.sleep(0.5)
    assert elsewhere_accepts.read_text() == ""  # and nobody followed the redirect


RESETTING_SERVER = (
    "import socket,struct,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()\n"
    "while True:\n"
    "    c,_=s.accept(); c.recv(1024)\n"
    "    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()\n"
)


@NETNS
def test_a_reset_is_said_as_a_reset(lab: Lab, tmp_path: Path) -> None:
    """A server (or a firewall) that accepts, then resets the connection: the check says so,
    not "not HTTP"."""
    lab.machine.run(
        [sys.executable, "-c", RESETTING_SERVER, lab.address, "8404"], tmp_path / "reset.log"
    )
    lab.machine.wait_listening(8404)
    target = f"http://{lab.address}:8404"
    check = check_remote(parse_remote(target))
    assert check.line == f"{target}: unhealthy: connection reset by the host or a firewall"
    shown = portwatch("check", target, home=tmp_path)
    assert "health: unhealthy: connection reset by the host or a firewall" in shown.stdout
    plugin = portwatch("check", "--nagios", target, home=tmp_path)
    assert plugin.returncode == 1 and "connection reset by the host or a firewall" in plugin.stdout


@NETNS
def test_a_watch_stopped_for_a_while_records_the_gap(lab: Lab, tmp_path: Path) -> None:
    """`portwatch watch --log` stopped (SIGSTOP) longer than three intervals: the time between
    is not watched (suspended, woke), as for a local port; Ctrl+C ends its watch (quit)."""
    listener = tcp_listener(lab, 7030, tmp_path)
    target = f"{lab.address}:7030"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(
        json.dumps({"remotes": [{"target": target, "interval": 2}]})
    )
    events = tmp_path / "data" / "events.jsonl"

    def kinds() -> list[tuple[str, object]]:
        lines = events.read_text().splitlines() if events.exists() else []
        return [(e["event"], e.get("reason")) for e in map(json.loads, lines)]

    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "watch", target, "--log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PORTWATCH_HOME": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 20
        while ("watch-began", "start") not in kinds() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(8)  # more than three intervals of 2 s (at least 5 s)
        proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        while ("watch-began", "woke") not in kinds() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
        stop(listener)
    assert kinds() == [
        ("watch-began", "start"),
        ("started", None),
        ("watch-ended", "suspended"),
        ("watch-began", "woke"),
        ("watch-ended", "quit"),
    ]
    rows = json.loads(portwatch("history", "--json", target, home=tmp_path).stdout)
    assert [r["state"] for r in rows] == ["up", "unwatched", "up"]


@NETNS
def test_watch_textfile_carries_remote_entries_beside_local_ports(lab: Lab, tmp_path: Path) -> None:
    """`portwatch watch --textfile` of another machine's entry and a local port: one file with
    both (host label), rewritten when the entry changes; SIGTERM ends both watches in the log."""
    from tests.monitoring_support import promtool_check_metrics, value
    from trayapp.core import textfile

    web, closed = f"http://{lab.address}:{HTTP_PORT}", f"{lab.address}:{CLOSED_PORT}"
    local = free_port()
    folder = tmp_path / "textfile"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "watch", web, closed, str(local), "--log",
         "--textfile", str(folder), "--health-interval", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PORTWATCH_HOME": str(tmp_path)},
    )  # fmt: skip
    file = folder / textfile.FILE_NAME

    def both_there() -> bool:
        text = file.read_text() if file.exists() else ""
        return (
            value(text, "portwatch_port_healthy", host=web) == 1
            and value(text, "portwatch_port_listening", host=closed) == 0
            and value(text, "portwatch_port_listening", host="", port=str(local)) == 0
        )

    try:
        deadline = time.monotonic() + 20
        while not both_there() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = file.read_text()
        assert both_there(), text
        checked = promtool_check_metrics(text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert f"now {lab.address}" in out  # the entries' first lines were printed
    log = [
        json.loads(line) for line in (tmp_path / "data" / "events.jsonl").read_text().splitlines()
    ]
    ended = {(e.get("host", ""), e["port"]) for e in log if e["event"] == "watch-ended"}
    assert ("", local) in ended and any(host for host, _port in ended), log
