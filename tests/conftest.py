"""Every test runs with its own PORTWATCH_HOME, so none touches the user's real settings,
and Qt widgets render offscreen in the test process (the real desktop is in tests/desktop)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.bluesky_stack import BlueskyStack

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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
