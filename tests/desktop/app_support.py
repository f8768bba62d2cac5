"""The app under test on a desktop harness (X11 or Wayland): started, configured, and a real
HTTP server for it to watch. Shared by test_tray_e2e.py and test_wayland_e2e.py."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support import free_port as free_port  # re-exported for older imports

from .harness import Desktop, wait_until

GREEN = "#13923d"  # resources/icons/all.svg
RING = "#d1d5db"  # resources/icons/none.svg
REPO = Path(__file__).resolve().parents[2]


class App:
    """`python -m trayapp ... --debug` on the desktop, with its own PORTWATCH_HOME. Its stderr
    goes to a pipe read at the end, or to `stderr_file` when it may say a lot (WAYLAND_DEBUG)."""

    def __init__(
        self,
        desktop: Desktop,
        home: Path,
        *args: str,
        env: dict[str, str] | None = None,
        stderr_file: Path | None = None,
    ) -> None:
        env = {**desktop.env, "PORTWATCH_HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})}
        self.home = home
        self.stderr_file = stderr_file
        if stderr_file is not None:
            stderr_file.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            err = stack.enter_context(stderr_file.open("w")) if stderr_file else subprocess.PIPE
            self.proc = desktop.spawn(
                [sys.executable, "-m", "trayapp", *args, "--debug"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )

    def log(self) -> str:
        path = self.home / "log" / "portwatch.log"
        return path.read_text() if path.exists() else ""

    def stderr(self) -> str:
        """What it wrote to stderr so far (only with stderr_file)."""
        assert self.stderr_file is not None
        return self.stderr_file.read_text(errors="replace")

    def finish(self, timeout: float = 15) -> tuple[int, str]:
        try:
            _out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return self.proc.returncode, self.stderr() if self.stderr_file else err

    def stop(self) -> None:
        """End it (SIGTERM) if it still runs: the clean-up after a test that failed early."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.finish()

    def quit_chosen(self, desktop: Desktop, screenshot: str) -> None:
        """After Quit was clicked in the tray menu: the app exits with 0 and no traceback, and
        leaves no process and no tray item behind."""
        code, err = self.finish(timeout=20)
        assert code == 0, err
        assert "Traceback" not in err
        wait_until(lambda: not desktop.stray_processes(), 10, message="no app process left")
        wait_until(lambda: not desktop.tray_items(), 10, message="the tray item gone")
        desktop.screenshot(screenshot)


def write_config(home: Path, port: int, label: str) -> None:
    folder = home / "config"
    folder.mkdir(parents=True)
    config = {"ports": [{"port": port, "label": label}], "interval": 0.5}
    (folder / "config.json").write_text(json.dumps(config))


def start_server(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_until(up, 10, message=f"http.server on {port}")
    return server
