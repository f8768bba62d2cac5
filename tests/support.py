"""Helpers shared by the test modules."""

from __future__ import annotations

import os
import shutil
import socket
import sys

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
