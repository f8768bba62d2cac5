"""Port ranges: IANA's three, the OS's own, and the warning with the command that fixes it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trayapp.core.host import EphemeralInfo, HostFacts, OSName
from trayapp.core.model import ProtocolName
from trayapp.core.ranges import RangeInfo, explain_on, explain_port, explanation_text, iana_range
from trayapp.platforms import current_os, host_facts
from trayapp.platforms.ephemeral import read_ephemeral

LINUX = EphemeralInfo(32768, 60999, source="/proc/sys/net/ipv4/ip_local_port_range")
MACOS = EphemeralInfo(49152, 65535, source="sysctl net.inet.ip.portrange.first/last")
WINDOWS = EphemeralInfo(
    49152,
    65535,
    reserved=((50000, 50059),),
    excluded=((5357, 5357), (54235, 54334)),
    source="netsh int ipv4 show dynamicport tcp",
)


@pytest.mark.parametrize(
    ("port", "key", "first", "last"),
    [
        (0, "well-known", 0, 1023),
        (22, "well-known", 0, 1023),
        (1023, "well-known", 0, 1023),
        (1024, "registered", 1024, 49151),
        (8000, "registered", 1024, 49151),
        (49151, "registered", 1024, 49151),
        (49152, "dynamic", 49152, 65535),
        (60610, "dynamic", 49152, 65535),
        (65535, "dynamic", 49152, 65535),
    ],
)
def test_iana_range(port: int, key: str, first: int, last: int) -> None:
    assert iana_range(port) == (key, first, last)


@pytest.mark.parametrize("port", [-1, 65536, 100_000])
def test_iana_range_refuses_non_ports(port: int) -> None:
    with pytest.raises(ValueError):
        iana_range(port)
    with pytest.raises(ValueError):
        explain_port(port, ephemeral=None, os_name="other")


def test_titles_sizes_and_explanations() -> None:
    well = explain_port(80, ephemeral=None, os_name="other")
    assert well.title == "System Ports (well-known)"
    assert well.size == 1024
    assert "root" in well.explanation
    assert "net.ipv4.ip_unprivileged_port_start" in well.explanation

    registered = explain_port(8000, ephemeral=None, os_name="other")
    assert registered.title == "User Ports (registered)"
    assert registered.size == 48128
    assert "reserves nothing on your machine" in registered.explanation

    dynamic = explain_port(60610, ephemeral=None, os_name="other")
    assert dynamic.key == "dynamic"
    assert dynamic.size == 16384
    assert "never assigns" in dynamic.explanation
    assert "outgoing" in dynamic.explanation
    assert "60610" in dynamic.explanation


def test_explanations_are_two_to_four_sentences() -> None:
    for port in (80, 8000, 60610):
        text = explain_port(port, ephemeral=None, os_name="other").explanation
        sentences = re.findall(r"[.!?](?:\s|$)", text)
        assert 2 <= len(sentences) <= 4, text


def test_unknown_os_range_gives_no_warning() -> None:
    info = explain_port(60610, ephemeral=None, os_name="linux")
    assert info.os_ephemeral is None
    assert not info.in_os_ephemeral
    assert info.warning is None
    assert info.fix_commands == ()


# ---- Linux --------------------------------------------------------------------------------


def test_linux_60610_is_in_the_default_range() -> None:
    info = explain_port(60610, ephemeral=LINUX, os_name="linux")
    assert info.os_ephemeral == (32768, 60999)
    assert info.in_os_ephemeral
    assert not info.os_reserved
    assert info.warning is not None
    assert "address already in use" in info.warning
    assert "\n" not in info.warning
    assert info.fix_commands == (
        "sudo sysctl -w net.ipv4.ip_local_reserved_ports=60610",
        "echo 'net.ipv4.ip_local_reserved_ports = 60610' "
        "| sudo tee /etc/sysctl.d/90-portwatch.conf",
    )
    for command in info.fix_commands:
        assert command in info.warning


def test_linux_registered_port_inside_the_linux_range() -> None:
    # Linux's range starts at 32768, inside IANA's registered range.
    info = explain_port(40000, ephemeral=LINUX, os_name="linux")
    assert info.key == "registered"
    assert info.in_os_ephemeral
    assert info.warning is not None


def test_linux_port_above_the_range_is_safe() -> None:
    info = explain_port(61000, ephemeral=LINUX, os_name="linux")
    assert info.key == "dynamic"
    assert not info.in_os_ephemeral
    assert info.warning is None


def test_linux_reserved_port_gives_no_warning() -> None:
    eph = EphemeralInfo(32768, 60999, reserved=((60610, 60620),))
    info = explain_port(60615, ephemeral=eph, os_name="linux")
    assert info.in_os_ephemeral
    assert info.os_reserved
    assert info.warning is None


def test_linux_command_keeps_the_ports_reserved_now() -> None:
    eph = EphemeralInfo(32768, 60999, reserved=((8080, 8080), (60611, 60620)))
    info = explain_port(60610, ephemeral=eph, os_name="linux")
    assert (
        info.fix_commands[0] == "sudo sysctl -w net.ipv4.ip_local_reserved_ports=8080,60610-60620"
    )
    assert "net.ipv4.ip_local_reserved_ports = 8080,60610-60620" in info.fix_commands[1]
    assert info.warning is not None
    assert "keeping the ports reserved now (8080,60611-60620)" in info.warning


def test_linux_udp_warning_speaks_of_client_sockets() -> None:
    info = explain_port(60610, "udp", ephemeral=LINUX, os_name="linux")
    assert info.warning is not None
    assert "client socket" in info.warning


# ---- macOS --------------------------------------------------------------------------------


def test_macos_moves_the_range_end() -> None:
    info = explain_port(60610, ephemeral=MACOS, os_name="macos")
    assert info.in_os_ephemeral
    # 49152-60609 keeps more ports than 60611-65535.
    assert info.fix_commands == ("sudo sysctl -w net.inet.ip.portrange.last=60609",)
    assert info.warning is not None
    assert "cannot reserve a single port" in info.warning


def test_macos_moves_the_range_start_when_that_keeps_more() -> None:
    info = explain_port(50000, ephemeral=MACOS, os_name="macos")
    assert info.fix_commands == ("sudo sysctl -w net.inet.ip.portrange.first=50001",)


def test_macos_registered_port_is_outside() -> None:
    info = explain_port(8000, ephemeral=MACOS, os_name="macos")
    assert not info.in_os_ephemeral
    assert info.warning is None


# ---- Windows ------------------------------------------------------------------------------


def test_windows_dynamic_port_gets_the_netsh_reservation() -> None:
    info = explain_port(60610, ephemeral=WINDOWS, os_name="windows")
    assert info.in_os_ephemeral
    assert info.excluded_by is None
    assert info.fix_commands == (
        "netsh int ipv4 add excludedportrange protocol=tcp startport=60610 numberofports=1",
    )
    assert info.warning is not None
    assert "administrator" in info.warning


def test_windows_udp_reservation_names_udp() -> None:
    info = explain_port(60610, "udp", ephemeral=WINDOWS, os_name="windows")
    assert "protocol=udp" in info.fix_commands[0]


def test_windows_administered_exclusion_is_a_reservation() -> None:
    info = explain_port(50010, ephemeral=WINDOWS, os_name="windows")
    assert info.os_reserved
    assert info.warning is None


def test_windows_system_exclusion_warns_about_10013() -> None:
    info = explain_port(54300, ephemeral=WINDOWS, os_name="windows")
    assert info.excluded_by == (54235, 54334)
    assert info.warning is not None
    assert "10013" in info.warning
    assert "54235-54334" in info.warning
    assert info.fix_commands[0] == "net stop winnat"
    assert info.fix_commands[-1] == "net start winnat"


def test_windows_exclusion_outside_the_dynamic_range_still_warns() -> None:
    info = explain_port(5357, ephemeral=WINDOWS, os_name="windows")
    assert not info.in_os_ephemeral
    assert info.excluded_by == (5357, 5357)
    assert info.warning is not None
    assert "excluded port 5357 " in info.warning


# ---- a machine's facts: explain_on --------------------------------------------------------


def test_explain_on_reads_the_range_for_the_ports_protocol_when_asked() -> None:
    seen: list[str] = []

    def reader(protocol: ProtocolName) -> EphemeralInfo:
        seen.append(protocol)
        return LINUX

    host = HostFacts("linux", reader)
    assert seen == []  # making the facts reads nothing
    info = explain_on(host, 60610, "udp")
    assert seen == ["udp"]
    assert info == explain_port(60610, "udp", ephemeral=LINUX, os_name="linux")
    with pytest.raises(ValueError):
        explain_on(host, 65536)
    assert seen == ["udp"]  # a bad number fails before the range is read


def test_explain_on_an_unreadable_range() -> None:
    info = explain_on(HostFacts("windows"), 60610)
    assert (info.os_name, info.os_ephemeral) == ("windows", None)
    assert "Could not read the range Windows hands out" in explanation_text(info)


def test_explain_on_this_machine() -> None:
    host = host_facts()
    info = explain_on(host, 60610)
    assert info.os_name == current_os()
    assert info == explain_port(
        60610, ephemeral=read_ephemeral(current_os(), "tcp"), os_name=current_os()
    )


# ---- text ---------------------------------------------------------------------------------


def test_explanation_text_linux_60610() -> None:
    text = explanation_text(explain_port(60610, ephemeral=LINUX, os_name="linux"))
    lines = text.splitlines()
    assert lines[0] == (
        "Port 60610/tcp: Dynamic and/or Private Ports (ephemeral), ports 49152-65535 "
        "(16,384 ports)."
    )
    assert "Linux hands out ports 32768-60999" in text
    assert "60610 is inside that range" in text
    assert "Warning:" in text
    # Commands stand whole on their own lines, to be copied.
    assert "    sudo sysctl -w net.ipv4.ip_local_reserved_ports=60610" in lines
    assert any(line.strip().startswith("echo 'net.ipv4") for line in lines)


def test_explanation_text_without_warning() -> None:
    text = explanation_text(explain_port(22, ephemeral=LINUX, os_name="linux"))
    assert "System Ports (well-known)" in text
    assert "22 is outside that range" in text
    assert "Warning" not in text


def test_explanation_text_reserved() -> None:
    eph = EphemeralInfo(32768, 60999, reserved=((60610, 60610),))
    text = explanation_text(explain_port(60610, ephemeral=eph, os_name="linux"))
    assert "reserved" in text
    assert "Warning" not in text


@given(
    st.integers(0, 65535),
    st.sampled_from(["tcp", "udp"]),
    st.sampled_from([None, LINUX, MACOS, WINDOWS]),
    st.sampled_from(["linux", "macos", "windows", "other"]),
)
def test_any_port_explains_consistently(
    port: int, protocol: str, eph: EphemeralInfo | None, os_name: OSName
) -> None:
    info: RangeInfo = explain_port(port, protocol, ephemeral=eph, os_name=os_name)
    assert info.first <= port <= info.last
    assert info.size == info.last - info.first + 1
    assert info.in_os_ephemeral == (eph is not None and eph.first <= port <= eph.last)
    if info.warning is not None:
        assert "\n" not in info.warning
        assert info.in_os_ephemeral or info.excluded_by is not None
    assert explanation_text(info)
