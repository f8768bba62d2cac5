"""The facts about the machine that core explains but never reads itself: which OS it is and
the range it hands out as source ports.

platforms.host_facts() reads them; the command line and the windows hand them to the core
functions that need them (ranges, diagnosis, reports, known services), so core stays testable
on any OS with any other OS's facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from trayapp.core.model import ProtocolName

OSName = Literal["linux", "macos", "windows", "other"]
OS_NAMES: tuple[OSName, ...] = ("linux", "macos", "windows", "other")

PortSpan = tuple[int, int]


@dataclass(frozen=True)
class EphemeralInfo:
    """The range the OS hands out, both ends included.

    ``reserved``: spans the OS will not hand out although they lie in the range (Linux
    ip_local_reserved_ports; Windows exclusions made by an administrator, marked "*").
    ``excluded``: Windows exclusions made by the system (Hyper-V, WinNAT, Docker): nobody else can
    bind there, and nothing shows as listening.
    """

    first: int
    last: int
    reserved: tuple[PortSpan, ...] = ()
    excluded: tuple[PortSpan, ...] = ()
    source: str = ""

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def reserved_span(self, port: int) -> PortSpan | None:
        return _span_containing(self.reserved, port)

    def excluded_span(self, port: int) -> PortSpan | None:
        return _span_containing(self.excluded, port)


def _span_containing(spans: tuple[PortSpan, ...], port: int) -> PortSpan | None:
    for first, last in spans:
        if first <= port <= last:
            return (first, last)
    return None


def _unknown_range(_protocol: ProtocolName) -> EphemeralInfo | None:
    return None


@dataclass(frozen=True)
class HostFacts:
    """One machine's OS and, on demand, its ephemeral range per protocol (None: not known)."""

    os_name: OSName
    # Asked only when a range is explained, not when the facts are made: on Windows a read runs
    # netsh twice (seconds), which a `portwatch check` that shows no range should not pay.
    # The reader keeps its own cache.
    read_ephemeral: Callable[[ProtocolName], EphemeralInfo | None] = field(
        default=_unknown_range, compare=False, repr=False
    )

    def ephemeral(self, protocol: str) -> EphemeralInfo | None:
        return self.read_ephemeral("udp" if protocol == "udp" else "tcp")
