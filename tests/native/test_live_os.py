"""What every OS must do with its own live parts: the CI workflow runs these on Linux,
Windows and macOS alike (nothing here is recorded or faked)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.native.live import check_json, child_listener
from trayapp.platforms.ephemeral import read_ephemeral
from trayapp.platforms.scanners import create_scanner


def test_check_json_finds_a_child_listener_with_its_pid(tmp_path: Path) -> None:
    """The scanner this OS picks (netlink on Linux, psutil on Windows, own processes + a
    connect probe on macOS without root) names a process the test started."""
    with child_listener() as (port, pid):
        record = check_json([sys.executable, "-m", "trayapp"], port, tmp_path / "home")
    assert record["port"] == port and record["state"] == "listening"
    assert [listener["pid"] for listener in record["listeners"]] == [pid]
    assert record["listeners"][0]["address"] == "127.0.0.1"


def test_this_os_ephemeral_range_is_read_live() -> None:
    info = read_ephemeral(max_age=0)
    if sys.platform.startswith(("linux", "darwin", "win32")):
        assert info is not None, "this OS's range could not be read"
        assert 1024 <= info.first < info.last <= 65535
    else:
        assert info is None


def test_the_scanner_is_the_one_this_os_is_meant_to_use() -> None:
    scanner = create_scanner()
    try:
        if sys.platform.startswith("linux"):
            assert scanner.name == "netlink"
        elif sys.platform == "darwin" and os.geteuid() != 0:
            assert scanner.name == "psutil-own+probe"  # psutil needs root for every socket
        else:
            assert scanner.name == "psutil"
    finally:
        scanner.close()
