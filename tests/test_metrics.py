"""`portwatch metrics` and `watch --textfile` against the real readers of the format: promtool,
prometheus-node-exporter's textfile collector and a Prometheus server, all on loopback."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.monitoring_support import (
    LOOPBACK,
    http_get,
    node_exporter,
    prometheus,
    promtool_check_metrics,
    renamed_listener,
    samples,
    value,
    wait_for,
)
from tests.probe_servers import bluesky_child
from tests.support import free_port
from tests.ui_support import http_server
from trayapp import cli
from trayapp.core import textfile

FAMILIES = (
    "portwatch_port_listening",
    "portwatch_port_healthy",
    "portwatch_port_owner_info",
    "portwatch_port_changes_total",
    "portwatch_last_scan_timestamp_seconds",
    "portwatch_scan_duration_seconds",
    "portwatch_bluesky_items_in_queue",
    "portwatch_bluesky_items_in_history",
    "portwatch_bluesky_worker_environment_exists",
    "portwatch_bluesky_manager_state",
)


def portwatch(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_valid(text: str) -> None:
    """promtool's parser and linter accept it, and it ends in a line feed."""
    checked = promtool_check_metrics(text)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), checked
    assert text.endswith("\n")
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    used = {name for name, _labels, _value in samples(text)}
    assert used <= declared == helped <= set(FAMILIES)


def write_config(home: Path, entries: list[dict[str, object]], **settings: object) -> None:
    path = home / "config" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ports": entries, **settings}))


def test_metrics_of_real_listeners(portwatch_home: Path) -> None:
    with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
        tcp.bind((LOOPBACK, 0))
        tcp.listen()
        udp.bind((LOOPBACK, 0))
        busy, bound, free = tcp.getsockname()[1], udp.getsockname()[1], free_port()
        before = time.time()
        result = portwatch("metrics", str(busy), str(free), f"{bound}/udp", "--no-probe")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert_valid(text)
    up = {"port": str(busy), "protocol": "tcp"}
    assert value(text, "portwatch_port_listening", **up) == 1
    assert value(text, "portwatch_port_listening", port=str(free), protocol="tcp") == 0
    assert value(text, "portwatch_port_listening", port=str(bound), protocol="udp") == 1
    me = {"pid": str(os.getpid()), "name": Path("/proc/self/comm").read_text().strip()}
    assert value(text, "portwatch_port_owner_info", **up, **me) == 1
    assert value(text, "portwatch_port_owner_info", port=str(free)) is None
    stamp = value(text, "portwatch_last_scan_timestamp_seconds")
    assert stamp is not None and before <= stamp <= time.time()
    duration = value(text, "portwatch_scan_duration_seconds")
    assert duration is not None and 0 < duration < 5
    # one scan sees no change: the counter belongs to `watch --textfile` and the tray
    assert "portwatch_port_changes_total" not in text
    assert "portwatch_port_healthy" not in text  # --no-probe: no health check


def test_with_no_ports_given_the_watched_ports_are_reported(portwatch_home: Path) -> None:
    write_config(
        portwatch_home, [{"port": 60610, "label": "Queue"}, {"port": 5353, "protocol": "udp"}]
    )
    result = portwatch("metrics", "--no-probe")
    assert result.returncode == 0, result.stderr
    listed = [
        (labels["port"], labels["protocol"], labels["label"])
        for name, labels, _v in samples(result.stdout)
        if name == "portwatch_port_listening"
    ]
    assert listed == [("60610", "tcp", "Queue"), ("5353", "udp", "mDNS (Bonjour, Avahi)")]


ODD_LABEL = 'Lab "Ø" \\ 温度 C:\\temp'
ODD_NAME = b'q"\\\n\xc3\xa9x'  # quote, backslash, line feed, é: 7 of comm's 15 bytes
BAD_UTF8_NAME = b'\xff\xfe"z'  # not UTF-8 at all


@contextmanager
def odd_listeners() -> Iterator[tuple[int, int]]:
    first, second = free_port(), free_port()
    with renamed_listener(first, ODD_NAME), renamed_listener(second, BAD_UTF8_NAME):
        yield first, second


