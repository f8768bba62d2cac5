"""Port specs as people type them: ``60610``, ``5353/udp``, ``8000-8010``, and lists of these.

The parser is strict on purpose: a watch list that silently dropped or reinterpreted a token
would watch the wrong port, and nobody would notice until that port mattered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from trayapp.core.model import MAX_PORT, MIN_PORT, PROTOCOLS, Port, ProtocolName

# Big enough for any real service block; small enough that a typo such as 1-65535 cannot make
# every scan look at the whole port space.
MAX_RANGE_SIZE = 1024
MAX_TOTAL_PORTS = 4096

_ALLOWED = "use a number from 1 to 65535, optionally with /tcp or /udp, or a range like 8000-8010"
# Longer tokens are cut in messages, so that a pasted file cannot make an error message huge.
_MAX_SHOWN = 50

# ASCII only: \d and int() would also accept digits of other scripts ("٨٠"), and a port typed in
# them is far more likely a paste accident than a wish.
_TOKEN = re.compile(
    r"(?P<first>[0-9]+)(?:-(?P<last>[0-9]+))?(?:/(?P<protocol>[A-Za-z0-9]+))?",
    re.ASCII,
)
# "8000 - 8010" and "60610 / udp" are one token for the person who typed them.
_GLUE = re.compile(r"[ \t]*([-/])[ \t]*")
_SEPARATORS = re.compile(r"[,\s]+")


class PortSpecError(ValueError):
    """A port spec that cannot be watched. ``str()`` is one line naming the bad token."""

    def __init__(self, token: str, message: str) -> None:
        super().__init__(message)
        self.token = token


def shown(token: str) -> str:
    """The token as it appears in messages: quoted, control characters escaped, length capped."""
    if len(token) > _MAX_SHOWN:
        return repr(token[:_MAX_SHOWN])[:-1] + "...'"
    # repr() escapes every character that could break the message over lines or confuse a
    # terminal (\n, \x1b, \u2028, ...), and picks quotes that survive a token holding one.
    return repr(token)


@dataclass(frozen=True, order=True)
class PortRange:
    """Consecutive ports of one protocol, both ends included."""

    first: int
    last: int
    protocol: ProtocolName = "tcp"

    def __post_init__(self) -> None:
        if not MIN_PORT <= self.first <= self.last <= MAX_PORT:
            raise ValueError(f"not a port range: {self.first}-{self.last}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol: {self.protocol!r}")

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Port]:
        for number in range(self.first, self.last + 1):
            yield Port(number, self.protocol)

    def __contains__(self, item: object) -> bool:
        return (
            isinstance(item, Port)
            and item.protocol == self.protocol
            and self.first <= item.number <= self.last
        )

    def __str__(self) -> str:
        return _spec_text(self.first, self.last, self.protocol)


def _spec_text(first: int, last: int, protocol: str) -> str:
    text = str(first) if first == last else f"{first}-{last}"
    return text if protocol == "tcp" else f"{text}/{protocol}"


def _tokens(text: str) -> list[str]:
    return [token for token in _SEPARATORS.split(_GLUE.sub(r"\1", text)) if token]


def _number(token: str, digits: str) -> int:
    # Checked before int(): a thousand-digit "port" must give this message, not int()'s own
    # ValueError about the digit limit.
    value = int(digits) if len(digits) <= 5 else MAX_PORT + 1
    if value == 0:
        raise PortSpecError(
            token,
            f"{shown(token)} cannot be watched: port 0 only asks the OS for any free port; "
            "use a number from 1 to 65535",
        )
    if value > MAX_PORT:
        raise PortSpecError(token, f"{shown(token)} is not a port: {_ALLOWED}")
    return value


def _parse_token(token: str) -> PortRange:
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise PortSpecError(token, f"{shown(token)} is not a port: {_ALLOWED}")
    protocol_text = (match["protocol"] or "tcp").lower()
    if protocol_text not in PROTOCOLS:
        raise PortSpecError(
            token,
            f"{shown(token)} has an unknown protocol {shown(match['protocol'])}: "
            "use /tcp or /udp (or nothing, for tcp)",
        )
    protocol = cast(ProtocolName, protocol_text)
    first = _number(token, match["first"])
    last = first if match["last"] is None else _number(token, match["last"])
    if last < first:
        raise PortSpecError(
            token,
            f"{shown(token)} is a reversed range: put the lower port first, as in {last}-{first}",
        )
    size = last - first + 1
    if size > MAX_RANGE_SIZE:
        raise PortSpecError(
            token,
            f"{shown(token)} spans {size} ports: a range may hold at most {MAX_RANGE_SIZE} ports",
        )
    return PortRange(first, last, protocol)


def _split(text_or_list: str | Iterable[str]) -> list[str]:
    items = [text_or_list] if isinstance(text_or_list, str) else list(text_or_list)
    tokens = [token for item in items for token in _tokens(item)]
    if not tokens:
        raise PortSpecError("", f"no port given: {_ALLOWED}")
    return tokens


def parse_port_specs(text_or_list: str | Iterable[str]) -> list[PortRange]:
    """Parse specs separated by commas and/or whitespace into ranges, in the order given.

    Exact repeats are dropped; overlapping ranges are kept as typed. Raises PortSpecError for the
    first bad token, for empty input, and when the specs add up to more than MAX_TOTAL_PORTS
    distinct ports.
    """
    ranges: dict[PortRange, None] = {}
    seen: set[Port] = set()
    for token in _split(text_or_list):
        port_range = _parse_token(token)
        if port_range in ranges:
            continue
        ranges[port_range] = None
        seen.update(port_range)
        if len(seen) > MAX_TOTAL_PORTS:
            raise PortSpecError(
                token,
                f"{shown(token)} brings the list to more than {MAX_TOTAL_PORTS} ports: "
                f"watch at most {MAX_TOTAL_PORTS} ports at once",
            )
    return list(ranges)


def parse_ports(text: str | Iterable[str]) -> list[Port]:
    """Parse specs into single ports: ranges expanded, repeats dropped, first-seen order kept."""
    ports: dict[Port, None] = {}
    for port_range in parse_port_specs(text):
        ports.update(dict.fromkeys(port_range))
    return list(ports)


def parse_port(text: str) -> Port:
    """Parse exactly one port, such as ``60610`` or ``5353/udp``: no range, no list."""
    tokens = _tokens(text)
    if not tokens:
        raise PortSpecError("", "no port given: use a number from 1 to 65535, optionally /udp")
    if len(tokens) > 1:
        joined = " ".join(tokens)
        raise PortSpecError(
            joined, f"{shown(joined)} is more than one port: give a single port here"
        )
    port_range = _parse_token(tokens[0])
    if port_range.size > 1 or "-" in tokens[0]:
        raise PortSpecError(
            tokens[0], f"{shown(tokens[0])} is a range: give a single port here, such as 60610"
        )
    return Port(port_range.first, port_range.protocol)


def format_ports(ports: Iterable[Port]) -> str:
    """Write ports the way parse_ports reads them, compressing ascending runs into ranges.

    Order is kept, so ``parse_ports(format_ports(ports)) == ports`` for any output of
    parse_ports; "/tcp" is left out as it is the default.
    """
    runs: list[list[int]] = []  # [first, last] per run, the protocol kept alongside
    protocols: list[ProtocolName] = []
    for port in ports:
        if (
            runs
            and protocols[-1] == port.protocol
            and port.number == runs[-1][1] + 1
            # A longer run would not parse back.
            and runs[-1][1] - runs[-1][0] + 1 < MAX_RANGE_SIZE
        ):
            runs[-1][1] = port.number
        else:
            runs.append([port.number, port.number])
            protocols.append(port.protocol)
    return ", ".join(
        _spec_text(first, last, protocol)
        for (first, last), protocol in zip(runs, protocols, strict=True)
    )
