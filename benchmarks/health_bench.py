"""What live health checks cost the tray app: CPU and memory of `python -m trayapp`
(offscreen, its own temporary settings) watching three listening ports, with health checks off
and then every 10 s (the default).

The three services: the real bluesky-httpserver with its RE Manager and Redis
(tests/bluesky_stack.py; the imitation in tests/probe_servers.py when .venv-bluesky is
missing, or with --imitation), `python -m http.server`, and a plain TCP listener that is not
HTTP. Bounded (default 120 s per phase), loopback only; every process is stopped at the end,
also on Ctrl+C. Prints one table with the CPU over each phase, the difference to checks off, and
RSS sampled at the start and end of each phase (and its largest value).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from idle_app import start_app  # noqa: E402
from scan_bench import terminate_cleanly  # noqa: E402

from tests.bluesky_stack import API_KEY, BlueskyStack, missing  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def child(argv: list[str], **options: Any) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(argv, **options)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(app: subprocess.Popen[bytes], seconds: float) -> dict[str, float]:
    """CPU % of one core over the phase (after a 5 s settling time) and RSS in MiB."""
    process = psutil.Process(app.pid)
    time.sleep(5)
    rss_start = process.memory_info().rss / 2**20
    rss_max = rss_start
    tenths: list[float] = []
    cpu0, wall0 = sum(process.cpu_times()[:2]), time.monotonic()
    end = wall0 + seconds
    while time.monotonic() < end:
        time.sleep(min(10.0, max(0.0, end - time.monotonic())))
        rss = process.memory_info().rss / 2**20
        rss_max = max(rss_max, rss)
        if time.monotonic() - wall0 >= (len(tenths) + 1) * seconds / 10:
            tenths.append(rss)
    cpu = 100 * (sum(process.cpu_times()[:2]) - cpu0) / (time.monotonic() - wall0)
    rss_end = process.memory_info().rss / 2**20
    return {
        "cpu": cpu,
        "rss_start": rss_start,
        "rss_end": rss_end,
        "rss_max": rss_max,
        "tenths": tenths,
    }


def stop(app: subprocess.Popen[bytes]) -> None:
    app.send_signal(signal.SIGTERM)
    try:
        app.wait(15)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="per phase (default 120)")
    parser.add_argument(
        "--checks-seconds",
        type=float,
        help="how long the phase with checks runs (default: --seconds; 3600 for the hour)",
    )
    parser.add_argument(
        "--imitation", action="store_true", help="the imitation Bluesky server, not the real one"
    )
    args = parser.parse_args()
    real = not args.imitation and missing() is None
    rows = []
    with terminate_cleanly(), ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        if real:
            bluesky = stack.enter_context(BlueskyStack())
            bluesky.open_environment()
            bluesky_port = bluesky.http_port
        else:
            imitation = stack.enter_context(
                child(
                    [
                        sys.executable,
                        str(REPO / "tests" / "probe_servers.py"),
                        "bluesky_httpserver",
                        "--api-key",
                        API_KEY,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            assert imitation.stdout is not None
            bluesky_port = int(imitation.stdout.readline())
        http_port = free_port()
        stack.enter_context(
            child(
                [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(http_port)],
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        plain = stack.enter_context(socket.socket())
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        wait_listening(http_port)
        ports = [bluesky_port, http_port, plain.getsockname()[1]]
        phases = (
            ("health checks off", "off", args.seconds),
            ("checks every 10 s", 10, args.checks_seconds or args.seconds),
        )
        for name, health, seconds in phases:
            app = start_app(
                Path(tmp) / f"home-{health}",
                ports,
                {"health_interval": health},
                {"QSERVER_HTTP_SERVER_API_KEY": API_KEY},
            )
            try:
                rows.append((name, measure(app, seconds)))
            finally:
                stop(app)
    base = rows[0][1]["cpu"]
    server = "the real bluesky-httpserver + RE Manager" if real else "the imitation server"
    print(
        f"whole app, 3 listening ports ({server}, http.server, a TCP listener), "
        f"polled every 1 s, {args.seconds:g} s without checks, "
        f"{args.checks_seconds or args.seconds:g} s with, {os.cpu_count()} CPUs"
    )
    print(f"{'phase':20} {'CPU':>9} {'- off':>9} {'RSS start':>10} {'RSS end':>9} {'RSS max':>9}")
    for name, row in rows:
        print(
            f"{name:20} {row['cpu']:8.3f}% {row['cpu'] - base:8.3f}% {row['rss_start']:9.1f}M "
            f"{row['rss_end']:8.1f}M {row['rss_max']:8.1f}M"
        )
    tenths = " ".join(f"{rss:.1f}" for rss in rows[-1][1]["tenths"])
    print(f"RSS (MiB) at each tenth of the phase with checks: {tenths}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
