"""Stopping the process that owns a port, and telling the truth about what happened."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Literal

import psutil

Status = Literal["terminated", "still-running", "access-denied", "gone", "refused"]

# pid 0 is the kernel's idle/swapper task, 1 is init/launchd, 4 is Windows' "System".
PROTECTED_PIDS = frozenset({0, 1, 4})


@dataclass(frozen=True)
class Outcome:
    status: Status
    message: str


def refusal(pid: int) -> str | None:
    """Why this pid must never be stopped from here, or None."""
    if pid in PROTECTED_PIDS or pid < 0:
        return f"refusing to stop pid {pid}: it is part of the operating system"
    if pid == os.getpid():
        return "refusing to stop Port Watch itself; use Quit instead"
    return None


def terminate(
    pid: int,
    create_time: float | None = None,
    *,
    force: bool = False,
    timeout: float = 5.0,
) -> Outcome:
    """Ask the process to stop (SIGTERM / TerminateProcess), or kill it with `force`, then wait.

    `create_time` guards against pid reuse: if the pid now belongs to a newer process, it is
    left alone.
    """
    reason = refusal(pid)
    if reason:
        return Outcome("refused", reason)
    try:
        process = psutil.Process(pid)
        name = process.name()
        if create_time is not None and abs(process.create_time() - create_time) > 1.0:
            return Outcome("gone", f"pid {pid} has exited; the pid now belongs to {name}")
        if force:
            process.kill()
        else:
            process.terminate()
    except psutil.NoSuchProcess:
        return Outcome("gone", f"pid {pid} had already exited")
    except psutil.AccessDenied:
        return Outcome("access-denied", f"access denied: pid {pid} belongs to another user")
    if not _wait_gone(process, timeout):
        verb = "killed" if force else "asked to stop"
        return Outcome(
            "still-running", f"{name} (pid {pid}) was {verb} but still runs after {timeout:g} s"
        )
    verb = "killed" if force else "stopped"
    return Outcome("terminated", f"{name} (pid {pid}) {verb}")


def _wait_gone(process: psutil.Process, timeout: float) -> bool:
    """True once the process has exited; a zombie counts as exited (only reaping is left)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            # is_running() also notices a pid that was reused by a new process.
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
