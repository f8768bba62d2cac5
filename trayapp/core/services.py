"""Naming what usually listens on a port, from resources/services.json and the OS's services list.

A default port is a hint, never proof: several programs share 8000 or 5000, and any program may
listen anywhere. So a name is "certain" only when the owner's command line or process name
confirms it; otherwise the caller shows it as a guess.
"""

from __future__ import annotations

import functools
import json
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from trayapp.core.host import OS_NAMES, OSName
from trayapp.core.model import PROTOCOLS, ProtocolName, is_port_number
from trayapp.resources import resource_path

ServiceKind = Literal["service", "common"]
KnownKind = Literal["service", "common", "ambiguous", "system"]

SERVICES_FILE = "services.json"
_MAX_NAME = 80
_MAX_DESCRIPTION = 200


@dataclass(frozen=True)
class KnownService:
    """What a port's owner probably (or, with ``certain``, surely) is."""

    name: str
    description: str
    certain: bool  # True only when the owner's command line or name confirmed it
    url: str | None = None
    # "service": a program's own default; "common": a port many dev tools use; "ambiguous":
    # several candidates, named in ``candidates``; "system": from the OS's services list.
    kind: KnownKind = "service"
    candidates: tuple[str, ...] = ()
    # The owner was known, yet matched none of the candidate's process hints: probably
    # something else that chose the same port.
    owner_differs: bool = False


@dataclass(frozen=True)
class ServiceEntry:
    """One validated entry of services.json."""

    ports: tuple[int, ...]
    protocols: tuple[ProtocolName, ...]
    name: str
    description: str
    url: str | None
    kind: ServiceKind
    process_hints: tuple[str, ...] = ()
    os: tuple[OSName, ...] = ()  # empty: every OS
    _patterns: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self._patterns:
            # Hints must stand as whole words ("named", not inside "unnamed"); "_" and "."
            # count as separators so "bluesky_httpserver.server:app" still matches.
            patterns = tuple(
                re.compile(r"(?<![a-z0-9])" + re.escape(hint) + r"(?![a-z0-9])")
                for hint in self.process_hints
            )
            object.__setattr__(self, "_patterns", patterns)

    def serves(self, port: int, protocol: str, os_name: OSName) -> bool:
        return (
            port in self.ports
            and protocol in self.protocols
            and (not self.os or os_name in self.os)
        )

    def evidence(self, owner_texts: Sequence[str]) -> int:
        """Length of the longest hint found in the owners' texts: 0 for none. Longer hints are
        more specific ("tiled.server" beats "uvicorn" in "uvicorn tiled.server.app:app")."""
        best = 0
        for hint, pattern in zip(self.process_hints, self._patterns, strict=True):
            if len(hint) > best and any(pattern.search(text) for text in owner_texts):
                best = len(hint)
        return best

    def known(self, *, certain: bool, owner_differs: bool = False) -> KnownService:
        return KnownService(
            name=self.name,
            description=self.description,
            certain=certain,
            url=self.url,
            kind=self.kind,
            owner_differs=owner_differs,
        )


# ---- loading and validation -------------------------------------------------------------


class _Invalid(Exception):
    pass


def _one_line(entry: dict[str, object], key: str, limit: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"'{key}' must be a non-empty string")
    if not value.isprintable():
        raise _Invalid(f"'{key}' must be one line of printable text")
    if len(value) > limit:
        raise _Invalid(f"'{key}' is longer than {limit} characters")
    return value.strip()


def _ports(entry: dict[str, object]) -> tuple[int, ...]:
    value = entry.get("ports")
    if not isinstance(value, list) or not value:
        raise _Invalid("'ports' must be a non-empty list of port numbers")
    for port in value:
        # bool is an int to Python; true is no port.
        if not is_port_number(port):
            raise _Invalid(f"'ports' holds {port!r}, which is not a port from 1 to 65535")
    return tuple(dict.fromkeys(cast(list[int], value)))


