"""Helpers for tests/test_scanner.py: real sockets, real child processes, patient polling."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import child_env
from trayapp.core.model import Port, Snapshot
from trayapp.core.scanning import Scanner

if TYPE_CHECKING:
    import pwd  # POSIX only: Windows must still collect the modules that use these helpers

DEADLINE = 20.0  # seconds to wait for something a child process does


@dataclass
class Backend:
    """A scanner and what its OS interface lets it tell."""

    name: str
    scanner: Scanner

    @property
    def tells_dual_stack(self) -> bool:
        return self.name == "netlink"

    @property
    def tells_sockets_apart(self) -> bool:  # SO_REUSEPORT: two sockets, not one with 2 owners
        return self.name == "netlink"

    @property
    def lists_every_holder(self) -> bool:  # psutil on Linux names one pid per socket
        return not (self.name == "psutil" and sys.platform.startswith("linux"))

    @property
    def knows_socket_uid(self) -> bool:
        return self.name == "netlink"

    @property
    def sees_fileless_sockets(self) -> bool:  # TIME_WAIT belongs to no process
        return self.name != "psutil-own+probe"

    def scan(self, *ports: Port, connections: bool = False) -> Snapshot:
        snapshot = self.scanner.scan(ports, connections=connections)
        assert snapshot.backend == self.name
        assert [s.port for s in snapshot.states] == list(ports)
        return snapshot


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def quiet_ports() -> range:
    """Ports the OS never picks by itself (below Linux's ephemeral range), so no concurrent
    connect() elsewhere on the machine lands on a test's port as its source port."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 49152  # IANA's dynamic range: macOS and Windows defaults
    return range(10_000, max(low, 10_100) - 16)


def is_free(number: int) -> bool:
    """Nobody has ``number`` bound, for TCP or UDP, IPv4 or IPv6."""
    family = socket.AF_INET6 if has_ipv6() else socket.AF_INET
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(family, kind) as sock:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind(("", number))
    except OSError:
        return False
    return True


def free_port(run: int = 1) -> int:
    """The first of ``run`` consecutive ports that are free right now."""
    ports = quiet_ports()
    for _ in range(200):
        base = random.randrange(ports.start, ports.stop - run)
        if all(is_free(base + offset) for offset in range(run)):
            return base
    raise RuntimeError(f"no run of {run} free ports found")


@contextlib.contextmanager
def tcp_listener(
    address: str = "127.0.0.1",
    port: int = 0,
    *,
    family: socket.AddressFamily = socket.AF_INET,
    v6only: bool | None = None,
    reuseport: bool = False,
) -> Iterator[socket.socket]:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if v6only is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
        sock.listen()
        yield sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def wait_for_snapshot(
    backend: Backend,
    ports: tuple[Port, ...],
    condition: Callable[[Snapshot], bool],
    *,
    connections: bool = False,
    timeout: float = DEADLINE,
) -> Snapshot:
    """Scan until ``condition`` holds; fail with the last snapshot at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = backend.scan(*ports, connections=connections)
        if condition(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s; last snapshot: {snapshot}")
        time.sleep(0.05)


class Child:
    """A Python child process in its own session (POSIX; on Windows its own process group):
    killed with all its descendants at exit (Windows: the child itself).

    It gets the test's stdin as a pipe: closing that is how it is told to finish. Its stdout is
    read by a thread, since Windows cannot wait on a pipe with select().
    """

    def __init__(
        self, argv: list[str], *, env: dict[str, str] | None = None, terminate: bool = False
    ) -> None:
        self._terminate = terminate  # for children that do not read stdin (http.server)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=os.name == "posix",
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            env=env,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):  # closed by finish()
            for line in self.proc.stdout:
                self._lines.put(line)
        self._lines.put("")  # end of output

    @classmethod
    def python(cls, code: str, *args: str) -> Child:
        return cls([sys.executable, "-c", code, *args])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_line(self, timeout: float = DEADLINE) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"child {self.proc.args!r} said nothing within {timeout} s")
        if not line:
            pytest.fail(f"child exited early: {self.finish()}")
        return line.strip()

    def finish(self, timeout: float = 10.0) -> str:
        """Tell the child to stop, kill its whole session if it dawdles; return its stderr."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        if self._terminate:
            self._signal_group(stop=False)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        self._signal_group(stop=True)
        self.proc.wait()
        self._reader.join(5)  # the pipe is at its end once the child is gone
        err = self.proc.stderr.read()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return err

    def _signal_group(self, stop: bool) -> None:
        """SIGTERM (or SIGKILL when `stop`) to the child's session; Windows: end the child."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.name == "posix":
                os.killpg(self.proc.pid, signal.SIGKILL if stop else signal.SIGTERM)
            elif self.proc.poll() is None:
                self.proc.kill() if stop else self.proc.terminate()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def as_user(user: pwd.struct_passwd) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


def user_env(pythonpath: str) -> dict[str, str]:
    return child_env(PYTHONPATH=pythonpath, PYTHONDONTWRITEBYTECODE="1")


def json_as(user: pwd.struct_passwd, sandbox: tuple[str, str], code: str, *args: str) -> Any:
    """Run `code`, which prints JSON, as `user` with the sandbox's python (user_sandbox); what
    it printed. It must succeed."""
    python, pythonpath = sandbox
    done = subprocess.run(
        [*as_user(user), python, "-c", code, *args],
        env=user_env(pythonpath),
        cwd=pythonpath,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@contextlib.contextmanager
def system_users(names: tuple[str, ...]) -> Iterator[tuple[pwd.struct_passwd, ...]]:
    """Create system users for a test (root only), and remove them afterwards. Each test
    module uses its own names, so modules running at once don't delete each other's users."""
    for name in names:
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in (0, 9):  # 9: left over from an earlier run, fine
            pytest.fail(f"useradd {name} failed: {done.stderr}")
    import pwd

    try:
        yield tuple(pwd.getpwnam(name) for name in names)
    finally:
        for name in names:
            subprocess.run(["userdel", name], capture_output=True, check=False)


@contextlib.contextmanager
def user_sandbox(user: pwd.struct_passwd, prefix: str, check: str) -> Iterator[tuple[str, str]]:
    """(python, PYTHONPATH) that `user` may run: our venv may sit in /root (mode 700) and this
    checkout anywhere, so trayapp and psutil are copied to a world-readable folder. `check` is
    the import statement that must work there."""
    import psutil

    import trayapp

    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        for package in (trayapp, psutil):
            source = Path(package.__file__ or "").parent
            shutil.copytree(
                source, root / source.name, ignore=shutil.ignore_patterns("__pycache__")
            )
        for path in [root, *root.rglob("*")]:
            executable = path.is_dir() or path.stat().st_mode & stat.S_IXUSR
            path.chmod(0o755 if executable else 0o644)
        yield _python_for(user, str(root), check), str(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _python_for(user: pwd.struct_passwd, pythonpath: str, check: str) -> str:
    tried: list[str] = []
    for python in dict.fromkeys([os.path.realpath(sys.executable), "/usr/bin/python3"]):
        done = subprocess.run(
            [*as_user(user), python, "-c", check],
            env=user_env(pythonpath),
            cwd=pythonpath,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            return python
        tried.append(f"{python}: {done.stderr.strip().splitlines()[-1:]}")
    pytest.fail(f"no Python the test user may run: {tried}")
