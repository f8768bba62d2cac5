"""Soak: the watcher for many cycles against a listener that flaps, on loopback only.

A helper process opens and closes a TCP listener on 127.0.0.1 every --flap seconds (50 ms by
default) and counts the changes it makes. This process runs trayapp.core.watcher.Watcher.run, the
loop the command line uses, with the scanner create_scanner() picks and an events log with
rotation in a temporary folder, for --cycles polls (or until --max-seconds). It reports:

* RSS at the start, after a warm-up, at the end and its maximum, and the growth;
* CPU time used and per cycle;
* events seen against changes made, with missed changes explained by the longest poll gap;
* whether the last event matches the listener's final state;
* the events log's size against its rotation cap.

    python benchmarks/soak.py                      # 100,000 cycles at 1 ms, about 2 minutes
    python benchmarks/soak.py --cycles 10000       # a shorter run

The helper reads its stdin and exits on EOF, so it goes away even if this script is killed; it
is also killed explicitly on exit, error or Ctrl+C, and the temporary folder is removed.
Exit status 0 when the run passes (RSS growth under --rss-limit-mb, final state right, no
false event), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from trayapp.core.events import Event
from trayapp.core.history import EventLog
from trayapp.core.model import Port, Snapshot
from trayapp.core.watcher import Watcher
from trayapp.platforms.scanners import create_scanner

MB = 1024 * 1024
HELPER_TIMEOUT = 20.0

# Opens/closes a listener every `period` seconds once told "go"; "stop" makes it report
# "changes <n> <open|closed> <bind failures>" and hold its last state until stdin closes.
FLAPPER = r"""
import os, select, socket, sys, time
port, period = int(sys.argv[1]), float(sys.argv[2])
sock, changes, failures, flapping, next_at, pending = None, 0, 0, False, 0.0, b""
print("ready", flush=True)
while True:
    timeout = max(0.0, next_at - time.monotonic()) if flapping else None
    if select.select([0], [], [], timeout)[0]:
        data = os.read(0, 4096)
        if not data:
            break
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line == b"go":
                flapping, next_at = True, time.monotonic() + period
            elif line == b"stop":
                flapping = False
                state = "open" if sock else "closed"
                print(f"changes {changes} {state} {failures}", flush=True)
        continue
    if sock is None:
        candidate = socket.socket()
        candidate.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            candidate.bind(("127.0.0.1", port))
            candidate.listen()
        except OSError:
            candidate.close()
            failures += 1
        else:
            sock, changes = candidate, changes + 1
    else:
        sock.close()
        sock, changes = None, changes + 1
    next_at += period
    if next_at < time.monotonic():
        next_at = time.monotonic() + period