def _protocols(entry: dict[str, object]) -> tuple[ProtocolName, ...]:
    value = entry.get("protocol", "tcp")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or any(p not in PROTOCOLS for p in items):
        raise _Invalid("'protocol' must be 'tcp', 'udp' or a list of them")
    return tuple(dict.fromkeys(cast(list[ProtocolName], items)))


def _strings(entry: dict[str, object], key: str, allowed: Iterable[str] = ()) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item.strip() for item in value
    ):
        raise _Invalid(f"'{key}' must be a list of non-empty strings")
    items = tuple(item.strip().lower() for item in cast(list[str], value))
    allowed = tuple(allowed)
    if allowed and (bad := [item for item in items if item not in allowed]):
        raise _Invalid(f"'{key}' holds {bad[0]!r}; use {', '.join(allowed)}")
    return items


_KNOWN_KEYS = {"ports", "protocol", "name", "description", "url", "kind", "process_hints", "os"}


def _entry(raw: object) -> tuple[ServiceEntry, list[str]]:
    """A validated entry and notes on harmless oddities; raises _Invalid for a broken one."""
    if not isinstance(raw, dict):
        raise _Invalid("an entry must be an object")
    entry = cast(dict[str, object], raw)
    url = entry.get("url")
    if url is not None and not (isinstance(url, str) and re.match(r"https?://\S+$", url)):
        raise _Invalid("'url' must be an http(s) address or null")
    kind = entry.get("kind", "service")
    if kind not in ("service", "common"):
        raise _Invalid("'kind' must be 'service' or 'common'")
    built = ServiceEntry(
        ports=_ports(entry),
        protocols=_protocols(entry),
        name=_one_line(entry, "name", _MAX_NAME),
        description=_one_line(entry, "description", _MAX_DESCRIPTION),
        url=url,
        kind=kind,
        process_hints=_strings(entry, "process_hints"),
        os=cast(tuple[OSName, ...], _strings(entry, "os", OS_NAMES)),
    )
    # Kept, but said: a typo such as "proces_hints" would otherwise lose its hints silently.
    notes = [f"unknown key {key!r} ignored" for key in entry if key not in _KNOWN_KEYS]
    return built, notes


class ServiceCatalog:
    """The known services, and what was wrong with the file they came from."""

    def __init__(self, entries: Iterable[ServiceEntry] = (), problems: Iterable[str] = ()):
        self.entries: tuple[ServiceEntry, ...] = tuple(entries)
        self.problems: tuple[str, ...] = tuple(problems)

    @classmethod
    def from_data(cls, data: object, origin: str = SERVICES_FILE) -> ServiceCatalog:
        """Validate parsed JSON. A broken entry is skipped and described in ``problems``."""
        if not isinstance(data, dict) or not isinstance(data.get("services"), list):
            return cls((), [f"{origin}: expected an object with a 'services' list; no entries"])
        entries: list[ServiceEntry] = []
        problems: list[str] = []
        for index, raw in enumerate(cast(list[object], data["services"]), start=1):
            name = raw.get("name") if isinstance(raw, dict) else None
            where = f"{origin} entry {index}" + (f" ({name!r})" if isinstance(name, str) else "")
            try:
                entry, notes = _entry(raw)
            except _Invalid as exc:
                problems.append(f"{where}: {exc}; entry skipped")
                continue
            entries.append(entry)
            problems += [f"{where}: {note}" for note in notes]
        return cls(entries, problems)

    def candidates(self, port: int, protocol: str, *, os_name: OSName) -> list[ServiceEntry]:
        return [e for e in self.entries if e.serves(port, protocol, os_name)]

    def identify(
        self,
        port: int,
        protocol: str = "tcp",
        owners_cmdlines: Sequence[str] = (),
        *,
        os_name: OSName,
        system_fallback: bool = True,
    ) -> KnownService | None:
        """Name what is (or usually is) on ``port`` of a machine running ``os_name``.

        ``owners_cmdlines``: what is known of the owning processes, each a command line joined
        with spaces or just a process name. Rules, in order:

        1. Among the entries for this port, those whose process hints appear in the owners'
           texts win; the most specific hint decides. One winner: certain=True.
        2. No evidence and one entry: that entry, certain=False (``owner_differs`` when a
           command line was given and none of the entry's hints is in it).
        3. No evidence and several entries: a combined "A or B" answer, kind "ambiguous".
        4. No entry: the OS's services list (``socket.getservbyport``), certain=False.
        5. Nothing: None.
        """
        entries = self.candidates(port, protocol, os_name=os_name)
        texts = [text.lower() for text in owners_cmdlines if text]
        if texts and entries:
            scores = [entry.evidence(texts) for entry in entries]
            best = max(scores)
            if best:
                winners = [e for e, s in zip(entries, scores, strict=True) if s == best]
                if len(winners) == 1:
                    return winners[0].known(certain=True)
                entries = winners
        if len(entries) == 1:
            entry = entries[0]
            # A bare process name ("python3", when the command line was denied) cannot rule a
            # program out: most of these run inside an interpreter. A command line can.
            seen_cmdline = any(len(text.split()) > 1 for text in texts)
            differs = bool(seen_cmdline and entry.process_hints)
            return entry.known(certain=False, owner_differs=differs)
        if entries:
            return _combined(port, entries)
        if system_fallback:
            return _system_service(port, protocol)
        return None

    def label_for(self, port: int, protocol: str = "tcp", *, os_name: OSName) -> str | None:
        """A default label for a watched port: the catalog's name, or None when it has none.

        The OS's services list is left out on purpose: its names ("ircu", "x11") would read as
        claims about this machine.
        """
        known = self.identify(port, protocol, os_name=os_name, system_fallback=False)
        return None if known is None else known.name


