"""The OS ephemeral range: parsers on recorded outputs, readers with faked sources, the cache."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trayapp.core.host import EphemeralInfo, OSName
from trayapp.platforms import ephemeral, host_facts
from trayapp.platforms.ephemeral import (
    ExcludedRange,
    parse_linux_range,
    parse_linux_reserved,
    parse_netsh_dynamicport,
    parse_netsh_excluded,
    parse_sysctl,
    read_ephemeral,
)

DATA = Path(__file__).parent / "data"


def recorded(name: str) -> str:
    # Decoded as the reader decodes command output, so the German cp850 bytes go through the
    # same lossy path as on a real machine.
    return ephemeral._decode((DATA / name).read_bytes())


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    ephemeral.clear_cache()
    yield
    ephemeral.clear_cache()


# ---- parsers on recorded outputs ----------------------------------------------------------


def test_linux_range_recorded() -> None:
    assert parse_linux_range(recorded("linux_ip_local_port_range.txt")) == (32768, 60999)
    assert parse_linux_range(recorded("linux_ip_local_port_range_custom.txt")) == (1024, 65000)


def test_linux_reserved_recorded() -> None:
    assert parse_linux_reserved(recorded("linux_ip_local_reserved_ports_empty.txt")) == ()
    assert parse_linux_reserved(recorded("linux_ip_local_reserved_ports.txt")) == (
        (8080, 8080),
        (60610, 60620),
    )


def test_sysctl_recorded() -> None:
    assert parse_sysctl(recorded("macos_sysctl_portrange.txt")) == (49152, 65535)


def test_sysctl_accepts_the_form_without_dash_n() -> None:
    text = "net.inet.ip.portrange.first: 49152\nnet.inet.ip.portrange.last: 65535\n"
    assert parse_sysctl(text) == (49152, 65535)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("windows_dynamicport_tcp_en.txt", (49152, 65535)),
        ("windows_dynamicport_tcp_de.txt", (49152, 65535)),
        ("windows_dynamicport_tcp_1025.txt", (1025, 65535)),
    ],
)
def test_netsh_dynamicport_recorded(name: str, expected: tuple[int, int]) -> None:
    assert parse_netsh_dynamicport(recorded(name)) == expected


def test_netsh_dynamicport_japanese_full_width_colon() -> None:
    text = (
        "\r\nプロトコル tcp 動的ポート範囲\r\n-----\r\n"
        "開始ポート \uff1a 49152\r\nポート数 \uff1a 16384\r\n"
    )
    assert parse_netsh_dynamicport(text) == (49152, 65535)


def test_netsh_excluded_recorded_english() -> None:
    assert parse_netsh_excluded(recorded("windows_excludedportrange_tcp_en.txt")) == (
        ExcludedRange(5357, 5357, False),
        ExcludedRange(50000, 50059, True),
        ExcludedRange(54235, 54334, False),
        ExcludedRange(54335, 54434, False),
    )


def test_netsh_excluded_recorded_german_cp850() -> None:
    rows = parse_netsh_excluded(recorded("windows_excludedportrange_tcp_de.txt"))
    assert rows is not None
    assert rows[0] == ExcludedRange(5357, 5357, False)
    assert ExcludedRange(50000, 50059, True) in rows
    assert len(rows) == 10


def test_netsh_excluded_empty_table_is_an_answer() -> None:
    assert parse_netsh_excluded(recorded("windows_excludedportrange_tcp_empty.txt")) == ()


def test_netsh_error_output_is_unknown() -> None:
    text = recorded("windows_netsh_error.txt")
    assert parse_netsh_dynamicport(text) is None
    assert parse_netsh_excluded(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "abc",
        "32768",
        "32768 60999 1",
        "60999\t32768",
        "0\t100",
        "1\t70000",
        "\u0663\u0662\t\u0666\u0660",
    ],
)
def test_linux_range_garbage(text: str) -> None:
    assert parse_linux_range(text) is None


@pytest.mark.parametrize("text", ["abc", "8080,", "80-70", "70000", "1,,2", "8080;9090"])
def test_linux_reserved_garbage(text: str) -> None:
    assert parse_linux_reserved(text) is None


@pytest.mark.parametrize("text", ["", "49152", "a\nb", "49152\n65535\n1", "65535\n49152"])
def test_sysctl_garbage(text: str) -> None:
    assert parse_sysctl(text) is None


@pytest.mark.parametrize(
    "text",
    ["", "Start Port : 49152", "Start Port : 65000\nNumber of Ports : 16384", "x : 0\ny : 0"],
)
def test_netsh_dynamicport_garbage(text: str) -> None:
    assert parse_netsh_dynamicport(text) is None


PARSERS = [
    parse_linux_range,
    parse_linux_reserved,
    parse_sysctl,
    parse_netsh_dynamicport,
    parse_netsh_excluded,
]


@given(st.text())
def test_parsers_never_raise(text: str) -> None:
    for parser in PARSERS:
        parser(text)


# ---- readers ------------------------------------------------------------------------------


def test_read_linux_from_a_fake_proc(tmp_path: Path) -> None:
    (tmp_path / "ip_local_port_range").write_text("32768\t60999\n")
    (tmp_path / "ip_local_reserved_ports").write_text("60610\n")
    info = ephemeral._read_linux(tmp_path)
    assert info == EphemeralInfo(
        32768, 60999, reserved=((60610, 60610),), source=str(tmp_path / "ip_local_port_range")
    )


def test_read_linux_without_reserved_file_still_gives_the_range(tmp_path: Path) -> None:
    (tmp_path / "ip_local_port_range").write_text("32768\t60999\n")
    info = ephemeral._read_linux(tmp_path)
    assert info is not None
    assert (info.first, info.last, info.reserved) == (32768, 60999, ())


def test_read_linux_missing_gives_none(tmp_path: Path) -> None:
    assert ephemeral._read_linux(tmp_path) is None


@pytest.mark.linux("reads this Linux machine")
def test_read_ephemeral_on_this_linux() -> None:
    info = read_ephemeral("linux", max_age=0)
    assert info is not None
    assert 1 <= info.first <= info.last <= 65535
    assert info.source == "/proc/sys/net/ipv4/ip_local_port_range"


@pytest.mark.linux("reads this Linux machine")
def test_host_facts_of_this_linux() -> None:
    """What the command line and the windows hand to core: this OS, its range read on demand
    (one range for both protocols on Linux), the same as reading it directly."""
    host = host_facts()
    assert host.os_name == "linux"
    first, last = (
        int(n) for n in (ephemeral.LINUX_SYSCTL_DIR / "ip_local_port_range").read_text().split()
    )
    for protocol in ("tcp", "udp"):
        info = host.ephemeral(protocol)
        assert info is not None and (info.first, info.last) == (first, last)
        assert info == read_ephemeral("linux", protocol, max_age=0)


def _fake_runner(
    outputs: dict[str, str | None], calls: list[list[str]]
) -> Callable[[list[str], float], str | None]:
    def run(argv: list[str], timeout: float) -> str | None:
        calls.append(argv)
        key = next(k for k in outputs if k in " ".join(argv))
        return outputs[key]

    return run


def test_read_windows_splits_administered_from_system_exclusions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []
    outputs = {
        "dynamicport": recorded("windows_dynamicport_tcp_en.txt"),
        "excludedportrange": recorded("windows_excludedportrange_tcp_en.txt"),
    }
    monkeypatch.setattr(ephemeral, "_run", _fake_runner(outputs, calls))
    info = read_ephemeral("windows", max_age=0)
    assert info is not None
    assert (info.first, info.last) == (49152, 65535)
    assert info.reserved == ((50000, 50059),)
    assert info.excluded == ((5357, 5357), (54235, 54334), (54335, 54434))
    assert calls[0][1:] == ["int", "ipv4", "show", "dynamicport", "tcp"]
    assert calls[1][1:] == ["int", "ipv4", "show", "excludedportrange", "protocol=tcp"]
    assert calls[0][0].lower().endswith("netsh.exe")


def test_read_windows_udp_asks_for_udp(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    outputs = {
        "dynamicport": recorded("windows_dynamicport_tcp_en.txt"),
        "excludedportrange": recorded("windows_excludedportrange_tcp_empty.txt"),
    }
    monkeypatch.setattr(ephemeral, "_run", _fake_runner(outputs, calls))
    assert read_ephemeral("windows", "udp", max_age=0) is not None
    assert calls[0][-1] == "udp"
    assert calls[1][-1] == "protocol=udp"


def test_read_windows_without_exclusions_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {"dynamicport": recorded("windows_dynamicport_tcp_de.txt"), "excluded": None}
    monkeypatch.setattr(ephemeral, "_run", _fake_runner(outputs, []))
    info = read_ephemeral("windows", max_age=0)
    assert info is not None
    assert info.excluded == () and info.reserved == ()


def test_read_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    outputs = {"sysctl": recorded("macos_sysctl_portrange.txt")}
    monkeypatch.setattr(ephemeral, "_run", _fake_runner(outputs, calls))
    info = read_ephemeral("macos", max_age=0)
    assert info is not None
    assert (info.first, info.last) == (49152, 65535)
    assert calls == [["sysctl", "-n", "net.inet.ip.portrange.first", "net.inet.ip.portrange.last"]]


@pytest.mark.parametrize("os_name", ["macos", "windows"])
def test_failing_command_gives_none(monkeypatch: pytest.MonkeyPatch, os_name: OSName) -> None:
    monkeypatch.setattr(ephemeral, "_run", lambda argv, timeout: None)
    assert read_ephemeral(os_name, max_age=0) is None


def test_other_os_gives_none() -> None:
    assert read_ephemeral("other", max_age=0) is None


def test_a_surprise_in_a_reader_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(argv: list[str], timeout: float) -> str | None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ephemeral, "_run", explode)
    assert read_ephemeral("macos", max_age=0) is None


def test_run_handles_missing_command_and_timeout() -> None:
    assert ephemeral._run(["/nonexistent/portwatch-no-such-command"], 1.0) is None
    assert ephemeral._run([sys.executable, "-c", "import time; time.sleep(5)"], 0.2) is None
    assert ephemeral._run([sys.executable, "-c", "raise SystemExit(3)"], 5.0) is None
    assert ephemeral._run([sys.executable, "-c", "print(42)"], 5.0) == "42\n"


def test_run_passes_timeout_and_no_window_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        seen.update(kwargs)
        return subprocess.CompletedProcess(argv, 0, b"ok", b"")

    monkeypatch.setattr(subprocess, "CREATE_NO_WINDOW", 0x08000000, raising=False)
    monkeypatch.setattr(subprocess, "run", fake_run)
    assert ephemeral._run(["netsh"], 3.0) == "ok"
    assert seen["timeout"] == 3.0
    assert seen["creationflags"] == 0x08000000


# ---- cache --------------------------------------------------------------------------------


def test_cache_and_bypass(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    outputs = {"sysctl": recorded("macos_sysctl_portrange.txt")}
    monkeypatch.setattr(ephemeral, "_run", _fake_runner(outputs, calls))
    first = read_ephemeral("macos")
    assert read_ephemeral("macos") is first
    assert len(calls) == 1
    read_ephemeral("macos", max_age=0)
    assert len(calls) == 2
    ephemeral.clear_cache()
    read_ephemeral("macos")
    assert len(calls) == 3


def test_failures_are_cached_too(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(ephemeral, "_run", _fake_runner({"sysctl": None}, calls))
    assert read_ephemeral("macos") is None
    assert read_ephemeral("macos") is None
    assert len(calls) == 1
