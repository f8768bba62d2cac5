"""Every test runs with its own PORTWATCH_HOME, so none touches the user's real settings,
and Qt widgets render offscreen in the test process (the real desktop is in tests/desktop).

OS markers: a test that only makes sense on some OSes says so with @pytest.mark.linux(reason),
posix(reason), windows(reason) or macos(reason); elsewhere it is skipped with that reason, never
left to crash. The CI workflow runs the same suite on Linux, Windows and macOS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.bluesky_stack import BlueskyStack

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# marker -> (does this OS have it, what to call the OSes in the skip reason)
OS_MARKERS: dict[str, tuple[bool, str]] = {
    "linux": (sys.platform.startswith("linux"), "Linux"),
    "posix": (os.name == "posix", "POSIX (Linux, macOS)"),
    "windows": (sys.platform == "win32", "Windows"),
    "macos": (sys.platform == "darwin", "macOS"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in OS_MARKERS:
            for mark in item.iter_markers(name):
                if not (mark.args and isinstance(mark.args[0], str) and mark.args[0].strip()):
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.{name} needs the reason as its argument"
                    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture: a fixture may need what only the marked OS has."""
    for name, (here, label) in OS_MARKERS.items():
        mark = item.get_closest_marker(name)
        if mark is not None and not here:
            pytest.skip(f"{label} only: {mark.args[0]}")


@pytest.fixture(autouse=True)
def portwatch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "portwatch-home"
    monkeypatch.setenv("PORTWATCH_HOME", str(home))
    yield home


@pytest.fixture(autouse=True)
def _no_bluesky_key_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key exported in the developer's shell must not change what the tests see."""
    from trayapp.core.apikey import ENV_KEY, ENV_KEYFILE

    for name in (ENV_KEY, ENV_KEYFILE):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def bluesky_stack() -> Iterator[BlueskyStack]:
    """The real Redis + RE Manager + bluesky-httpserver on loopback, one per test module.
    Missing (no .venv-bluesky, no redis-server): skipped here, a failure under CI=true."""
    from tests.bluesky_stack import BlueskyStack, missing
    from tests.support import missing_part

    reason = missing()
    if reason:
        missing_part(reason)
    with BlueskyStack() as stack:
        yield stack


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP socket listening on a free 127.0.0.1 port (no process of its own: this one)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server
    server.close()


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
