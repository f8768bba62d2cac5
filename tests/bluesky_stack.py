"""The real Bluesky Queue Server stack on loopback, for tests: Redis, the RE Manager with its
simulated profile collection, and bluesky-httpserver, each started here and stopped by pid.

The Bluesky packages pin their own versions of pydantic, fastapi and friends, so they live in a
virtual environment of their own (`make bluesky-venv` builds .venv-bluesky; BLUESKY_VENV names
another). `python tests/bluesky_stack.py` starts the stack by hand and prints how to reach it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
API_KEY = "portwatchtestkey"
LOOPBACK = "127.0.0.1"
COUNT_PLAN = {
    "name": "count",
    "args": [["det1", "det2"]],
    "kwargs": {"num": 30, "delay": 1},
    "item_type": "plan",
}


class StackError(RuntimeError):
    pass


def bluesky_venv() -> Path:
    # Absolute: the servers run in a folder of their own.
    return Path(os.environ.get("BLUESKY_VENV", REPO / ".venv-bluesky")).absolute()


def missing() -> str | None:
    """Why the stack cannot start here, or None."""
    venv = bluesky_venv()
    for tool in ("start-re-manager", "start-bluesky-httpserver", "qserver"):
        if not (venv / "bin" / tool).exists():
            return f"{venv / 'bin' / tool} is missing (run 'make bluesky-venv')"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (Debian package redis-server)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def listening(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class BlueskyStack:
    """Redis + RE Manager + HTTP server. Ports are free loopback ports unless given. With
    `netns` every process runs in that network namespace and binds `host` (the "other machine"
    of tests/test_remote.py); its ports are then free there whatever the host uses."""

    def __init__(
        self,
        http_port: int | None = None,
        workdir: Path | None = None,
        *,
        host: str = LOOPBACK,
        netns: str | None = None,
    ) -> None:
        self.host = host
        self.netns = netns
        self.venv = bluesky_venv()
        self.redis_port = free_port()
        self.control_port = free_port()
        self.info_port = free_port()
        self.http_port = http_port or free_port()
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="bluesky-stack-"))
        self.redis: subprocess.Popen[bytes] | None = None
        self.manager: subprocess.Popen[bytes] | None = None
        self.http: subprocess.Popen[bytes] | None = None

    # -- processes -------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Any:
        # Its own session, so stop() reaches the children too (the RE Manager's 60615 is held
        # by a child of the started pid). The child keeps the log open; we need not.
        if self.netns is not None:
            # `ip netns exec` execs the command: the pid stopped is the server's own.
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with (self.workdir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=self.workdir,
                start_new_session=True,
            )

    def start(self) -> BlueskyStack:
        reason = missing()
        if reason:
            raise StackError(reason)
        try:
            return self._start()
        except BaseException:
            self.stop()  # whatever did start is stopped, not left to the garbage collector
            raise

    def _start(self) -> BlueskyStack:
        self.redis = self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "no",
                # Off loopback Redis refuses clients without a password; the only other
                # address used is a test namespace's, which nothing outside can reach.
                "--protected-mode",
                "no" if self.netns else "yes",
                "--dir",
                str(self.workdir),
            ],
        )
        wait_for(lambda: listening(self.redis_port, self.host), 15, "Redis")
        profile = self.workdir / "profile"
        if not profile.exists():
            source = self._site_packages() / "bluesky_queueserver" / "profile_collection_sim"
            shutil.copytree(source, profile, ignore=shutil.ignore_patterns("__pycache__"))
        self.start_manager()
        self.start_http()
        return self

    def _site_packages(self) -> Path:
        found = sorted((self.venv / "lib").glob("python3*/site-packages"))
        if not found:
            raise StackError(f"no site-packages in {self.venv}")
        return found[0]

    def start_manager(self) -> None:
        self.manager = self._spawn(
            "re-manager",
            [
                str(self.venv / "bin" / "start-re-manager"),
                "--zmq-control-addr",
                f"tcp://{self.host}:{self.control_port}",
                "--zmq-info-addr",
                f"tcp://{self.host}:{self.info_port}",
                "--zmq-publish-console",
                "ON",
                "--redis-addr",
                f"{self.host}:{self.redis_port}",
                "--startup-dir",
                str(self.workdir / "profile"),
            ],
        )
        wait_for(lambda: listening(self.control_port, self.host), 60, "the RE Manager")

    def start_http(self) -> None:
        self.http = self._spawn(
            "httpserver",
            [
                str(self.venv / "bin" / "start-bluesky-httpserver"),
                "--host",
                self.host,
                "--port",
                str(self.http_port),
            ],
            env={
                "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": API_KEY,
                "QSERVER_ZMQ_CONTROL_ADDRESS": f"tcp://{self.host}:{self.control_port}",
                "QSERVER_ZMQ_INFO_ADDRESS": f"tcp://{self.host}:{self.info_port}",
            },
        )
        wait_for(lambda: listening(self.http_port, self.host), 60, "the HTTP server")

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def kill_manager(self) -> None:
        """The RE Manager dies (SIGKILL, with its worker): the HTTP server stays."""
        self._stop(self.manager, signal.SIGKILL)
        self.manager = None
        wait_for(lambda: not listening(self.control_port, self.host), 15, "the RE Manager to go")

    def stop(self) -> None:
        for proc in (self.http, self.manager, self.redis):
            self._stop(proc)
        self.http = self.manager = self.redis = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BlueskyStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )

    # -- the HTTP API, as the Bluesky clients use it -------------------------------------
    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://{self.host}:{self.http_port}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"ApiKey {API_KEY}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise StackError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/status")
        return result

    def wait_status(self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 60):
        def ok() -> bool:
            try:
                return check(self.status())
            except (StackError, OSError):
                return False

        return wait_for(ok, timeout, what, interval=0.3)

    def open_environment(self) -> None:
        self.wait_status("the RE Manager to be idle", lambda s: s["manager_state"] == "idle")
        self.request("POST", "/api/environment/open")
        self.wait_status(
            "the worker environment to open",
            lambda s: s["worker_environment_exists"] and s["manager_state"] == "idle",
            timeout=90,
        )

    def add_plan(self, plan: dict[str, Any] | None = None) -> None:
        self.request("POST", "/api/queue/item/add", {"item": plan or COUNT_PLAN})

    def start_queue(self) -> None:
        self.request("POST", "/api/queue/start")
        self.wait_status("the queue to run", lambda s: s["manager_state"] == "executing_queue")

    def pause(self) -> None:
        self.request("POST", "/api/re/pause", {"option": "immediate"})
        self.wait_status("the run to pause", lambda s: s["manager_state"] == "paused")

    def abort(self) -> None:
        self.request("POST", "/api/re/abort")
        self.wait_status("the manager to be idle", lambda s: s["manager_state"] == "idle")


def main() -> int:
    reason = missing()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    with BlueskyStack(http_port=int(sys.argv[1]) if len(sys.argv) > 1 else None) as stack:
        print(f"HTTP server on http://{LOOPBACK}:{stack.http_port}, API key {API_KEY}")
        print(f"RE Manager control {stack.control_port}, Redis {stack.redis_port}")
        print("Ctrl+C stops it all.")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
