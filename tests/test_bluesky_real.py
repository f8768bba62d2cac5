"""The command line against the real Bluesky Queue Server (Redis + RE Manager +
bluesky-httpserver on loopback, see tests/bluesky_stack.py): what `check`, `check --json`
and `wait --healthy` say, with the key taken as the Bluesky tools take it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bluesky_stack import API_KEY, BlueskyStack

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.linux(
    "the real stack comes from make bluesky-venv and Debian's redis-server (tests/bluesky_stack.py)"
)


def portwatch(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "trayapp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=REPO,
    )


def check_json(port: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = portwatch("check", "--json", str(port), env=env)
    assert done.returncode == 0, done.stderr
    assert API_KEY not in done.stdout + done.stderr
    [entry] = json.loads(done.stdout)
    return dict(entry)


def test_check_with_and_without_the_key(bluesky_stack: BlueskyStack, tmp_path: Path) -> None:
    port = bluesky_stack.http_port
    # No key anywhere: the server is found (its /openapi.json) and says it needs one.
    probe = check_json(port)["probe"]
    assert (probe["health"], probe["verdict"], probe["http_status"]) == (
        "needs-key",
        "unhealthy",
        401,
    )
    # The key in the environment, as for qserver and the other Bluesky tools.
    probe = check_json(port, {"QSERVER_HTTP_SERVER_API_KEY": API_KEY})["probe"]
    assert (probe["health"], probe["verdict"]) == ("ok", "healthy")
    assert probe["api_key_from"] == "QSERVER_HTTP_SERVER_API_KEY"
    fields = probe["bluesky"]
    assert fields["manager_state"] == "idle"
    assert isinstance(fields["plan_history_uid"], str)
    assert fields["worker_environment_state"] in ("closed", "idle")
    # ... or in the file the environment names.
    key_file = tmp_path / "qserver.key"
    key_file.write_text(API_KEY + "\n")
    probe = check_json(port, {"QSERVER_HTTP_SERVER_API_KEYFILE": str(key_file)})["probe"]
    assert probe["health"] == "ok"
    assert probe["api_key_from"] == f"QSERVER_HTTP_SERVER_API_KEYFILE ({key_file})"
    # A wrong key is rejected, and said so without showing it.
    wrong = check_json(port, {"QSERVER_HTTP_SERVER_API_KEY": "not-the-key"})["probe"]
    assert wrong["health"] == "key-rejected"
    assert "not-the-key" not in json.dumps(wrong)
    text = portwatch("check", str(port), env={"QSERVER_HTTP_SERVER_API_KEY": API_KEY})
    assert "health: healthy: RE Manager idle" in text.stdout
    assert "API key from QSERVER_HTTP_SERVER_API_KEY" in text.stdout


def test_wait_healthy_follows_the_re_manager(bluesky_stack: BlueskyStack) -> None:
    port = str(bluesky_stack.http_port)
    env = {"QSERVER_HTTP_SERVER_API_KEY": API_KEY}
    assert portwatch("wait", port, "--healthy", "--timeout", "20", env=env).returncode == 0
    bluesky_stack.kill_manager()
    try:
        # The HTTP server still listens: plain `wait` is satisfied, `--healthy` is not.
        assert portwatch("wait", port, "--timeout", "5", env=env).returncode == 0
        # The HTTP server answers from its last status for a moment, then with 408.
        deadline = time.monotonic() + 20
        while (probe := check_json(bluesky_stack.http_port, env)["probe"])["health"] == "ok":
            assert time.monotonic() < deadline, "the server never noticed its RE Manager gone"
            time.sleep(0.5)
        assert (probe["health"], probe["http_status"]) == ("manager-unreachable", 408)
        started = time.monotonic()
        gave_up = portwatch("wait", port, "--healthy", "--timeout", "4", env=env)
        assert gave_up.returncode == 1
        assert 4 <= time.monotonic() - started < 15
    finally:
        bluesky_stack.start_manager()
    assert portwatch("wait", port, "--healthy", "--timeout", "60", env=env).returncode == 0
