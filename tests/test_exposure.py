"""Exposure: loopback only, or reachable from other machines (unless a firewall blocks it), and
the warning for services that need no exposure, on real listeners and a real Redis."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import child_env, missing_part
from trayapp.core.exposure import FIREWALL, exposure, reach_of
from trayapp.core.model import Listener

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("address", "reach"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.53", "loopback"),
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "all-interfaces"),
        ("::", "all-interfaces"),
        ("*", "all-interfaces"),
        ("192.168.1.20", "network"),
        ("fe80::1%eth0", "network"),
        ("10.0.0.1", "network"),
        ("not-an-address", "network"),
    ],
)
def test_reach_of_addresses(address: str, reach: str) -> None:
    assert reach_of(address) == reach


def test_words_never_promise_more_than_the_binding_says() -> None:
    open_ = exposure(Listener(8000, "tcp", "0.0.0.0", "ipv4"))
    assert open_.remote and FIREWALL in open_.text and open_.warning is None
    lan = exposure(Listener(8000, "tcp", "192.168.1.20", "ipv4"))
    assert lan.reach == "network" and "192.168.1.20" in lan.text and FIREWALL in lan.text
    local = exposure(Listener(60615, "tcp", "127.0.0.1", "ipv4"))
    assert local.text == "only from this machine (loopback)" and local.warning is None
    zmq = exposure(Listener(60615, "tcp", "0.0.0.0", "ipv4"), "start-re-manager")
    assert zmq.warning and "RE Manager" in zmq.warning
    assert zmq.fix and "--zmq-control-addr tcp://127.0.0.1:60615" in zmq.fix
    info = exposure(Listener(60625, "tcp", "::", "dual"))
    assert info.fix and "--zmq-info-addr tcp://127.0.0.1:60625" in info.fix
    redis_elsewhere = exposure(Listener(7000, "tcp", "::", "dual"), "redis-server")
    assert redis_elsewhere.fix and "bind 127.0.0.1" in redis_elsewhere.fix


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_json(port: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "trayapp", "check", "--json", "--no-probe", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=child_env(PYTHONPATH=str(ROOT), HOME=str(ROOT)),
    )
    assert done.returncode == 0, done.stderr
    data: list[dict[str, object]] = json.loads(done.stdout)
    return data[0]


@contextmanager
def redis(port: int, bind: str, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    if shutil.which("redis-server") is None:
        missing_part("redis-server is not installed (Debian package redis-server)")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", bind, "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("redis-server did not start") from None
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_on_all_interfaces_is_a_warning_on_loopback_it_is_not(tmp_path: Path) -> None:
    port = free_port()
    with redis(port, "0.0.0.0", tmp_path):
        data = check_json(port)
        listeners = data["listeners"]
        assert isinstance(listeners, list)
        [entry] = listeners
        seen = entry["exposure"]
        assert entry["name"] == "redis-server" and seen["reach"] == "all-interfaces"
        assert seen["remote"] is True and FIREWALL in seen["text"]
        assert "Redis" in seen["warning"] and "bind 127.0.0.1" in seen["fix"]
        text = subprocess.run(
            [sys.executable, "-m", "trayapp", "check", "--no-probe", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            env=child_env(PYTHONPATH=str(ROOT), HOME=str(ROOT)),
        ).stdout
        assert f"reachable from other machines: bound to all interfaces (0.0.0.0), {FIREWALL}" in (
            text
        )
        assert "WARNING: Redis" in text and "fix: bind it to loopback" in text
    with redis(port, "127.0.0.1", tmp_path):
        data = check_json(port)
        listeners = data["listeners"]
        assert isinstance(listeners, list)
        seen = listeners[0]["exposure"]
        assert seen == {
            "reach": "loopback",
            "remote": False,
            "text": "only from this machine (loopback)",
            "warning": None,
            "fix": None,
        }
