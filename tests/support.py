"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

# What a child process needs from the OS itself. Windows: without SYSTEMROOT Python cannot
# even seed its random module or start the socket layer, without PATH it finds no DLLs, without
# USERNAME getpass.getuser() falls back to the pwd module, which Windows does not have.
_WINDOWS_VARS = (
    "SYSTEMROOT",
    "SYSTEMDRIVE",
    "WINDIR",
    "PATH",
    "PATHEXT",
    "COMSPEC",
    "TEMP",
    "TMP",
    "USERNAME",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
)


def missing_part(reason: str) -> None:
    """A system part the test needs is missing: CI installs it, so there that is a failure."""
    if IN_CI:
        pytest.fail(f"CI should provide this but does not: {reason}")
    pytest.skip(reason)


def require_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        missing_part(f"needs {', '.join(missing)} on PATH")


def child_env(**extra: str) -> dict[str, str]:
    """A minimal environment for a child process, built from what this OS needs, plus
    `extra`. Nothing else leaks in from the test run (display, bus, locale, Qt settings)."""
    if sys.platform == "win32":
        env = {name: os.environ[name] for name in _WINDOWS_VARS if name in os.environ}
    else:
        env = {"PATH": "/usr/bin:/bin"}
    env.update(extra)
    return env


def app_env(home: Path, *, private_tmp: bool = True) -> dict[str, str]:
    """child_env for the tray app run by a test: offscreen Qt, no waiting for a tray, and what it
    writes under `home` (settings, logs, its runtime folder). With `private_tmp` its temp folder,
    where the single-instance socket goes, is that runtime folder too; leave it off where
    `home`'s path is too long for a socket's (about 100 bytes)."""
    run = home / "run"
    run.mkdir(parents=True, mode=0o700, exist_ok=True)
    env = child_env(
        PORTWATCH_HOME=str(home),
        QT_QPA_PLATFORM="offscreen",
        PORTWATCH_TRAY_WAIT="0",
        XDG_RUNTIME_DIR=str(run),
        HOME=str(home),
    )
    if private_tmp:
        env["TMPDIR"] = str(run)
    return env


def wait_for_log(
    proc: subprocess.Popen[str], log_file: Path, text: str, timeout: float = 30
) -> str:
    """The app's log once it holds `text`; fails if the app exits or the time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log_file.read_text(errors="replace") if log_file.is_file() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"the app did not log {text!r} (exit status {proc.poll()})")


def user_name() -> str:
    """Who this test runs as, as the scanners report it (POSIX: the effective user)."""
    if os.name == "posix":
        import pwd  # POSIX only, so imported here and not where Windows collects tests

        return pwd.getpwuid(os.geteuid()).pw_name
    import psutil  # Windows: "DOMAIN\\user", as the scanners say it

    return str(psutil.Process().username())


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing on 127.0.0.1 uses right now (another program may still take it)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
