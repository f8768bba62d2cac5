"""Fixtures for tests/test_scanner.py, loaded with ``pytest_plugins = ["tests.scan_fixtures"]``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.helpers_listeners import Backend, system_users, user_sandbox
from tests.support import missing_part
from trayapp.core.scanning import ScanError
from trayapp.platforms.scanners import BACKENDS, make_scanner

if TYPE_CHECKING:
    import pwd  # POSIX only


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
    with system_users(TEST_USERS) as users:
        yield users


@pytest.fixture(scope="module")
def sandbox(scan_users: tuple[pwd.struct_passwd, ...]) -> Iterator[tuple[str, str]]:
    """(python, PYTHONPATH) that the test users can run."""
    check = "import psutil, trayapp.platforms.scanners"
    with user_sandbox(scan_users[1], "portwatch-scan-", check) as found:
        yield found