def test_odd_labels_are_escaped_for_promtool_and_node_exporter(
    portwatch_home: Path, tmp_path: Path
) -> None:
    with odd_listeners() as (first, second):
        write_config(portwatch_home, [{"port": first, "label": ODD_LABEL}])
        printed = portwatch("metrics", str(first), str(second), "--no-probe")
        assert printed.returncode == 0, printed.stderr
        assert_valid(printed.stdout)
        folder = tmp_path / "textfile"
        folder.mkdir()
        written = portwatch(
            "metrics", str(first), str(second), "--no-probe", "--textfile", str(folder)
        )
        assert written.returncode == 0 and written.stdout == "", written.stderr
    ours = (folder / "portwatch.prom").read_text()
    with node_exporter(folder) as port:
        _status, served = http_get(f"http://{LOOPBACK}:{port}/metrics")
    assert value(served, "node_textfile_scrape_error") == 0
    for text in (printed.stdout, ours, served):
        assert value(text, "portwatch_port_listening", port=str(first), label=ODD_LABEL) == 1
        names = {
            labels["port"]: labels["name"]
            for name, labels, _v in samples(text)
            if name == "portwatch_port_owner_info"
        }
        assert names[str(first)] == ODD_NAME.decode("utf-8")
        assert names[str(second)].endswith('"z') and names[str(second)].isprintable()


def test_the_textfile_is_replaced_whole_never_half_written(tmp_path: Path) -> None:
    """A reader polling the file while it is rewritten 40 times sees each version whole."""
    folder = tmp_path / "textfile"
    folder.mkdir()
    path = folder / textfile.FILE_NAME
    done = threading.Event()
    seen: list[str] = []

    def read() -> None:
        while not done.is_set():
            with suppress(FileNotFoundError):
                seen.append(path.read_text())

    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        reader = threading.Thread(target=read)
        reader.start()
        try:
            for _ in range(40):
                args = ["metrics", str(busy.getsockname()[1]), "--no-probe"]
                assert cli.main([*args, "--textfile", str(folder)]) == 0
        finally:
            done.set()
            reader.join()
    assert len(seen) > 40  # the reader really raced the writes
    last_family = "portwatch_scan_duration_seconds "
    assert all(text.endswith("\n") and last_family in text for text in seen)
    assert len({text for text in seen}) > 1  # it saw different versions, each of them whole
    assert sorted(p.name for p in folder.iterdir()) == [textfile.FILE_NAME]  # no temp file left
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # node_exporter runs as another user


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["metrics", "80", "--textfile", "/nonexistent/folder"],
            "'/nonexistent/folder' is not a folder",
        ),
        (["watch", "80", "--textfile", "/etc/hostname"], "'/etc/hostname' is not a folder"),
        (["watch", "80", "--textfile", "/tmp", "--interval", "90"], "--interval 90 is longer than"),
        (["watch", "80", "--textfile", "/tmp", "--refresh", "61"], "use 1 to 60 seconds"),
        (["metrics", "80", "--textfile", ""], "the textfile folder is empty"),
    ],
)
def test_bad_textfile_options_are_one_line(args: list[str], says: str) -> None:
    result = portwatch(*args)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert says in line and line.startswith("portwatch") and ": error: " in line


def test_no_ports_anywhere_is_a_clear_error(portwatch_home: Path) -> None:
    write_config(portwatch_home, [])
    result = portwatch("metrics")
    assert result.returncode == 2
    assert "no ports given and none watched in Settings" in result.stderr


def test_bluesky_queue_figures_and_no_api_key(portwatch_home: Path) -> None:
    with bluesky_child("k3y-S3cret") as (port, _server):
        write_config(portwatch_home, [{"port": port, "api_key": "k3y-S3cret"}])
        result = portwatch("metrics", str(port))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert_valid(text)
    where = {"port": str(port), "protocol": "tcp"}
    assert value(text, "portwatch_port_healthy", **where) == 1
    assert value(text, "portwatch_bluesky_items_in_queue", **where) == 2
    assert value(text, "portwatch_bluesky_items_in_history", **where) == 5
    assert value(text, "portwatch_bluesky_worker_environment_exists", **where) == 1
    states = {
        labels["state"]: v
        for name, labels, v in samples(text)
        if name == "portwatch_bluesky_manager_state"
    }
    assert states["idle"] == 1 and sum(states.values()) == 1 and len(states) >= 9
    assert "k3y-S3cret" not in text


