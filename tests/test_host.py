"""The machine's facts as core receives them: the ephemeral range's helpers, and HostFacts
reading the range only when asked, for the protocol asked."""

from __future__ import annotations

from trayapp.core.host import EphemeralInfo, HostFacts
from trayapp.core.model import ProtocolName


def test_info_helpers() -> None:
    info = EphemeralInfo(49152, 65535, reserved=((50000, 50059),), excluded=((54235, 54334),))
    assert 60610 in info and 1024 not in info and "60610" not in info
    assert info.reserved_span(50010) == (50000, 50059)
    assert info.reserved_span(60610) is None
    assert info.excluded_span(54300) == (54235, 54334)
    assert info.excluded_span(54335) is None


def test_facts_read_the_range_per_protocol_and_only_when_asked() -> None:
    asked: list[ProtocolName] = []
    tcp = EphemeralInfo(49152, 65535)
    udp = EphemeralInfo(50000, 60000)

    def reader(protocol: ProtocolName) -> EphemeralInfo:
        asked.append(protocol)
        return udp if protocol == "udp" else tcp

    host = HostFacts("windows", reader)
    assert asked == []
    assert host.ephemeral("udp") is udp
    assert host.ephemeral("tcp") is tcp
    assert asked == ["udp", "tcp"]


def test_facts_without_a_reader_know_no_range() -> None:
    host = HostFacts("macos")
    assert host.os_name == "macos"
    assert host.ephemeral("tcp") is None and host.ephemeral("udp") is None
