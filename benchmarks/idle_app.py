"""What the whole tray app costs while nothing changes: CPU and memory of `python -m trayapp`
(offscreen, its own temporary settings) at idle and with scan_bench's load of 20,000 loopback
connections and 300 extra processes, watching two ports at the default 1 s interval.

Offscreen there is no system tray, so the app shows its fallback window. `--tray` runs it as
users do instead: in a tray, on the project's X11 desktop harness (tests/desktop/session.sh,
started and stopped here; needs its Debian packages).

Bounded (one minute per phase by default), loopback only; the app and every helper process are
stopped at the end, also on Ctrl+C. Prints one table with medians and the ratio to idle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scan_bench import FULL, QUICK, Helpers, build_load, raise_fd_limit, terminate_cleanly

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(
    home: Path,
    ports: list[int],
    fields: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The app, offscreen, with its own settings: `ports` with `fields` added to each entry."""
    config = home / "config" / "config.json"
    config.parent.mkdir(parents=True)
    entries = [{"port": p, **(fields or {})} for p in ports]
    config.write_text(json.dumps({"ports": entries, "interval": 1.0}))
    env = {
        **os.environ,
        "PORTWATCH_HOME": str(home),
        "QT_QPA_PLATFORM": "offscreen",
        "PORTWATCH_TRAY_WAIT": "0",
        **(env or {}),
    }
    app = subprocess.Popen(
        [sys.executable, "-m", "trayapp"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = home / "log" / "portwatch.log"
    deadline = time.monotonic() + 30
    while "started, watching" not in (log.read_text() if log.exists() else ""):
        if time.monotonic() > deadline or app.poll() is not None:
            raise RuntimeError("the app did not start")
        time.sleep(0.1)
    return app


@contextlib.contextmanager
def desktop_session(state: Path) -> Iterator[dict[str, str]]:
    """The X11 harness (Xvfb, D-Bus, dunst, xfce4-panel's tray): its environment for the app."""
    script = REPO / "tests" / "desktop" / "session.sh"
    env = {**os.environ, "STATE": str(state)}
    subprocess.run(["bash", str(script), "up", "xfce"], env=env, check=True, capture_output=True)
    try:
        words = shlex.split((state / "env").read_text().removeprefix("export "))
        yield dict(word.split("=", 1) for word in words)
    finally:
        subprocess.run(["bash", str(script), "down"], env=env, check=False, capture_output=True)


def sample(pid: int, seconds: float, window: float = 10.0) -> tuple[float, list[float], float]:
    """CPU % of one core over the whole phase and per window, and RSS in MiB at the end.
    CPU time is counted in 10 ms ticks, so short windows can't resolve an idle app: the
    whole-phase figure is the one to read."""
    process = psutil.Process(pid)
    shares = []
    start_cpu, start = sum(process.cpu_times()[:2]), time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        t0, w0 = sum(process.cpu_times()[:2]), time.monotonic()
        time.sleep(window)
        t1, w1 = sum(process.cpu_times()[:2]), time.monotonic()
        shares.append(100 * (t1 - t0) / (w1 - w0))
    total = 100 * (sum(process.cpu_times()[:2]) - start_cpu) / (time.monotonic() - start)
    return total, shares, process.memory_info().rss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per phase (default 60)")
    parser.add_argument("--quick", action="store_true", help="2,000 connections, 20 s phases")
    parser.add_argument("--tray", action="store_true", help="in a real tray (X11 harness)")
    args = parser.parse_args()
    scenario = QUICK if args.quick else FULL
    seconds = 20.0 if args.quick else args.seconds
    raise_fd_limit()
    helpers = Helpers()
    rows = []
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        stack.enter_context(terminate_cleanly())
        desktop = stack.enter_context(desktop_session(Path(tmp) / "desktop")) if args.tray else {}
        listener = socket.socket()
        app = None
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            ports = [listener.getsockname()[1], free_port()]  # one listening, one free
            app = start_app(Path(tmp) / "home", ports, env=desktop)
            shown = (Path(tmp) / "home" / "log" / "portwatch.log").read_text()
            where = "in the tray" if "system tray available" in shown else "no tray: its window"
            time.sleep(3)  # past the first scans and probes
            rows.append(("idle", *sample(app.pid, seconds)))
            build_load(helpers, scenario)
            time.sleep(3)
            rows.append((f"{scenario.connections:,} connections", *sample(app.pid, seconds)))
        finally:
            if app is not None:
                app.send_signal(signal.SIGTERM)
                try:
                    app.wait(15)
                except subprocess.TimeoutExpired:
                    app.kill()
                    app.wait()
            listener.close()
            helpers.stop()
    idle_total = rows[0][1]
    print(
        f"whole app ({where}), watching 2 ports every 1 s, {seconds:g} s per phase, "
        f"{os.cpu_count()} CPUs"
    )
    header = f"{'phase':22} {'CPU, phase':>11} {'median 10 s':>12} {'max 10 s':>9}"
    print(f"{header} {'x idle':>7} {'RSS MiB':>8}")
    for name, total, shares, rss in rows:
        ratio = f"{total / idle_total:6.1f}x" if idle_total else "    n/a"
        print(
            f"{name:22} {total:10.3f}% {statistics.median(shares):11.3f}% "
            f"{max(shares):8.3f}% {ratio} {rss:8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
