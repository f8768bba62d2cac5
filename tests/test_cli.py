"""`portwatch` as a user runs it: a subprocess, real listeners, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import free_port
from tests.ui_support import http_server
from trayapp import __version__


def portwatch(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def test_version_and_help() -> None:
    result = portwatch("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"portwatch {__version__}"
    for command in (
        "check",
        "explain",
        "watch",
        "wait",
        "history",
        "metrics",
        "prometheus-config",
        "tray",
    ):
        helped = portwatch(command, "--help")
        assert helped.returncode == 0, helped.stderr
        assert f"usage: portwatch {command}" in helped.stdout


def test_check_listening_port_json(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = portwatch("check", str(port), "--json", "--no-probe")
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)
    assert (entry["port"], entry["protocol"], entry["state"]) == (port, "tcp", "listening")
    [owner] = entry["listeners"]
    assert owner["pid"] == os.getpid()
    assert owner["address"] == "127.0.0.1" and owner["family"] == "ipv4"
    assert owner["owner_visible"] is True and owner["cmdline"]
    assert owner["started"] and owner["username"]
    assert set(entry["range"]) >= {"name", "first", "last", "explanation", "os_ephemeral"}
    assert entry["range"]["in_os_ephemeral"] in (True, False)
    assert entry["diagnosis"][0]["cause"] == "process"


def test_check_real_http_server_with_probe(portwatch_home: Path) -> None:
    port = free_port()
    with http_server(port) as child:
        result = portwatch("check", str(port), "--json")
        human = portwatch("check", str(port))
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)
    assert entry["listeners"][0]["pid"] == child.pid
    assert "http.server" in entry["listeners"][0]["cmdline"]
    assert entry["probe"]["health"] == "http" and entry["probe"]["http_status"] == 200
    assert human.returncode == 0
    assert f"pid {child.pid}" in human.stdout and "health: healthy: HTTP 200" in human.stdout


def test_check_free_port_exits_1() -> None:
    port = free_port()
    result = portwatch("check", str(port), "--json")
    assert result.returncode == 1
    [entry] = json.loads(result.stdout)
    assert entry["state"] == "free" and entry["listeners"] == []
    assert entry["probe"] is None


def test_check_60610_answers_either_way() -> None:
    result = portwatch("check", "60610", "--json", "--no-probe")
    assert result.returncode in (0, 1), result.stderr
    [entry] = json.loads(result.stdout)
    assert entry["port"] == 60610
    assert entry["state"] == ("listening" if result.returncode == 0 else "free")
    assert entry["range"]["name"] == "dynamic"
    assert entry["known_service"]["name"] == "Bluesky Queue Server (HTTP API)"


def test_check_several_ports_any_free_exits_1(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = portwatch("check", f"{port},{free_port()}", "--json", "--no-probe")
    assert result.returncode == 1
    assert [e["state"] for e in json.loads(result.stdout)] == ["listening", "free"]


@pytest.mark.parametrize(
    "args",
    [
        ["check", "70000"],
        ["check", "abc"],
        ["check", "80/sctp"],
        ["check", "90-80"],
        ["check", "0"],
        ["check", "1-65535"],
        ["explain", "-1"],
        ["wait", "8080", "--timeout", "soon"],
        ["watch", "8080", "--interval", "0"],
        ["history", "--since", "yesterday-ish"],
        ["frobnicate"],
        ["check"],
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str]) -> None:
    result = portwatch(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("portwatch")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_explain_names_the_range_and_os_range() -> None:
    result = portwatch("explain", "60610", "--no-scan")
    assert result.returncode == 0
    assert "Dynamic" in result.stdout and "49152" in result.stdout
    data = json.loads(portwatch("explain", "22", "--json", "--no-scan").stdout)
    assert data["name"] == "well-known" and data["first"] == 0 and data["last"] == 1023


def test_wait_succeeds_once_listening_and_times_out_otherwise() -> None:
    port = free_port()
    started = time.monotonic()
    assert portwatch("wait", str(port), "--timeout", "0.5").returncode == 1
    assert time.monotonic() - started < 10

    def listen_later(ready: threading.Event, done: threading.Event) -> None:
        time.sleep(0.5)
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen()
            ready.set()
            done.wait(30)

    ready, done = threading.Event(), threading.Event()
    thread = threading.Thread(target=listen_later, args=(ready, done))
    thread.start()
    try:
        result = portwatch("wait", str(port), "--timeout", "20")
        assert result.returncode == 0, result.stderr
        assert ready.is_set()
    finally:
        done.set()
        thread.join()


@pytest.mark.posix("stops watch with SIGINT; Windows has only CTRL_C_EVENT, for a console group")
def test_watch_reports_start_and_stop_in_order() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "watch", str(port), "--interval", "0.1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events: list[dict[str, object]] = []
    reader = threading.Thread(
        target=lambda: events.extend(json.loads(line) for line in proc.stdout or [])
    )
    reader.start()
    try:
        time.sleep(0.6)  # let watch take its first look at the free port
        with http_server(port) as child:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not events:
                time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(events) < 2:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        reader.join(10)
        if proc.stderr:
            err = proc.stderr.read()
            proc.stderr.close()
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert [e["event"] for e in events] == ["started", "stopped"]
    assert all(e["port"] == port and e["protocol"] == "tcp" for e in events)
    assert events[0]["pid"] == child.pid and events[0]["name"] == "python"
    assert {"time", "port", "protocol", "event", "pid", "name"} <= set(events[0])


def test_history_reads_the_log_and_exports(portwatch_home: Path) -> None:
    log = portwatch_home / "data" / "events.jsonl"
    log.parent.mkdir(parents=True)
    now = time.time()
    lines = [
        {
            "time": _iso(now - 3600),
            "port": 8080,
            "protocol": "tcp",
            "event": "started",
            "pid": 7,
            "name": "node",
        },
        {
            "time": _iso(now - 600),
            "port": 8080,
            "protocol": "tcp",
            "event": "stopped",
            "pid": 7,
            "name": "node",
        },
    ]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    human = portwatch("history")
    assert human.returncode == 0
    assert "8080/tcp: last day up 50 min" in human.stdout
    assert "1 damaged lines" in human.stderr
    data = json.loads(portwatch("history", "8080", "--json").stdout)
    assert [row["state"] for row in data] == ["up", "down"]
    csv_text = portwatch("history", "--csv", "--since", "5m").stdout
    assert csv_text.splitlines()[0].startswith("port,protocol,state,start,end,duration_s")
    assert len(csv_text.splitlines()) == 2  # only the period within the last 5 minutes


def _iso(seconds: float) -> str:
    from trayapp.core.events import iso_time

    return iso_time(seconds)


def test_cli_imports_no_qt() -> None:
    code = "import sys, trayapp.cli; print(any(m.startswith('PySide6') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def test_cli_never_touches_a_damaged_config(portwatch_home: Path, listener: socket.socket) -> None:
    config = portwatch_home / "config" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text("{broken")
    result = portwatch("check", str(listener.getsockname()[1]), "--no-probe")
    assert result.returncode == 0
    assert config.read_text() == "{broken"
    assert list(config.parent.iterdir()) == [config]


@pytest.mark.linux("only an X11 or Wayland session can lack a display; there the app would run")
def test_tray_without_a_display_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    result = subprocess.run(
        [sys.executable, "-m", "trayapp"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 2
    assert "no graphical session" in result.stderr and "portwatch watch" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_check_expect_free_turns_the_exit_code_around(listener: socket.socket) -> None:
    busy, free = str(listener.getsockname()[1]), str(free_port())
    assert portwatch("check", free, "--expect", "free", "--no-probe").returncode == 0
    assert portwatch("check", busy, "--expect", "free", "--no-probe").returncode == 1
    assert portwatch("check", busy, free, "--expect", "free", "--no-probe").returncode == 1
