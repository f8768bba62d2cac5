"""Shared by the native tests: a listener in a child process, `portwatch check --json` on it,
and where the built app of this OS is (packaging/build_bundle.py puts it in dist/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import child_env, missing_part

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
LISTENER = (
    "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"
)


@contextmanager
def child_listener() -> Iterator[tuple[int, int]]:
    """A TCP listener on 127.0.0.1 in a child process: (port, pid). It ends when stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        port = int(proc.stdout.readline())
        yield port, proc.pid
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def check_json(argv: list[str], port: int, home: Path) -> dict[str, Any]:
    """Run `<argv> check PORT --json --no-probe`; the one port's record."""
    done = subprocess.run(
        [*argv, "check", str(port), "--json", "--no-probe"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(PORTWATCH_HOME=str(home), PYTHONPATH=str(REPO)),
        cwd=home.parent,
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    [record] = json.loads(done.stdout)
    return dict(record)


def bundle_cli() -> Path:
    """The built app's command line: the .app's on macOS, portwatch(.exe) elsewhere. Missing:
    a skip locally, a failure under CI=true (the workflow builds it before these tests)."""
    if sys.platform == "darwin":
        path = DIST / "Port Watch.app" / "Contents" / "MacOS" / "portwatch"
    else:
        path = DIST / "portwatch" / ("portwatch.exe" if os.name == "nt" else "portwatch")
    if not path.is_file():
        missing_part(f"no built app at {path}: run python packaging/build_bundle.py first")
    return path
