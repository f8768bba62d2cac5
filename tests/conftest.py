"""Every test runs with its own PORTWATCH_HOME, so none touches the user's real settings,
and Qt widgets render offscreen in the test process (the real desktop is in tests/desktop)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def portwatch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "portwatch-home"
    monkeypatch.setenv("PORTWATCH_HOME", str(home))
    yield home


@pytest.fixture
def http_listener() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A real `python -m http.server` on a free loopback port: (port, process)."""
    from tests.ui_support import free_port, start_server

    for _attempt in range(5):  # another program may take the free port first
        port = free_port()
        server = start_server(port)
        if server is not None:
            break
    else:
        pytest.fail("could not start http.server on a free port")
    try:
        yield port, server
    finally:
        server.terminate()
        server.wait(10)