@contextmanager
def watching(port: int, folder: Path, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """`portwatch watch PORT --textfile FOLDER` as a child; stopped with Ctrl+C (SIGINT)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "watch", str(port), "--textfile", str(folder), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield child
    finally:
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=15)
        assert child.returncode == 0, (out, err)
        assert err == "", err


def scraped(port: int) -> str:
    status, text = http_get(f"http://{LOOPBACK}:{port}/metrics")
    assert status == 200
    assert value(text, "node_textfile_scrape_error") == 0
    return text


def test_node_exporter_follows_a_server_under_watch_textfile(tmp_path: Path) -> None:
    folder = tmp_path / "textfile"
    folder.mkdir()
    port = free_port()
    where = {"port": str(port), "protocol": "tcp"}
    with node_exporter(folder) as exporter, watching(port, folder, "--interval", "0.2"):
        wait_for(
            "the free port in node_exporter",
            lambda: value(scraped(exporter), "portwatch_port_listening", **where) == 0,
        )
        with http_server(port) as server:
            text = wait_for(
                "the started server in node_exporter",
                lambda: (
                    (t := scraped(exporter))
                    and value(t, "portwatch_port_healthy", **where) == 1
                    and t
                ),
            )
            assert value(text, "portwatch_port_listening", **where) == 1
            assert value(text, "portwatch_port_owner_info", **where, pid=str(server.pid)) == 1
            assert value(text, "portwatch_port_changes_total", **where, kind="started") == 1
            assert value(text, "portwatch_port_changes_total", **where, kind="stopped") == 0
        text = wait_for(
            "the stopped server in node_exporter",
            lambda: (
                (t := scraped(exporter))
                and value(t, "portwatch_port_listening", **where) == 0
                and t
            ),
        )
        assert value(text, "portwatch_port_changes_total", **where, kind="stopped") == 1
        assert value(text, "portwatch_port_changes_total", **where, kind="owner-changed") == 0
        assert value(text, "portwatch_port_healthy", **where) is None  # nothing to check now
        assert_valid((folder / textfile.FILE_NAME).read_text())


def test_watch_textfile_is_rewritten_without_changes(tmp_path: Path) -> None:
    """--refresh 1: the file is rewritten every second though nothing changes (the default is
    60 s, which this test would have to wait minutes for)."""
    folder = tmp_path / "textfile"
    folder.mkdir()
    path = folder / textfile.FILE_NAME
    stamps: set[float] = set()
    with watching(free_port(), folder, "--interval", "0.2", "--refresh", "1", "--no-probe"):
        wait_for("the first file", path.exists)
        started = time.monotonic()
        while time.monotonic() - started < 4.5:
            stamp = value(path.read_text(), "portwatch_last_scan_timestamp_seconds")
            assert stamp is not None
            stamps.add(stamp)
            time.sleep(0.05)
    ordered = sorted(stamps)
    assert len(ordered) >= 3, ordered  # the first write and at least two refreshes
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    # never on every 0.2 s poll (nothing changed), and not much later than the refresh asks
    assert all(0.5 < gap < 2.5 for gap in gaps), gaps


def test_prometheus_sees_the_port_go_up_and_down(tmp_path: Path) -> None:
    """The whole node_exporter recipe: watch --textfile, node_exporter, a real Prometheus
    scraping it every second, asked with PromQL."""
    folder = tmp_path / "textfile"
    folder.mkdir()
    port = free_port()
    query = urllib.parse.quote(f'portwatch_port_listening{{port="{port}"}}')

    with node_exporter(folder) as exporter:
        config = (
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: node\n    static_configs:\n"
            f"      - targets: ['{LOOPBACK}:{exporter}']\n"
        )
        with prometheus(config, tmp_path / "prometheus") as server:

            def answer() -> float | None:
                status, body = http_get(f"http://{LOOPBACK}:{server}/api/v1/query?query={query}")
                assert status == 200, body
                result = json.loads(body)["data"]["result"]
                return float(result[0]["value"][1]) if len(result) == 1 else None

            with watching(port, folder, "--interval", "0.2", "--no-probe"):
                wait_for("Prometheus: 0 before the server starts", lambda: answer() == 0.0)
                with http_server(port):
                    wait_for("Prometheus: 1 while it listens", lambda: answer() == 1.0, 40)
                wait_for("Prometheus: 0 after it stopped", lambda: answer() == 0.0, 40)
