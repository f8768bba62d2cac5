"""The OS's own ephemeral port range: where it picks source ports for outgoing connections.

A server whose fixed port lies in that range can lose it to any client socket on the machine,
which is why the port window explains it. IANA's dynamic range (49152-65535) is only advice:
Linux uses 32768-60999 by default, and Windows carves "excluded" blocks out of its range.

Reading never raises: any failure gives None, as the range is an explanation, not a necessity.
The parsers are pure functions so they can be tested on recorded outputs of each OS.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple

from trayapp.core.host import EphemeralInfo, OSName, PortSpan
from trayapp.core.model import ProtocolName
from trayapp.platforms import current_os

LINUX_SYSCTL_DIR = Path("/proc/sys/net/ipv4")
CACHE_SECONDS = 60.0
SYSCTL_TIMEOUT = 2.0
NETSH_TIMEOUT = 3.0


class ExcludedRange(NamedTuple):
    """One row of ``netsh int ipv4 show excludedportrange``."""

    first: int
    last: int
    administered: bool  # the "*" column: added by an administrator, not by a system service


def _valid_span(first: int, last: int) -> bool:
    return 1 <= first <= last <= 65535


_NUMBER = re.compile(r"[0-9]+", re.ASCII)


# ---- parsers: text in, values or None out, never an exception -----------------------------


def parse_linux_range(text: str) -> PortSpan | None:
    """``/proc/sys/net/ipv4/ip_local_port_range``: two numbers, tab-separated ("32768\\t60999")."""
    fields = text.split()
    if len(fields) != 2 or not all(_NUMBER.fullmatch(f) for f in fields):
        return None
    first, last = int(fields[0]), int(fields[1])
    return (first, last) if _valid_span(first, last) else None


def parse_linux_reserved(text: str) -> tuple[PortSpan, ...] | None:
    """``/proc/sys/net/ipv4/ip_local_reserved_ports``: "" or "8080,60610-60620"."""
    text = text.strip()
    if not text:
        return ()
    spans: list[PortSpan] = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*([0-9]+)(?:-([0-9]+))?\s*", item, re.ASCII)
        if match is None:
            return None
        first = int(match[1])
        last = first if match[2] is None else int(match[2])
        if not _valid_span(first, last):
            return None
        spans.append((first, last))
    return tuple(spans)


def parse_sysctl(text: str) -> PortSpan | None:
    """macOS ``sysctl -n net.inet.ip.portrange.first net.inet.ip.portrange.last``.

    Also takes the form without -n ("net.inet.ip.portrange.first: 49152"), in case a user pastes it.
    """
    values: list[int] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        value = line.rsplit(":", 1)[-1].strip()
        if not _NUMBER.fullmatch(value):
            return None
        values.append(int(value))
    if len(values) != 2:
        return None
    first, last = values
    return (first, last) if _valid_span(first, last) else None


# "Start Port      : 49152": by position, as the labels are translated ("Startport",
# "開始ポート") and only the numbers after the colon (or the full-width colon of CJK
# locales) are the same in every language.
_LABELLED_NUMBER = re.compile(r"[:\uff1a]\s*([0-9]+)\s*$", re.ASCII)


def parse_netsh_dynamicport(text: str) -> PortSpan | None:
    """``netsh int ipv4 show dynamicport tcp``: the first labelled number is the start port, the
    second the number of ports."""
    values = [int(m[1]) for line in text.splitlines() if (m := _LABELLED_NUMBER.search(line))]
    if len(values) != 2:
        return None
    start, count = values
    last = start + count - 1
    return (start, last) if count >= 1 and _valid_span(start, last) else None


_DASHES = re.compile(r"\s*-{3,}(?:\s+-{3,})+\s*")
_EXCLUDED_ROW = re.compile(r"\s*([0-9]+)\s+([0-9]+)\s*(\*)?\s*", re.ASCII)


def parse_netsh_excluded(text: str) -> tuple[ExcludedRange, ...] | None:
    """``netsh int ipv4 show excludedportrange protocol=tcp``: rows of "start end [*]" under a
    dashed rule. An empty table (rule, no rows) is a valid answer: ()."""
    lines = text.splitlines()
    rule = next((i for i, line in enumerate(lines) if _DASHES.fullmatch(line)), None)
    if rule is None:
        return None
    rows: list[ExcludedRange] = []
    for line in lines[rule + 1 :]:
        match = _EXCLUDED_ROW.fullmatch(line)
        if match is None:
            continue  # blank lines and the translated "* - Administered port exclusions." note
        first, last = int(match[1]), int(match[2])
        if _valid_span(first, last):
            rows.append(ExcludedRange(first, last, match[3] is not None))
    return tuple(rows)


# ---- reading from this OS ------------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except (OSError, ValueError):
        return None


def _decode(data: bytes) -> str:
    # netsh prints in the console's OEM code page (cp850 for German, "Portausschlüsse"); only the
    # digits matter, so a wrong guess of the code page costs nothing.
    for codec in ("oem", "utf-8"):
        try:
            return data.decode(codec, errors="replace")
        except LookupError:  # "oem" exists on Windows only
            continue
    return data.decode("latin-1")


def _run(argv: list[str], timeout: float) -> str | None:
    """Run a command without a console window; its stdout, or None on any failure."""
    # A tray app started without a console would flash one window per netsh call otherwise.
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            creationflags=flags,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if done.returncode != 0:
        return None
    return _decode(done.stdout)


def _read_linux(directory: Path = LINUX_SYSCTL_DIR) -> EphemeralInfo | None:
    range_file = directory / "ip_local_port_range"
    text = _read_text(range_file)
    span = None if text is None else parse_linux_range(text)
    if span is None:
        return None
    reserved_text = _read_text(directory / "ip_local_reserved_ports")
    # A missing or odd reserved list still leaves the range worth showing.
    reserved = (None if reserved_text is None else parse_linux_reserved(reserved_text)) or ()
    return EphemeralInfo(span[0], span[1], reserved=reserved, source=str(range_file))


def _read_macos() -> EphemeralInfo | None:
    argv = ["sysctl", "-n", "net.inet.ip.portrange.first", "net.inet.ip.portrange.last"]
    text = _run(argv, SYSCTL_TIMEOUT)
    span = None if text is None else parse_sysctl(text)
    if span is None:
        return None
    return EphemeralInfo(span[0], span[1], source="sysctl net.inet.ip.portrange.first/last")


def _netsh() -> str:
    # The full path, so that a netsh.exe in the current directory or early on PATH is not run.
    system_root = os.environ.get("SYSTEMROOT") or r"C:\Windows"
    return str(Path(system_root) / "System32" / "netsh.exe")


def _read_windows(protocol: ProtocolName) -> EphemeralInfo | None:
    netsh = _netsh()
    text = _run([netsh, "int", "ipv4", "show", "dynamicport", protocol], NETSH_TIMEOUT)
    span = None if text is None else parse_netsh_dynamicport(text)
    if span is None:
        return None
    argv = [netsh, "int", "ipv4", "show", "excludedportrange", f"protocol={protocol}"]
    text = _run(argv, NETSH_TIMEOUT)
    rows = (None if text is None else parse_netsh_excluded(text)) or ()
    return EphemeralInfo(
        span[0],
        span[1],
        reserved=tuple((r.first, r.last) for r in rows if r.administered),
        excluded=tuple((r.first, r.last) for r in rows if not r.administered),
        source=f"netsh int ipv4 show dynamicport {protocol}",
    )


def _read(os_name: OSName, protocol: ProtocolName) -> EphemeralInfo | None:
    if os_name == "linux":
        # One range for both protocols, and for IPv6 too despite the ipv4 in the path.
        return _read_linux()
    if os_name == "macos":
        return _read_macos()
    if os_name == "windows":
        return _read_windows(protocol)
    return None


_cache: dict[tuple[OSName, ProtocolName], tuple[float, EphemeralInfo | None]] = {}
_cache_lock = threading.Lock()


def read_ephemeral(
    os_name: OSName | None = None,
    protocol: ProtocolName = "tcp",
    *,
    max_age: float = CACHE_SECONDS,
) -> EphemeralInfo | None:
    """This OS's ephemeral range for ``protocol``, or None when it cannot be read. Never raises.

    The answer is cached for ``max_age`` seconds, failures included: it rarely changes, and on
    Windows a read runs netsh twice (up to a few seconds). ``max_age=0`` reads afresh.
    """
    os_name = os_name or current_os()
    key = (os_name, protocol)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and now - cached[0] < max_age:
        return cached[1]
    try:
        info = _read(os_name, protocol)
    except Exception:  # the promise is "never raises": a surprise here must not reach the GUI
        info = None
    with _cache_lock:
        _cache[key] = (time.monotonic(), info)
    return info


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
