"""Settings: declared once, loaded forgivingly, saved atomically.

Loading never fails: whatever is wrong with config.json (not JSON, wrong shape, wrong types,
too big, unreadable, a directory) the app starts with what was valid plus defaults, the
original is kept beside it as config.json.bad-<time>, and the problems are reported once.
Saving writes a temp file and renames it over the old one, so a crash mid-save leaves either
the old or the new version, never half of one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from trayapp.core.apikey import ALLOWED as KEY_ALLOWED
from trayapp.core.apikey import KeyChoice, clean_key
from trayapp.core.model import MAX_PORT, MIN_PORT, PROTOCOLS, Port, is_port_number
from trayapp.core.remote import RemoteSettings, RemoteSpecError, RemoteTarget, parse_remote
from trayapp.fileio import atomic_write, describe_write_error

CONFIG_VERSION = 1
MAX_CONFIG_BYTES = 1024 * 1024  # a hand-written config is a few KB; more is damage
MAX_WATCHED = 256
MAX_LABEL = 80
DEFAULT_PORT = Port(60610, "tcp")
DEFAULT_LABEL = "Bluesky Queue Server (HTTP API)"
DEFAULT_HEALTH_INTERVAL = 10.0
HEALTH_INTERVAL_RANGE = (2.0, 600.0)
HEALTH_OFF = "off"
DEFAULT_REMOTE_INTERVAL = 10.0


class SaveError(OSError):
    """Settings could not be saved; the message says why in words, the old file is intact."""


@dataclass(frozen=True)
class Setting:
    """One scalar setting: the dialog, the defaults and validation all come from this."""

    key: str
    default: float | bool | str
    label: str
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting("interval", 1.0, "Poll interval (seconds)", 0.5, 60.0, "How often ports are checked."),
    Setting("notifications", True, "Show notifications", help="A notification on each change."),
    Setting("start_at_login", False, "Start at login", help="Start Port Watch when you log in."),
    Setting(
        "textfile_dir",
        "",
        "Prometheus textfile folder",
        help="Keep portwatch.prom in this folder current (node_exporter's "
        "--collector.textfile.directory); empty: off.",
    ),
)
MAX_PATH_TEXT = 4096


@dataclass(frozen=True)
class WatchedPort:
    port: Port
    label: str = ""
    notify_start: bool = True
    notify_stop: bool = True
    muted: bool = False
    # For the service probe; never logged or shown (so not in repr either).
    api_key: str | None = field(default=None, repr=False)
    # Seconds between health checks while the port listens; None: no health checks.
    health_interval: float | None = DEFAULT_HEALTH_INTERVAL


@dataclass(frozen=True)
class WatchedRemote:
    """A service on another machine (core/remote.py): the host and port the user typed."""

    target: RemoteTarget
    label: str = ""
    muted: bool = False
    api_key: str | None = field(default=None, repr=False)
    # The user agreed to send the key unencrypted over plain http:// to this host.
    allow_plain_key: bool = False
    ca_file: str = ""  # a lab's own CA for https://, besides the system's trust store
    interval: float = DEFAULT_REMOTE_INTERVAL

    def remote_settings(self, key: KeyChoice) -> RemoteSettings:
        return RemoteSettings(key, self.allow_plain_key, self.ca_file or None)


@dataclass(frozen=True)
class Config:
    ports: tuple[WatchedPort, ...] = (WatchedPort(DEFAULT_PORT, DEFAULT_LABEL),)
    remotes: tuple[WatchedRemote, ...] = ()
    interval: float = 1.0
    notifications: bool = True
    start_at_login: bool = False
    textfile_dir: str = ""  # where to keep the Prometheus metrics file; "" = don't
    # Keys a newer version wrote: kept and written back so a downgrade loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    def watched(self, port: Port) -> WatchedPort | None:
        for entry in self.ports:
            if entry.port == port:
                return entry
        return None

    def remote(self, target: RemoteTarget) -> WatchedRemote | None:
        for entry in self.remotes:
            if entry.target == target:
                return entry
        return None

    def with_ports(self, ports: tuple[WatchedPort, ...]) -> Config:
        return replace(self, ports=ports)


@dataclass
class LoadResult:
    config: Config
    problems: list[str] = field(default_factory=list)
    backup: Path | None = None

    @property
    def message(self) -> str | None:
        """One line for the user, or None when all was well."""
        if not self.problems:
            return None
        where = f"; the original is kept as {self.backup}" if self.backup else ""
        return f"Settings file {_fix_list(self.problems)}{where}."


def _fix_list(problems: list[str]) -> str:
    head = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return head + more


def load(path: Path, *, repair: bool = True) -> LoadResult:
    """With repair=False (the command line's read-only use) nothing is moved or rewritten."""
    if not repair:
        return _peek(path)
    try:
        if path.is_dir():
            return _start_over(path, "is a folder, not a file: using defaults")
        if not path.exists():
            return LoadResult(Config())
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return _start_over(path, f"is larger than {MAX_CONFIG_BYTES} bytes: using defaults")
        raw = path.read_bytes()
    except OSError as exc:
        return _start_over(path, f"could not be read ({exc.strerror or exc}): using defaults")
    try:
        # utf-8-sig: Notepad and friends start UTF-8 files with a byte-order mark.
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _start_over(path, "is not valid JSON: using defaults")
    config, problems = from_dict(data)
    result = LoadResult(config, problems)
    if problems:
        result.backup = _back_up(path, result)
        # Write the repaired version so the same problem is not reported on every start.
        with contextlib.suppress(OSError, ValueError):
            save(path, config)
    _remove_stale_temp_files(path)
    return result


STALE_TEMP_S = 60.0


def _remove_stale_temp_files(path: Path) -> None:
    """A save killed mid-write leaves its temp file (config.json itself stays whole); clear
    those old enough that no save can still be writing them."""
    cutoff = time.time() - STALE_TEMP_S
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if temp.stat().st_mtime < cutoff:
                temp.unlink()


def _peek(path: Path) -> LoadResult:
    try:
        if path.is_file() and path.stat().st_size <= MAX_CONFIG_BYTES:
            config, problems = from_dict(json.loads(path.read_bytes().decode("utf-8-sig")))
            return LoadResult(config, problems)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        pass
    return LoadResult(Config())


def _start_over(path: Path, problem: str) -> LoadResult:
    result = LoadResult(Config(), [problem])
    result.backup = _back_up(path, result)
    return result


def _back_up(path: Path, result: LoadResult) -> Path | None:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.bad-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.bad-{stamp}-{n}")
    try:
        os.replace(path, target)
    except OSError as exc:
        result.problems.append(f"could not be moved aside ({exc.strerror or exc})")
        return None
    return target


def from_dict(data: object) -> tuple[Config, list[str]]:
    """Keep every valid part of `data`, default the rest, and say what was dropped."""
    if not isinstance(data, dict):
        return Config(), [f"holds {type(data).__name__}, not an object: using defaults"]
    problems: list[str] = []
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.key in data:
            value, problem = _scalar(setting, data[setting.key])
            if problem:
                problems.append(problem)
            else:
                values[setting.key] = value
    ports: tuple[WatchedPort, ...] = Config().ports
    if "ports" in data:
        ports, port_problems = _ports(data["ports"])
        problems.extend(port_problems)
    remotes: tuple[WatchedRemote, ...] = ()
    if "remotes" in data:
        remotes, remote_problems = _remotes(data["remotes"])
        problems.extend(remote_problems)
    known = {"version", "ports", "remotes", *(s.key for s in SETTINGS)}
    extra = {k: v for k, v in data.items() if k not in known}
    return Config(ports=ports, remotes=remotes, extra=extra, **values), problems


def _remotes(value: object) -> tuple[tuple[WatchedRemote, ...], list[str]]:
    if not isinstance(value, list):
        return (), ["'remotes' must be a list"]
    return _entries(value, remote_from_dict, lambda e: e.target, "remote entry", "remote entries")


def _flags(item: dict[str, Any], defaults: dict[str, bool]) -> dict[str, bool]:
    """The entry's true/false settings; a wrong type is an error of the whole entry."""
    flags: dict[str, bool] = {}
    for key, default in defaults.items():
        flag = item.get(key, default)
        if not isinstance(flag, bool):
            raise ValueError(f"'{key}' must be true or false")
        flags[key] = flag
    return flags


def _api_key(item: dict[str, Any], whose: str, notes: list[str] | None) -> str | None:
    """The entry's API key, or None. A bad key costs only the key (said in `notes`)."""
    api_key = item.get("api_key")
    if api_key is None:
        return None
    cleaned = clean_key(api_key) if isinstance(api_key, str) else None
    if cleaned is None and api_key != "" and notes is not None:
        notes.append(f"the API key of {whose} dropped (use {KEY_ALLOWED})")
    return cleaned


def remote_from_dict(item: object, notes: list[str] | None = None) -> WatchedRemote:
    """A remote entry from its JSON; ValueError if unusable. As for ports, a bad key or
    interval costs only itself (said in `notes`)."""
    if not isinstance(item, dict):
        raise ValueError("not an object")
    text = item.get("target")
    if not isinstance(text, str):
        raise ValueError("'target' must be text like host:60610 or https://host/qserver")
    try:
        target = parse_remote(text)
    except RemoteSpecError as exc:
        raise ValueError(str(exc)) from None
    label, ca_file = item.get("label", ""), item.get("ca_file", "")
    if not isinstance(label, str):
        raise ValueError("'label' must be text")
    if not isinstance(ca_file, str) or len(ca_file) > MAX_PATH_TEXT or not ca_file.isprintable():
        raise ValueError("'ca_file' must be the path of a PEM file, one line")
    flags = _flags(item, {"muted": False, "allow_plain_key": False})
    api_key = _api_key(item, str(target), notes)
    interval = item.get("interval", DEFAULT_REMOTE_INTERVAL)
    try:
        checked = parse_health_interval(interval)
    except ValueError:
        checked = None
    if checked is None:
        low, high = HEALTH_INTERVAL_RANGE
        if notes is not None:
            notes.append(
                f"{target}: 'interval' must be {low:g} to {high:g} seconds; "
                f"using {DEFAULT_REMOTE_INTERVAL:g}"
            )
        checked = DEFAULT_REMOTE_INTERVAL
    return WatchedRemote(
        target,
        label=clean_label(label),
        api_key=api_key or None,
        ca_file=ca_file.strip(),
        interval=checked,
        **flags,
    )


def _scalar(setting: Setting, value: object) -> tuple[object, str | None]:
    if isinstance(setting.default, str):
        if not isinstance(value, str):
            return None, f"'{setting.key}' must be text"
        if len(value) > MAX_PATH_TEXT or not value.isprintable():
            return None, f"'{setting.key}' must be one line of at most {MAX_PATH_TEXT} characters"
        return value.strip(), None
    if isinstance(setting.default, bool):
        if isinstance(value, bool):
            return value, None
        return None, f"'{setting.key}' must be true or false"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, f"'{setting.key}' must be a number"
    low, high = setting.minimum, setting.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        return None, f"'{setting.key}' must be from {low:g} to {high:g}"
    return float(value), None


def _ports(value: object) -> tuple[tuple[WatchedPort, ...], list[str]]:
    if not isinstance(value, list):
        return Config().ports, ["'ports' must be a list"]
    return _entries(value, watched_from_dict, lambda e: e.port, "port entry", "ports")


Entry = TypeVar("Entry")


def _entries(
    items: list[object],
    parse: Callable[[object, list[str]], Entry],
    key: Callable[[Entry], object],
    noun: str,
    plural: str,
) -> tuple[tuple[Entry, ...], list[str]]:
    """Every usable entry once, at most MAX_WATCHED; what was dropped, and why, in `problems`."""
    problems: list[str] = []
    entries: dict[object, Entry] = {}
    for index, item in enumerate(items):
        try:
            entry = parse(item, problems)
        except ValueError as exc:
            problems.append(f"{noun} {index + 1} dropped ({exc})")
            continue
        if key(entry) in entries:
            problems.append(f"{noun} {index + 1} dropped (a duplicate of {key(entry)})")
            continue
        if len(entries) >= MAX_WATCHED:
            problems.append(f"{plural} past the first {MAX_WATCHED} dropped")
            break
        entries[key(entry)] = entry
    return tuple(entries.values()), problems


def watched_from_dict(item: object, notes: list[str] | None = None) -> WatchedPort:
    """A watched port from its JSON; ValueError if the entry is unusable. A bad API key only
    loses the key (said in `notes`): the port itself is still worth watching."""
    if not isinstance(item, dict):
        raise ValueError("not an object")
    number, protocol = item.get("port"), item.get("protocol", "tcp")
    if not is_port_number(number):
        raise ValueError(f"'port' must be a number from {MIN_PORT} to {MAX_PORT}")
    if protocol not in PROTOCOLS:
        raise ValueError("'protocol' must be tcp or udp")
    label = item.get("label", "")
    if not isinstance(label, str):
        raise ValueError("'label' must be text")
    flags = _flags(item, {"notify_start": True, "notify_stop": True, "muted": False})
    api_key = _api_key(item, f"port {number}", notes)
    return WatchedPort(
        Port(number, protocol),
        label=clean_label(label),
        api_key=api_key or None,
        health_interval=_health_interval(item, number, notes),
        **flags,
    )


def _health_interval(item: dict[str, Any], number: int, notes: list[str] | None) -> float | None:
    # Like a bad key, a bad interval costs only itself: the port stays watched.
    try:
        return parse_health_interval(item.get("health_interval", DEFAULT_HEALTH_INTERVAL))
    except ValueError as exc:
        if notes is not None:
            notes.append(f"port {number}: {exc}; using {DEFAULT_HEALTH_INTERVAL:g}")
        return DEFAULT_HEALTH_INTERVAL


def parse_health_interval(value: object) -> float | None:
    """Seconds between health checks from config.json or Settings: a number from 2 to 600, or
    "off". ValueError names what is allowed."""
    low, high = HEALTH_INTERVAL_RANGE
    if isinstance(value, str):
        text = value.strip().lower()
        if text == HEALTH_OFF:
            return None
        try:
            value = float(text.removesuffix("s").strip())
        except ValueError:
            value = None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ValueError(f"'health_interval' must be {low:g} to {high:g} seconds or \"off\"")
    return float(value)


def health_interval_text(value: float | None) -> str:
    return HEALTH_OFF if value is None else f"{value:g}"


def clean_label(label: str) -> str:
    """Labels go into menus and notifications: one short line, no control characters."""
    text = "".join(ch if ch.isprintable() else " " for ch in label)
    return " ".join(text.split())[:MAX_LABEL]


def to_dict(config: Config) -> dict[str, Any]:
    data: dict[str, Any] = dict(config.extra)
    data["version"] = CONFIG_VERSION
    data["ports"] = [_watched_to_dict(entry) for entry in config.ports]
    if config.remotes:
        data["remotes"] = [_remote_to_dict(entry) for entry in config.remotes]
    for setting in SETTINGS:
        data[setting.key] = getattr(config, setting.key)
    return data


def _watched_to_dict(entry: WatchedPort) -> dict[str, Any]:
    item: dict[str, Any] = {
        "port": entry.port.number,
        "protocol": entry.port.protocol,
        "label": entry.label,
        "notify_start": entry.notify_start,
        "notify_stop": entry.notify_stop,
        "muted": entry.muted,
    }
    item["health_interval"] = HEALTH_OFF if entry.health_interval is None else entry.health_interval
    if entry.api_key:
        item["api_key"] = entry.api_key
    return item


def _remote_to_dict(entry: WatchedRemote) -> dict[str, Any]:
    item: dict[str, Any] = {
        "target": entry.target.title,
        "label": entry.label,
        "muted": entry.muted,
        "allow_plain_key": entry.allow_plain_key,
        "ca_file": entry.ca_file,
        "interval": entry.interval,
    }
    if entry.api_key:
        item["api_key"] = entry.api_key
    return item


def save(path: Path, config: Config) -> None:
    """Write atomically; the file is private (0600) because it may hold API keys. Raises
    SaveError (an OSError) saying why, e.g. "no space left on /home; ...", when it cannot."""
    data = to_dict(config)
    try:
        encoded = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate kept from an unknown key: \u escapes always encode.
        encoded = (json.dumps(data, indent=2, ensure_ascii=True) + "\n").encode("ascii")
    try:
        atomic_write(path, encoded, 0o600)
    except OSError as exc:
        reason = describe_write_error(exc, path)
        raise SaveError(f"{reason}; the settings file is unchanged") from exc
