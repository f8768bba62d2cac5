"""Real monitoring components for the tests: Debian's prometheus, prometheus-node-exporter and
prometheus-blackbox-exporter, each started on a free 127.0.0.1 port with explicit flags and
stopped by its pid; plus a reader of the text exposition format and renamed listeners."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from tests.support import free_port, require_tools

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    assert url.startswith(f"http://{LOOPBACK}:"), url  # loopback only
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError as exc:
            last, value = exc, None
        if value is not None and value is not False:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@contextmanager
def component(argv_for: Callable[[int], list[str]], ready_path: str) -> Iterator[int]:
    """Start `argv_for(port)` on a free loopback port until GET ready_path answers 200; yield
    the port; stop the process by its pid. Another program may take the port first: retry."""
    for _attempt in range(5):
        port = free_port()
        child = subprocess.Popen(
            argv_for(port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 30
            ready = False
            while not ready and child.poll() is None and time.monotonic() < deadline:
                with suppress(OSError):
                    ready = http_get(f"http://{LOOPBACK}:{port}{ready_path}", 1.0)[0] == 200
                if not ready:
                    time.sleep(0.1)
            if child.poll() is not None:
                continue  # it exited: most likely the port was taken meanwhile
            assert ready, f"{argv_for(port)[0]} never answered {ready_path} with 200"
            yield port
            return
        finally:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            assert child.stderr is not None
            child.stderr.close()
    raise AssertionError(f"{argv_for(0)[0]} did not start on a free port")


@contextmanager
def node_exporter(textfile_dir: Path) -> Iterator[int]:
    require_tools("prometheus-node-exporter")
    with component(
        lambda port: [
            "prometheus-node-exporter",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={textfile_dir}",
        ],
        "/metrics",
    ) as port:
        yield port


@contextmanager
def prometheus(config: str, work: Path) -> Iterator[int]:
    require_tools("prometheus")
    work.mkdir(parents=True, exist_ok=True)
    config_file = work / "prometheus.yml"
    config_file.write_text(config)
    with component(
        lambda port: [
            "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ],
        "/-/ready",
    ) as port:
        yield port


@contextmanager
def blackbox_exporter(config_file: Path) -> Iterator[int]:
    require_tools("prometheus-blackbox-exporter")
    with component(
        lambda port: [
            "prometheus-blackbox-exporter",
            f"--config.file={config_file}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ],
        "/metrics",
    ) as port:
        yield port


# --- the text exposition format, read back ---------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample line; AssertionError for a line it cannot read."""
    found = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, line
        labels: dict[str, str] = {}
        body = match.group(3) or ""
        position = 0
        while position < len(body):
            label = _LABEL.match(body, position)
            assert label, line
            labels[label.group(1)] = unescape(label.group(2))
            position = label.end()
        found.append((match.group(1), labels, float(match.group(4))))
    return found


def value(text: str, metric: str, /, **labels: str) -> float | None:
    """The value of the one sample of `metric` whose labels include `labels`, or None."""
    hits = [v for n, have, v in samples(text) if n == metric and labels.items() <= have.items()]
    assert len(hits) <= 1, (metric, labels, hits)
    return hits[0] if hits else None


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    require_tools("promtool")
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


# --- a listener with a chosen process name ----------------------------------------------------


@contextmanager
def renamed_listener(port: int, name: bytes) -> Iterator[subprocess.Popen[str]]:
    """A child that sets its process name (comm, up to 15 bytes, via prctl) and listens on
    127.0.0.1:`port` until the block ends."""
    code = (
        "import ctypes, socket, sys\n"
        "libc = ctypes.CDLL(None)\n"
        f"assert libc.prctl(15, ctypes.c_char_p({name!r}), 0, 0, 0) == 0\n"
        "s = socket.socket()\n"
        f"s.bind(('{LOOPBACK}', {port}))\n"
        "s.listen()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        yield child
    finally:
        child.communicate(timeout=10)  # closes its stdin: it exits