"""


@dataclass
class SoakResult:
    cycles: int
    interval: float
    flap: float
    backend: str
    stopped_by: str  # "cycles" or "time"
    wall: float
    cpu: float
    rss_start: int
    rss_warm: int
    rss_end: int
    rss_max: int
    changes_made: int
    bind_failures: int
    events: Counter[str] = field(default_factory=Counter)
    rss_samples: list[int] = field(default_factory=list)  # at each tenth of the run
    false_events: int = 0  # a started/stopped that does not follow from the state before
    # The helper is one process that never hands its socket on: any owner change is false.
    # Counted apart from false_events, which the test suite's short run asserts on.
    failed_scans: int = 0
    max_gap: float = 0.0  # longest time between two successful polls
    final_open: bool = False
    last_event: str | None = None
    final_state_seen: bool | None = None  # the watcher's last snapshot: listening?
    log_bytes: int = 0
    log_cap: int = 0
    log_files: int = 0
    log_tail_matches: bool = False

    @property
    def events_seen(self) -> int:
        return sum(self.events.values())

    @property
    def missed(self) -> int:
        return self.changes_made - self.events["started"] - self.events["stopped"]

    @property
    def rss_growth(self) -> int:
        return self.rss_end - self.rss_warm

    @property
    def final_state_right(self) -> bool:
        expected = "started" if self.final_open else "stopped"
        if self.final_state_seen is not self.final_open:
            return False
        return self.last_event in ((expected, "owner-changed") if self.final_open else (expected,))

    @property
    def misses_explained(self) -> bool:
        """A missed change needs a gap between polls longer than a flap (a stall)."""
        return self.missed == 0 or self.max_gap > self.flap

    def failures(self, rss_limit: int = 2 * MB) -> list[str]:
        """Why the run fails its targets (empty: it passes)."""
        reasons = []
        if not self.final_state_right:
            reasons.append("the last event does not match the final state")
        if self.false_events:
            reasons.append(f"{self.false_events} events out of order")
        if self.events["owner-changed"]:
            reasons.append(f"{self.events['owner-changed']} false owner-changed events")
        if self.missed < 0 or not self.misses_explained:
            reasons.append(f"{self.missed} changes missed without a stall to explain them")
        if self.rss_growth >= rss_limit:
            reasons.append(f"RSS grew {self.rss_growth / MB:.2f} MB")
        if self.log_bytes > self.log_cap:
            reasons.append("the events log outgrew its cap")
        if not self.log_tail_matches:
            reasons.append("the events log does not hold the latest events")
        return reasons

    def passed(self, rss_limit: int = 2 * MB) -> bool:
        return not self.failures(rss_limit)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Flapper:
    """The helper process; always ends up killed and reaped."""

    def __init__(self, port: int, period: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FLAPPER, str(port), str(period)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def read_line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], HELPER_TIMEOUT)
        if not ready:
            raise TimeoutError("the flapper did not answer")
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError(f"the flapper exited (status {self.proc.poll()})")
        return line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def flapper(port: int, period: float) -> Iterator[Flapper]:
    helper = Flapper(port, period)
    try:
        if helper.read_line() != "ready":
            raise RuntimeError("the flapper did not start")
        yield helper
    finally:
        if helper.proc.poll() is None:
            helper.proc.kill()
        helper.close()


def _rss(process: psutil.Process) -> int:
    return int(process.memory_info().rss)


def _follows(previous_listening: bool, kind: str) -> bool:
    """Can this event follow a port that was (or was not) listening?"""
    return previous_listening if kind in ("stopped", "owner-changed") else not previous_listening


def run_soak(
    cycles: int = 100_000,
    interval: float = 0.001,
    flap: float = 0.05,
    max_seconds: float = 900.0,
    log_max_bytes: int = 64 * 1024,
    log_backups: int = 3,
    progress: Callable[[int, float], None] | None = None,
) -> SoakResult:
    me = psutil.Process()
    port = Port(free_port())
    warm_at = min(1000, max(1, cycles // 10))
    with tempfile.TemporaryDirectory(prefix="portwatch-soak-") as folder:
        log = EventLog(Path(folder) / "events.jsonl", max_bytes=log_max_bytes, backups=log_backups)
        watcher = Watcher(create_scanner(), [port], log=log)
        try:
            with flapper(port.number, flap) as helper:
                first, _ = watcher.poll()  # the baseline: the helper starts closed
                if first is None or first.states[0].listening:
                    raise RuntimeError(f"{port} is not free to flap: {watcher.last_error}")
                gc.collect()
                result = SoakResult(
                    cycles=0,
                    interval=interval,
                    flap=flap,
                    backend=watcher.scanner.name,
                    stopped_by="cycles",
                    wall=0.0,
                    cpu=0.0,
                    rss_start=_rss(me),
                    rss_warm=0,
                    rss_end=0,
                    rss_max=0,
                    changes_made=0,
                    bind_failures=0,
                    log_cap=log_max_bytes * (log_backups + 1),
                )
                # The last events, as (kind, pid): enough to cover the whole log, allocated up
                # front so that keeping them does not count as growth.
                seen: deque[tuple[str, int | None] | None] = deque(
                    [None] * (result.log_cap // 100), maxlen=result.log_cap // 100
                )
                listening = [False]
                last_ok = [time.monotonic()]
                stop = threading.Event()
                cpu_start = sum(me.cpu_times()[:2])
                started = time.monotonic()

                def on_poll(snapshot: Snapshot | None, events: list[Event]) -> None:
                    result.cycles += 1
                    now = time.monotonic()
                    if snapshot is None:
                        result.failed_scans += 1
                    else:
                        result.max_gap = max(result.max_gap, now - last_ok[0])
                        last_ok[0] = now
                    for event in events:
                        if not _follows(listening[0], event.kind):
                            result.false_events += 1
                        listening[0] = event.kind != "stopped"
                        result.events[event.kind] += 1
                        seen.append((event.kind, event.pid))
                    if snapshot is not None and snapshot.states[0].listening != listening[0]:
                        result.false_events += 1  # an event was missing for a change seen
                        listening[0] = snapshot.states[0].listening
                    if result.cycles == warm_at:
                        gc.collect()
                        result.rss_warm = _rss(me)
                    if result.cycles % 1000 == 0:
                        rss = _rss(me)
                        result.rss_max = max(result.rss_max, rss)
                        if result.cycles % max(1000, cycles // 10 // 1000 * 1000) == 0:
                            result.rss_samples.append(rss)
                        if progress is not None:
                            progress(result.cycles, now - started)
                    if result.cycles >= cycles:
                        stop.set()
                    elif now - started >= max_seconds:
                        result.stopped_by = "time"
                        stop.set()

                helper.send("go")
                watcher.run(interval, on_poll, stop)
                result.wall = time.monotonic() - started
                result.cpu = sum(me.cpu_times()[:2]) - cpu_start
                helper.send("stop")
                _word, changes, state, failures = helper.read_line().split()
                result.changes_made, result.bind_failures = int(changes), int(failures)
                result.final_open = state == "open"
                final, events = watcher.poll()  # the helper holds its last state now
                for event in events:
                    if not _follows(listening[0], event.kind):
                        result.false_events += 1
                    listening[0] = event.kind != "stopped"
                    result.events[event.kind] += 1
                    seen.append((event.kind, event.pid))
                result.final_state_seen = final.states[0].listening if final else None
                result.last_event = seen[-1][0] if seen[-1] else None
        finally:
            watcher.scanner.close()
        gc.collect()
        result.rss_end = _rss(me)
        result.rss_warm = result.rss_warm or result.rss_start
        result.rss_max = max(result.rss_max, result.rss_end, result.rss_warm)
        files = log.files()
        result.log_files = len(files)
        result.log_bytes = sum(p.stat().st_size for p in files)
        logged = [(e.kind, e.pid) for e in log.read().events]
        result.log_tail_matches = bool(logged) and logged == list(seen)[-len(logged) :]
    return result


def _mb(n: int) -> str:
    return f"{n / MB:.2f} MB"


def table(r: SoakResult, rss_limit: int = 2 * MB) -> str:
    cpu_share = 100 * r.cpu / r.wall if r.wall else 0.0
    per_cycle = 1e6 * r.cpu / r.cycles if r.cycles else 0.0
    expected = "open" if r.final_open else "closed"
    rows = [
        ("backend", r.backend),
        ("cycles run", f"{r.cycles:,} (stopped by {r.stopped_by})"),
        ("poll interval / flap period", f"{r.interval * 1000:g} ms / {r.flap * 1000:g} ms"),
        ("wall time", f"{r.wall:.1f} s"),
        (
            "CPU (user+sys)",
            f"{r.cpu:.1f} s = {cpu_share:.1f} % of one core, {per_cycle:.0f} us/cycle",
        ),
        ("RSS start / warm / end", f"{_mb(r.rss_start)} / {_mb(r.rss_warm)} / {_mb(r.rss_end)}"),
        ("RSS max", _mb(r.rss_max)),
        ("RSS growth after warm-up", f"{(r.rss_end - r.rss_warm) / 1024:+.0f} KiB"),
        ("RSS growth from start", f"{(r.rss_end - r.rss_start) / 1024:+.0f} KiB"),
        ("changes made (helper)", f"{r.changes_made:,}"),
        (
            "events seen (watcher)",
            f"{r.events_seen:,} (started {r.events['started']:,}, stopped "
            f"{r.events['stopped']:,}, owner-changed {r.events['owner-changed']:,})",
        ),
        ("missed changes", f"{r.missed:,} (longest poll gap {r.max_gap * 1000:.1f} ms)"),
        (
            "false events",
            f"{r.false_events + r.events['owner-changed']} ({r.false_events} out of order, "
            f"{r.events['owner-changed']} owner-changed for a socket that never changed owner)",
        ),
        ("failed scans", str(r.failed_scans)),
        ("helper bind failures", str(r.bind_failures)),
        (
            "final state",
            f"{expected}; last event {r.last_event!r}: "
            + ("matches" if r.final_state_right else "DOES NOT MATCH"),
        ),
        (
            "events log",
            f"{r.log_files} files, {r.log_bytes / 1024:.0f} KiB (cap {r.log_cap / 1024:.0f} KiB), "
            + ("tail matches" if r.log_tail_matches else "TAIL DIFFERS"),
        ),
        ("RSS at each tenth", " ".join(f"{rss / MB:.2f}" for rss in r.rss_samples) + " MB"),
        (
            "result",
            f"PASS (RSS growth < {rss_limit / MB:g} MB, final state right, no false event)"
            if r.passed(rss_limit)
            else "FAIL: " + "; ".join(r.failures(rss_limit)),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=100_000, help="polls to run (100,000)")
    parser.add_argument("--interval", type=float, default=0.001, help="seconds between polls")
    parser.add_argument("--flap", type=float, default=0.05, help="seconds between changes")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long")
    parser.add_argument("--rss-limit-mb", type=float, default=2.0, help="pass threshold")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.interval < 0 or args.flap <= 0 or args.max_seconds <= 0:
        parser.error("--cycles, --flap and --max-seconds must be positive, --interval >= 0")

    def progress(done: int, elapsed: float) -> None:
        if done % 10_000 == 0:
            print(f"  {done:,} cycles, {elapsed:.0f} s", file=sys.stderr, flush=True)

    print(
        f"soak: {args.cycles:,} cycles at {args.interval * 1000:g} ms, listener flapping every "
        f"{args.flap * 1000:g} ms on 127.0.0.1 (pid {os.getpid()})",
        file=sys.stderr,
        flush=True,
    )
    try:
        result = run_soak(
            args.cycles, args.interval, args.flap, args.max_seconds, progress=progress
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    limit = int(args.rss_limit_mb * MB)
    print(table(result, limit))
    return 0 if result.passed(limit) else 1


if __name__ == "__main__":
    raise SystemExit(main())
