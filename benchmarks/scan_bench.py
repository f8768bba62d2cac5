"""How long one poll of two watched ports takes: our scanner against psutil, ss and lsof.

Builds its own scenario on loopback: two watched TCP listeners (in a helper process, like a real
service), then load: N established TCP connections (both ends held open, so 2N sockets) spread
over helper processes so none needs more than ~5,000 fds, plus idle processes. Measures at idle
and under load, prints one table. Helpers read their stdin and exit on EOF, so they go away even
if this script is killed; they are also killed explicitly on exit, error or Ctrl+C.

    python benchmarks/scan_bench.py            # 20,000 connections, 300 idle processes
    python benchmarks/scan_bench.py --quick    # 2,000 connections, 30 idle processes
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from trayapp.core.model import Port
from trayapp.core.scanning import Scanner
from trayapp.platforms.scanners import create_scanner

CONNECTIONS_PER_HELPER = 2_500  # 5,000 fds per helper: far below a 20,000 open-files limit
SETUP_TIMEOUT = 120.0

WATCHED_LISTENERS = r"""
import socket, sys
socks = []
for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")):
    sock = socket.socket(family)
    sock.bind((address, 0))
    sock.listen()
    socks.append(sock)
print(*(s.getsockname()[1] for s in socks), flush=True)
sys.stdin.read()
"""

CONNECTION_HOLDER = r"""
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
count, address = int(sys.argv[1]), sys.argv[2]
server = socket.socket()
server.bind((address, 0))
server.listen(4096)
held = []
while len(held) < 2 * count:
    clients = []
    for _ in range(min(256, count - len(held) // 2)):
        client = socket.socket()
        client.connect(server.getsockname())  # loopback: done once the SYN is queued
        clients.append(client)
    held += [server.accept()[0] for _ in clients] + clients
server.close()
print("ready", flush=True)
sys.stdin.read()
"""

IDLE_PROCESSES = r"""
import os, sys
children = []
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        os.read(0, 1)  # our stdin is the benchmark's pipe: EOF when it closes or dies
        os._exit(0)
    children.append(pid)
print("ready", flush=True)
sys.stdin.read()
for pid in children:
    os.waitpid(pid, 0)
"""


@dataclass(frozen=True)
class Scenario:
    connections: int
    idle_processes: int
    budget: float  # seconds per method and phase
    cpu_seconds: int  # length of the 1 poll/s loop


FULL = Scenario(connections=20_000, idle_processes=300, budget=8.0, cpu_seconds=10)
QUICK = Scenario(connections=2_000, idle_processes=30, budget=2.0, cpu_seconds=3)


class Helpers:
    """Child processes of the scenario; each prints one line when ready."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[str]] = []

    def start(self, code: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._procs.append(proc)
        return proc

    @staticmethod
    def ready_line(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None and proc.stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(SETUP_TIMEOUT):
                raise RuntimeError(f"helper not ready within {SETUP_TIMEOUT} s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"helper failed: {proc.stderr.read().strip()[-2000:]}")
        return line.strip()

    def stop(self) -> None:
        for proc in self._procs:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._procs.clear()


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_load(helpers: Helpers, scenario: Scenario) -> None:
    started = time.monotonic()
    holders = []
    remaining = scenario.connections
    index = 0
    while remaining > 0:
        count = min(CONNECTIONS_PER_HELPER, remaining)
        # One loopback address per helper, so each has its own 4-tuples to spend.
        holders.append(helpers.start(CONNECTION_HOLDER, str(count), f"127.0.0.{10 + index}"))
        remaining -= count
        index += 1
    idle = helpers.start(IDLE_PROCESSES, str(scenario.idle_processes))
    for proc in [*holders, idle]:
        Helpers.ready_line(proc)
    print(
        f"load: {scenario.connections} connections in {len(holders)} processes, "
        f"{scenario.idle_processes} idle processes, built in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )


@dataclass(frozen=True)
class Timing:
    median: float
    p90: float
    samples: int


def measure(poll: Callable[[], object], budget: float, cap: int) -> Timing:
    poll()  # warm-up: imports, page cache, our caches
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < 5 or (len(samples) < cap and time.perf_counter() < deadline):
        start = time.perf_counter()
        poll()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return Timing(statistics.median(samples), samples[int(0.9 * (len(samples) - 1))], len(samples))


def cpu_share(poll: Callable[[], object], seconds: int) -> float:
    """Process CPU time / wall time of a loop polling once per second."""
    wall0, cpu0 = time.monotonic(), time.process_time()
    for tick in range(seconds):
        poll()
        time.sleep(max(0.0, wall0 + tick + 1 - time.monotonic()))
    return (time.process_time() - cpu0) / (time.monotonic() - wall0)


def methods(
    scanner: Scanner, ports: tuple[int, int]
) -> dict[str, tuple[Callable[[], object], int]]:
    watched = [Port(number) for number in ports]
    found: dict[str, tuple[Callable[[], object], int]] = {
        f"our scanner ({scanner.name})": (lambda: scanner.scan(watched), 2000),
        "our scanner, connections=True": (lambda: scanner.scan(watched, connections=True), 500),
        "psutil.net_connections()+filter": (lambda: psutil_poll(set(ports)), 40),
    }
    if shutil.which("ss"):
        query = f"( sport = :{ports[0]} or sport = :{ports[1]} )"
        found["ss -Htlnp 'sport = :P' (subprocess)"] = (
            lambda: run(["ss", "-Htlnp", query]),
            60,
        )
    if shutil.which("lsof"):
        found["lsof -nP -iTCP:P -sTCP:LISTEN"] = (
            lambda: run(["lsof", "-nP", f"-iTCP:{ports[0]},{ports[1]}", "-sTCP:LISTEN"]),
            30,
        )
    return found


def psutil_poll(ports: set[int]) -> list[object]:
    return [
        c
        for c in psutil.net_connections(kind="inet")
        if c.laddr and c.laddr.port in ports and c.status == psutil.CONN_LISTEN
    ]


def run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def cold_poll(ports: tuple[int, int]) -> float:
    """First poll of a fresh scanner: includes finding the owners in /proc."""
    scanner = create_scanner()
    try:
        start = time.perf_counter()
        scanner.scan([Port(number) for number in ports])
        return time.perf_counter() - start
    finally:
        scanner.close()


def phase(
    name: str, scanner: Scanner, ports: tuple[int, int], scenario: Scenario
) -> tuple[dict[str, Timing], float, float]:
    print(f"measuring {name} ...", file=sys.stderr)
    timings = {
        label: measure(poll, scenario.budget, cap)
        for label, (poll, cap) in methods(scanner, ports).items()
    }
    cold = statistics.median(cold_poll(ports) for _ in range(3))
    cpu = cpu_share(lambda: scanner.scan([Port(number) for number in ports]), scenario.cpu_seconds)
    return timings, cold, cpu


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def print_table(
    idle: tuple[dict[str, Timing], float, float],
    load: tuple[dict[str, Timing], float, float],
    scenario: Scenario,
) -> None:
    (idle_t, idle_cold, idle_cpu), (load_t, load_cold, load_cpu) = idle, load
    ours = next(iter(idle_t))
    header = (
        f"{'method (one poll of 2 ports)':<38} {'idle med ms':>11} {'idle p90':>9} "
        f"{'x ours':>8} {'load med ms':>11} {'load p90':>9} {'x ours':>8}"
    )
    print(
        f"\nscenario: {scenario.connections} established loopback TCP connections "
        f"({2 * scenario.connections} sockets), {scenario.idle_processes} idle processes; "
        f"{os.cpu_count()} CPUs, Linux {os.uname().release}"
    )
    print(header)
    print("-" * len(header))
    for label in idle_t:
        i, lo = idle_t[label], load_t[label]
        print(
            f"{label:<38} {ms(i.median):>11} {ms(i.p90):>9} "
            f"{i.median / idle_t[ours].median:>7.1f}x {ms(lo.median):>11} {ms(lo.p90):>9} "
            f"{lo.median / load_t[ours].median:>7.1f}x"
        )
    print(
        f"{'our scanner, first poll (cold cache)':<38} {ms(idle_cold):>11} {'':>9} {'':>8} "
        f"{ms(load_cold):>11}"
    )
    print(
        f"CPU of our scanner polling once a second: idle {idle_cpu * 100:.3f} %, "
        f"under load {load_cpu * 100:.3f} % of one core"
    )
    print(
        "samples (idle/load): "
        + ", ".join(
            f"{label.split(' (')[0]} {idle_t[label].samples}/{load_t[label].samples}"
            for label in idle_t
        )
    )


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl+C, so the finally blocks kill the helpers."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scenario, short budgets")
    scenario = QUICK if parser.parse_args().quick else FULL
    raise_fd_limit()
    helpers = Helpers()
    scanner = create_scanner()
    with terminate_cleanly():
        try:
            line = Helpers.ready_line(helpers.start(WATCHED_LISTENERS))
            first, second = (int(word) for word in line.split())
            ports = (first, second)
            idle = phase("idle", scanner, ports, scenario)
            build_load(helpers, scenario)
            load = phase("under load", scanner, ports, scenario)
        except KeyboardInterrupt:
            print("interrupted: cleaning up", file=sys.stderr)
            return 130
        finally:
            scanner.close()
            helpers.stop()
    print_table(idle, load, scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
