"""The "other machine" of the remote-entry tests: a network namespace joined to this one by a
veth pair (10.231.N.1 here, 10.231.N.2 there), made and removed by the test as root.

Nothing routes beyond the pair, so no packet leaves this machine. Servers run inside with
`ip netns exec` (which execs the command, so the pid kept is the server's) and are stopped by
that pid. N is picked free per namespace, so parallel test runs do not collide.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support import missing_part

SUBNET_BASE = "10.231"


def require_netns() -> None:
    """Skip (fail under CI=true) unless namespaces can be made here."""
    if sys.platform != "linux":
        pytest_skip("network namespaces are Linux only")
    if os.geteuid() != 0:
        missing_part("making a network namespace needs root")
    if shutil.which("ip") is None:
        missing_part("needs ip (Debian package iproute2)")


def pytest_skip(reason: str) -> None:
    import pytest

    pytest.skip(reason)


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def _used_subnets() -> set[int]:
    used = set()
    for line in _ip("-4", "-o", "addr").splitlines():
        for word in line.split():
            if word.startswith(SUBNET_BASE + "."):
                used.add(int(word.split(".")[2]))
    return used


class OtherMachine:
    """A namespace with one veth pair; `address` is its side, `gateway` ours."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{int(time.monotonic() * 1000) % 1000}"
        self.name = f"pwns{tag}"
        self.here_dev = f"pwh{tag}"[:15]
        self.there_dev = f"pwt{tag}"[:15]
        self.subnet = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    @property
    def address(self) -> str:
        return f"{SUBNET_BASE}.{self.subnet}.2"

    @property
    def gateway(self) -> str:
        return f"{SUBNET_BASE}.{self.subnet}.1"

    def __enter__(self) -> OtherMachine:
        used = _used_subnets()
        self.subnet = next(n for n in range(10, 250) if n not in used)
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.here_dev, "type", "veth", "peer", "name", self.there_dev)
            _ip("link", "set", self.there_dev, "netns", self.name)
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.here_dev)
            _ip("link", "set", self.here_dev, "up")
            _ip("addr", "add", f"{self.address}/24", "dev", self.there_dev, netns=self.name)
            _ip("link", "set", self.there_dev, "up", netns=self.name)
            _ip("link", "set", "lo", "up", netns=self.name)
        except BaseException:
            self.__exit__()
            raise
        assert ipaddress.ip_address(self.address).is_private
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            stop(proc)
        _ip("link", "del", self.here_dev, check=False)
        _ip("netns", "del", self.name, check=False)

    # -- what runs there ---------------------------------------------------------------------
    def run(self, argv: Sequence[str], log: Path, **kwargs: object) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.name, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kwargs,  # type: ignore[arg-type]
            )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def exec(self, *argv: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, *argv], check=True, timeout=20)

    def black_hole(self) -> None:
        """Replies to this machine go nowhere (a route to a black hole there): a SYN gets no
        answer, as behind a firewall that drops. Only iproute2 needed."""
        _ip("route", "add", "blackhole", f"{self.gateway}/32", netns=self.name)

    def open_again(self) -> None:
        _ip("route", "del", "blackhole", f"{self.gateway}/32", netns=self.name)

    def wait_listening(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((self.address, port)) == 0:
                    return
            time.sleep(0.05)
        logs = "\n".join(path.read_text(errors="replace")[-2000:] for path in self.logs)
        raise RuntimeError(f"nothing listens on {self.address}:{port} after {timeout:g} s\n{logs}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(10)


@contextlib.contextmanager
def other_machine() -> Iterator[OtherMachine]:
    require_netns()
    with OtherMachine() as machine:
        yield machine