def _combined(port: int, entries: Sequence[ServiceEntry]) -> KnownService:
    names = tuple(entry.name for entry in entries)
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return KnownService(
        name=joined,
        description=(
            f"Port {port} is the default of several programs; the owning process tells which."
        ),
        certain=False,
        url=None,
        kind="ambiguous",
        candidates=names,
    )


def _system_service(port: int, protocol: str) -> KnownService | None:
    try:
        name = socket.getservbyport(port, protocol)
    except (OSError, OverflowError, ValueError, TypeError):
        return None  # not listed, no services file (minimal containers), or no such port
    return KnownService(
        name=name,
        description=f"Listed as '{name}' in the system's services database; not confirmed.",
        certain=False,
        url=None,
        kind="system",
    )


# ---- finding the file ---------------------------------------------------------------------


def _resource_path(name: str) -> Path | None:
    try:
        path = resource_path(name)
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


def load_catalog(path: Path | None = None) -> ServiceCatalog:
    """Read and validate services.json. Never raises: trouble is reported in ``problems``."""
    path = path or _resource_path(SERVICES_FILE)
    if path is None:
        return ServiceCatalog((), [f"{SERVICES_FILE} not found; no services are named"])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return ServiceCatalog((), [f"{path}: cannot be read ({exc}); no services are named"])
    except json.JSONDecodeError as exc:
        return ServiceCatalog((), [f"{path}: not valid JSON ({exc}); no services are named"])
    return ServiceCatalog.from_data(data, path.name)


@functools.lru_cache(maxsize=1)
def default_catalog() -> ServiceCatalog:
    return load_catalog()


def load_problems() -> tuple[str, ...]:
    """What was wrong with the bundled services.json, for a log or a diagnostics page."""
    return default_catalog().problems


def identify(
    port: int,
    protocol: str = "tcp",
    owners_cmdlines: Sequence[str] = (),
    *,
    os_name: OSName,
) -> KnownService | None:
    """ServiceCatalog.identify on the bundled catalog."""
    return default_catalog().identify(port, protocol, owners_cmdlines, os_name=os_name)


def label_for(port: int, protocol: str = "tcp", *, os_name: OSName) -> str | None:
    """The short default label for a port, e.g. 60610 -> "Bluesky Queue Server (HTTP API)"."""
    return default_catalog().label_for(port, protocol, os_name=os_name)
