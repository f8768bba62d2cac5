"""Terminating a port's owner: real child processes, truthful outcomes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from trayapp.platforms.processes import terminate

STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def spawn(code: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


@pytest.fixture
def children() -> list[subprocess.Popen[str]]:
    made: list[subprocess.Popen[str]] = []
    yield made
    for child in made:
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.stdout:
            child.stdout.close()


@pytest.mark.parametrize("pid", [0, 1, 4, -5])
def test_refuses_system_pids(pid: int) -> None:
    outcome = terminate(pid)
    assert outcome.status == "refused"


def test_refuses_itself() -> None:
    outcome = terminate(os.getpid())
    assert outcome.status == "refused" and "itself" in outcome.message


def test_terminates_a_real_child(children: list[subprocess.Popen[str]]) -> None:
    child = spawn("import time; print('ready', flush=True); time.sleep(60)")
    children.append(child)
    outcome = terminate(child.pid, timeout=5)
    assert outcome.status == "terminated", outcome.message
    code = child.wait(5)
    # POSIX reports the signal; Windows' TerminateProcess leaves an exit code instead.
    assert code == -signal.SIGTERM if os.name == "posix" else code != 0


@pytest.mark.posix("SIGTERM cannot be ignored on Windows: there terminating is killing")
def test_stubborn_child_is_reported_then_killed(children: list[subprocess.Popen[str]]) -> None:
    child = spawn(STUBBORN)
    children.append(child)
    started = time.monotonic()
    outcome = terminate(child.pid, timeout=0.5)
    assert outcome.status == "still-running"
    assert "still runs" in outcome.message
    assert time.monotonic() - started < 3
    assert child.poll() is None
    killed = terminate(child.pid, force=True, timeout=5)
    assert killed.status == "terminated"
    assert child.wait(5) == -signal.SIGKILL


def test_gone_and_reused_pids(children: list[subprocess.Popen[str]]) -> None:
    child = spawn("print('ready', flush=True)")
    children.append(child)
    child.wait(5)
    assert terminate(child.pid).status == "gone"
    other = spawn("import time; print('ready', flush=True); time.sleep(60)")
    children.append(other)
    # A create time that does not match: the pid belongs to someone else now.
    outcome = terminate(other.pid, create_time=1.0)
    assert outcome.status == "gone"
    assert other.poll() is None
