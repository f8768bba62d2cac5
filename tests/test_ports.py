"""Port specs: what parses, what is refused with which message, and the round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trayapp.core.model import Port
from trayapp.core.ports import (
    MAX_RANGE_SIZE,
    MAX_TOTAL_PORTS,
    PortRange,
    PortSpecError,
    format_ports,
    parse_port,
    parse_port_specs,
    parse_ports,
)


def tcp(*numbers: int) -> list[Port]:
    return [Port(n, "tcp") for n in numbers]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60610", tcp(60610)),
        ("60610/tcp", tcp(60610)),
        ("5353/udp", [Port(5353, "udp")]),
        ("5353/UDP", [Port(5353, "udp")]),
        ("60610/TCP", tcp(60610)),
        ("  60610  ", tcp(60610)),
        ("8000-8003", tcp(8000, 8001, 8002, 8003)),
        ("8000-8001/udp", [Port(8000, "udp"), Port(8001, "udp")]),
        ("80,443", tcp(80, 443)),
        ("80, 443\t22\n8080", tcp(80, 443, 22, 8080)),
        ("80,,443,", tcp(80, 443)),
        ("8000 - 8002", tcp(8000, 8001, 8002)),
        ("60610 / udp", [Port(60610, "udp")]),
        ("1", tcp(1)),
        ("65535", tcp(65535)),
        ("080", tcp(80)),
        ("80 80 80/tcp", tcp(80)),
        ("81 80-82", tcp(81, 80, 82)),
        ("53 53/udp", [Port(53, "tcp"), Port(53, "udp")]),
    ],
)
def test_parse_ports(text: str, expected: list[Port]) -> None:
    assert parse_ports(text) == expected


def test_parse_ports_takes_a_list_of_arguments() -> None:
    assert parse_ports(["60610", "60615,60625", "5353/udp"]) == [
        *tcp(60610, 60615, 60625),
        Port(5353, "udp"),
    ]


@pytest.mark.parametrize(
    ("text", "token", "words"),
    [
        ("70000", "70000", "is not a port: use a number from 1 to 65535"),
        ("abc", "abc", "is not a port"),
        ("-1", "-1", "is not a port"),
        ("0", "0", "port 0"),
        ("80-70", "80-70", "reversed"),
        ("80/sctp", "80/sctp", "unknown protocol 'sctp'"),
        ("1-65535", "1-65535", f"at most {MAX_RANGE_SIZE} ports"),
        ("\u0668\u0660", "\u0668\u0660", "is not a port"),  # Arabic-Indic 80
        ("\uff18\uff10", "\uff18\uff10", "is not a port"),  # full-width 80
        ("80/", "80/", "is not a port"),
        ("/udp", "/udp", "is not a port"),
        ("80-", "80-", "is not a port"),
        ("80-90-100", "80-90-100", "is not a port"),
        ("0-10", "0-10", "port 0"),
        ("80 abc 90", "abc", "is not a port"),
        ("1e3", "1e3", "is not a port"),
        ("0x50", "0x50", "is not a port"),
        ("80.0", "80.0", "is not a port"),
        ("8000\u20138010", "8000\u20138010", "is not a port"),  # en dash
    ],
)
def test_bad_specs(text: str, token: str, words: str) -> None:
    with pytest.raises(PortSpecError) as caught:
        parse_ports(text)
    message = str(caught.value)
    assert caught.value.token == token
    assert repr(token) in message
    assert words in message
    assert "\n" not in message


def test_the_documented_message() -> None:
    with pytest.raises(PortSpecError) as caught:
        parse_ports("70000")
    assert str(caught.value) == (
        "'70000' is not a port: use a number from 1 to 65535, optionally with /tcp or /udp, "
        "or a range like 8000-8010"
    )


@pytest.mark.parametrize("text", ["", "   ", "\t\n", ",", " , ,"])
def test_empty_input(text: str) -> None:
    with pytest.raises(PortSpecError, match="no port given"):
        parse_ports(text)
    with pytest.raises(PortSpecError, match="no port given"):
        parse_port(text)


def test_empty_list() -> None:
    with pytest.raises(PortSpecError, match="no port given"):
        parse_ports([])


def test_range_cap_is_inclusive() -> None:
    assert len(parse_ports(f"1-{MAX_RANGE_SIZE}")) == MAX_RANGE_SIZE
    with pytest.raises(PortSpecError, match=f"spans {MAX_RANGE_SIZE + 1} ports"):
        parse_ports(f"1-{MAX_RANGE_SIZE + 1}")


def test_total_cap_counts_distinct_ports() -> None:
    blocks = [f"{1 + i * 1024}-{(i + 1) * 1024}" for i in range(MAX_TOTAL_PORTS // 1024)]
    assert len(parse_ports(" ".join(blocks))) == MAX_TOTAL_PORTS
    # Repeats do not count twice.
    assert len(parse_ports(" ".join(blocks * 3))) == MAX_TOTAL_PORTS
    with pytest.raises(PortSpecError) as caught:
        parse_ports(" ".join([*blocks, "60000"]))
    assert caught.value.token == "60000"
    assert f"more than {MAX_TOTAL_PORTS} ports" in str(caught.value)


def test_huge_number_is_refused_without_int_limit_error() -> None:
    with pytest.raises(PortSpecError) as caught:
        parse_ports("9" * 10_000)
    message = str(caught.value)
    assert message.startswith("'99999")
    assert "..." in message
    assert len(message) < 200


def test_control_characters_are_escaped_in_messages() -> None:
    with pytest.raises(PortSpecError) as caught:
        parse_ports("80\x1b[31m")
    message = str(caught.value)
    assert "\x1b" not in message
    assert "\\x1b[31m" in message


def test_parse_port_specs_keeps_ranges() -> None:
    assert parse_port_specs("60610 8000-8010/udp 60610") == [
        PortRange(60610, 60610, "tcp"),
        PortRange(8000, 8010, "udp"),
    ]


def test_port_range_type() -> None:
    r = PortRange(8000, 8002, "udp")
    assert len(r) == r.size == 3
    assert list(r) == [Port(8000, "udp"), Port(8001, "udp"), Port(8002, "udp")]
    assert Port(8001, "udp") in r and Port(8001, "tcp") not in r
    assert str(r) == "8000-8002/udp"
    assert str(PortRange(80, 80)) == "80"
    with pytest.raises(ValueError):
        PortRange(0, 10)
    with pytest.raises(ValueError):
        PortRange(10, 9)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("60610", Port(60610)), (" 5353/UDP ", Port(5353, "udp")), ("60610/tcp", Port(60610))],
)
def test_parse_port(text: str, expected: Port) -> None:
    assert parse_port(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("8000-8010", "is a range"),
        ("80-80", "is a range"),
        ("80 81", "more than one port"),
        ("80,81", "more than one port"),
        ("70000", "is not a port"),
        ("0", "port 0"),
    ],
)
def test_parse_port_refuses(text: str, words: str) -> None:
    with pytest.raises(PortSpecError, match=words):
        parse_port(text)


@pytest.mark.parametrize(
    ("ports", "text"),
    [
        ([], ""),
        (tcp(60610), "60610"),
        ([Port(5353, "udp")], "5353/udp"),
        (tcp(8000, 8001, 8002), "8000-8002"),
        (tcp(8002, 8001, 8000), "8002, 8001, 8000"),
        ([*tcp(8000, 8001), Port(8002, "udp")], "8000-8001, 8002/udp"),
        (tcp(80, 443, 444, 22), "80, 443-444, 22"),
    ],
)
def test_format_ports(ports: list[Port], text: str) -> None:
    assert format_ports(ports) == text


def test_format_splits_runs_longer_than_a_range_may_be() -> None:
    ports = parse_ports("1-1024 1025-1030")
    assert format_ports(ports) == "1-1024, 1025-1030"
    assert parse_ports(format_ports(ports)) == ports


# ---- properties ---------------------------------------------------------------------------

protocols = st.sampled_from(["", "/tcp", "/udp", "/TCP", "/Udp"])


@st.composite
def specs(draw: st.DrawFn) -> str:
    first = draw(st.integers(1, 65535))
    if draw(st.booleans()):
        last = draw(st.integers(first, min(65535, first + 40)))
        body = f"{first}-{last}"
    else:
        body = str(first)
    return body + draw(protocols)


spec_lists = st.lists(specs(), min_size=1, max_size=12)
separators = st.sampled_from([",", " ", ", ", "\t", " ,\n"])


@given(spec_lists, separators)
def test_round_trip(items: list[str], separator: str) -> None:
    parsed = parse_ports(separator.join(items))
    assert parse_ports(format_ports(parsed)) == parsed


@given(spec_lists)
def test_parsed_ports_are_distinct_and_valid(items: list[str]) -> None:
    parsed = parse_ports(" ".join(items))
    assert len(set(parsed)) == len(parsed)
    assert all(1 <= p.number <= 65535 and p.protocol in ("tcp", "udp") for p in parsed)


@given(st.lists(st.sampled_from([*tcp(1, 2, 3, 5, 6, 100, 65535), Port(2, "udp")]), max_size=20))
def test_format_then_parse_keeps_order_without_repeats(ports: list[Port]) -> None:
    text = format_ports(ports)
    if not ports:
        assert text == ""
        return
    assert parse_ports(text) == list(dict.fromkeys(ports))


_ALPHABET = st.characters(codec="utf-8")
arbitrary = st.one_of(
    st.text(_ALPHABET, max_size=40),
    st.text("0123456789-/,tcpudTCPUD \t\n\x00\x1b\u2028\u0668", max_size=40),
)


@given(arbitrary)
def test_arbitrary_text_raises_only_port_spec_error(text: str) -> None:
    try:
        parse_ports(text)
    except PortSpecError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1
        assert message.isprintable()
        if exc.token:
            assert repr(exc.token) in message


@given(arbitrary)
def test_parse_port_raises_only_port_spec_error(text: str) -> None:
    try:
        port = parse_port(text)
    except PortSpecError as exc:
        assert len(str(exc).splitlines()) == 1
    else:
        assert 1 <= port.number <= 65535
