"""Fixtures for tests/test_scanner.py, loaded with ``pytest_plugins = ["tests.scan_fixtures"]``."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import trayapp
from tests.helpers_listeners import Backend, as_user, user_env
from tests.support import missing_part
from trayapp.core.scanning import ScanError
from trayapp.platforms.scanners import BACKENDS, make_scanner


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    try:
        scanner = make_scanner(request.param)
    except ScanError as exc:
        reason = f"backend {request.param} unavailable here: {exc}"
        if sys.platform.startswith("linux"):
            missing_part(reason)  # every backend works on Linux: CI must not skip them
        pytest.skip(reason)
    try:
        yield Backend(request.param, scanner)
    finally:
        scanner.close()


TEST_USERS = ("portwatch-t1", "portwatch-t2")


@pytest.fixture(scope="module")
def scan_users() -> Iterator[tuple[pwd.struct_passwd, ...]]:
    for name in TEST_USERS:
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in (0, 9):  # 9: left over from an earlier run, fine
            pytest.fail(f"useradd {name} failed: {done.stderr}")
    try:
        yield tuple(pwd.getpwnam(name) for name in TEST_USERS)
    finally:
        for name in TEST_USERS:
            subprocess.run(["userdel", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def sandbox(scan_users: tuple[pwd.struct_passwd, ...]) -> Iterator[tuple[str, str]]:
    """(python, PYTHONPATH) that the test users can run: our venv may sit in /root (mode 700),
    and this checkout anywhere, so trayapp and psutil are copied to a world-readable dir."""
    root = tempfile.mkdtemp(prefix="portwatch-scan-")
    try:
        for package in (trayapp, psutil):
            source = Path(package.__file__ or "").parent
            shutil.copytree(
                source, Path(root, source.name), ignore=shutil.ignore_patterns("__pycache__")
            )
        _open_up(Path(root))
        yield _python_for(scan_users[1], root), root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _open_up(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        executable = path.is_dir() or mode & stat.S_IXUSR
        path.chmod(0o755 if executable else 0o644)


def _python_for(user: pwd.struct_passwd, pythonpath: str) -> str:
    tried: list[str] = []
    for python in dict.fromkeys([os.path.realpath(sys.executable), "/usr/bin/python3"]):
        done = subprocess.run(
            [*as_user(user), python, "-c", "import psutil, trayapp.platforms.scanners"],
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
