"""A service on another machine: the host the user typed, its port, and what "up" means there.

Rules kept here (and proved by tests/test_remote.py on a real network namespace):
- only the host the user typed is contacted; nothing is scanned, resolved in bulk or discovered;
- an API key goes only to the entry it was configured for, and over plain http:// to a
  non-loopback host only when the entry says the user agreed (`allow_plain_key`);
- https:// verifies certificates against the system store, plus the entry's CA file if given;
- what went wrong is said in words: "name not found", "refused: nothing listens there", ...
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from trayapp.core.apikey import KeyChoice
from trayapp.core.bluesky import HistoryItem
from trayapp.core.probe import (
    RESET_TEXT,
    Endpoint,
    ProbeResult,
    history_from,
    looks_like_bluesky,
    probe_endpoint,
)

Scheme = Literal["tcp", "http", "https"]
CONNECT_TIMEOUT = 2.0
MAX_HOST = 253
MAX_PREFIX = 200
ALLOWED = (
    "use host:port (xf11id-srv1:60610, 10.0.0.5:60610, [fd00::5]:60610) or an http:// or "
    "https:// URL with a host (http://host:60610, https://host/qserver)"
)
_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$", re.ASCII)
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$", re.ASCII)


class RemoteSpecError(ValueError):
    """Text that is not a remote entry; str() is one line naming what was wrong."""


@dataclass(frozen=True, order=True)
class RemoteTarget:
    """host:port, or an http(s) URL's host, port and path prefix ("" or "/qserver")."""

    host: str  # a name or an IP address as typed, without brackets
    port: int
    scheme: Scheme = "tcp"
    prefix: str = ""

    @property
    def host_text(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def title(self) -> str:
        """What menus, notifications and history call it."""
        if self.scheme == "tcp":
            return f"{self.host_text}:{self.port}"
        default = {"http": 80, "https": 443}[self.scheme]
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.host_text}{port}{self.prefix}"

    def __str__(self) -> str:
        return self.title

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host.lower() == "localhost"

    @property
    def speaks_http(self) -> bool:
        """Known to be HTTP: a URL, or the Bluesky HTTP API's port."""
        return self.scheme != "tcp" or looks_like_bluesky(self.port, [])


def looks_remote(text: str) -> bool:
    """Whether a command-line word names another machine rather than a local port spec."""
    text = text.strip()
    return "://" in text or (":" in text and not text.replace("/", "").isdigit())


def parse_remote(text: str) -> RemoteTarget:
    """A remote entry from what a person typed; RemoteSpecError says why not."""
    raw = text.strip()
    if not raw or len(raw) > MAX_HOST + 300 or not raw.isprintable() or " " in raw:
        raise RemoteSpecError(f"{_shown(text)} is not a host and port: {ALLOWED}")
    if "://" in raw:
        return _parse_url(raw, text)
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host:
        raise RemoteSpecError(f"{_shown(text)} has no port: {ALLOWED}")
    return RemoteTarget(_host(host, text), _port(port_text, text))


def _parse_url(raw: str, text: str) -> RemoteTarget:
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise RemoteSpecError(f"{_shown(text)} has a bad port: use 1 to 65535") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise RemoteSpecError(f"{_shown(text)}: only http:// and https:// URLs can be watched")
    if parts.username is not None or parts.password is not None:
        raise RemoteSpecError(
            f"{_shown(text)} carries a user name or password: give the API key in Settings"
        )
    if parts.query or parts.fragment:
        raise RemoteSpecError(f"{_shown(text)}: a URL with ? or # cannot be watched: {ALLOWED}")
    host = parts.hostname or ""
    if not host:
        raise RemoteSpecError(f"{_shown(text)} has no host: {ALLOWED}")
    if port is None:
        port = 443 if scheme == "https" else 80
    if not 0 < port < 65536:
        raise RemoteSpecError(f"{_shown(text)} has a bad port: use 1 to 65535")
    prefix = parts.path.rstrip("/")
    if len(prefix) > MAX_PREFIX or not _PREFIX.match(prefix):
        raise RemoteSpecError(f"{_shown(text)} has a path that cannot be used: {ALLOWED}")
    bracketed = f"[{host}]" if ":" in host else host
    return RemoteTarget(
        _host(bracketed, text), port, "https" if scheme == "https" else "http", prefix
    )


def _host(host: str, text: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise RemoteSpecError(f"{_shown(text)}: {host} is not an IPv6 address") from None
    if ":" in host:
        raise RemoteSpecError(f"{_shown(text)}: write an IPv6 address in brackets, [fd00::5]:60610")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > MAX_HOST or not all(_LABEL.match(label) for label in labels):
        raise RemoteSpecError(
            f"{_shown(text)}: {_shown(host)} is not a host name "
            "(letters, digits, '-' and '.', or an IP address)"
        )
    if labels[-1].isdigit():
        raise RemoteSpecError(f"{_shown(text)}: {_shown(host)} is not an IP address")
    return name


def _port(text: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise RemoteSpecError(f"{_shown(whole)} has a bad port: use a number from 1 to 65535")
    return int(text)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "...")


# -- reaching it -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """One TCP connect: whether something listens there, and if not, why, in words."""

    up: bool
    code: str  # "up", "name-not-found", "refused", "timeout", "reset", "unreachable", "error"
    text: str
    address: str | None = None  # the address connected to (or tried last)
    seconds: float = 0.0


def reach(target: RemoteTarget, timeout: float = CONNECT_TIMEOUT) -> Reach:
    """Resolve the typed host (one lookup) and connect to its port, each address in turn."""
    started = time.monotonic()
    if target.host.endswith(".invalid") or target.host == "invalid":
        # RFC 6761: such names never resolve, so they are not asked of any DNS server.
        return Reach(False, "name-not-found", f"name not found: {target.host}")
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            return Reach(False, "name-not-found", f"name not found: {target.host}")
        return Reach(False, "name-not-found", f"name lookup failed: {exc.strerror or exc}")
    except (OSError, UnicodeError) as exc:
        return Reach(False, "name-not-found", f"name lookup failed: {exc}")
    last = Reach(False, "error", "no address to connect to")
    for family, kind, proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(left)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            last = _failure(exc, address, timeout)
            if last.code == "refused":
                break  # the host answered: trying its other addresses would not change that
            continue
        finally:
            sock.close()
        return Reach(True, "up", f"listening (on {address})", address, time.monotonic() - started)
    return replace(last, seconds=time.monotonic() - started)


def _failure(exc: OSError, address: str, timeout: float) -> Reach:
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        text = f"no answer in {timeout:g} s: host down or a firewall drops it"
        return Reach(False, "timeout", text, address)
    if isinstance(exc, ConnectionRefusedError):
        return Reach(False, "refused", "refused: nothing listens there", address)
    if isinstance(exc, ConnectionResetError):
        return Reach(False, "reset", RESET_TEXT, address)
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return Reach(False, "unreachable", f"cannot reach {address}: no route to it", address)
    return Reach(False, "error", f"could not connect: {exc.strerror or exc}", address)


# -- its health ------------------------------------------------------------------------------


class RemoteEndpoint(Endpoint):
    """HTTP(S) to the typed host only; the Host header and SNI carry the name as typed."""

    def __init__(self, target: RemoteTarget, ca_file: str | None = None) -> None:
        self.host = target.host
        self.port = target.port
        self.target = target
        self.ca_file = ca_file or None

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.target.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=tls_context(self.ca_file)
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def url_path(self, path: str) -> str:
        return self.target.prefix + path


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trust store, plus a lab's own CA when the entry names one."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def check_ca_file(path: str) -> str | None:
    """Why a CA file cannot be used, in words, or None."""
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except FileNotFoundError:
        return f"the CA file {path} does not exist"
    except IsADirectoryError:
        return f"the CA file {path} is a folder"
    except PermissionError:
        return f"the CA file {path} cannot be read (permission denied)"
    except (ssl.SSLError, ValueError, OSError):
        return f"the CA file {path} holds no PEM certificate"
    return None


@dataclass(frozen=True)
class RemoteSettings:
    """What one remote entry's checks may use: its key, whether the user agreed to send it
    unencrypted, and the CA file it trusts."""

    key: KeyChoice = field(default_factory=KeyChoice)
    allow_plain_key: bool = False
    ca_file: str | None = None

    def key_for(self, target: RemoteTarget) -> tuple[KeyChoice, str | None]:
        """The key this target may get, and why the configured one is held back (or None)."""
        if not self.key.key:
            return self.key, None
        if target.scheme == "https" or target.loopback or self.allow_plain_key:
            return self.key, None
        return KeyChoice(), (
            f"the API key ({self.key.origin}) is not sent over plain http:// to "
            f"{target.host} until you agree to send it unencrypted (Settings)"
        )


@dataclass(frozen=True)
class RemoteCheck:
    """Whether the remote port answers, and (for an HTTP service) how healthy it is."""

    target: RemoteTarget
    reach: Reach
    result: ProbeResult | None  # None: not reachable, or not an HTTP service
    time: float = field(default_factory=time.time)
    seconds: float = 0.0  # how long the whole check took (connect, and health when checked)

    @property
    def up(self) -> bool:
        return self.reach.up

    @property
    def verdict(self) -> str:
        if not self.up:
            return "down"
        return self.result.verdict if self.result is not None else "unchecked"

    @property
    def line(self) -> str:
        """One line for menus, tooltips and the command line."""
        if not self.up:
            return f"{self.target.title}: {self.reach.text}"
        if self.result is None or self.result.verdict == "unchecked":
            return f"{self.target.title}: {self.reach.text}"
        return f"{self.target.title}: {self.result.verdict}: {self.result.summary}"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target.title,
            "host": self.target.host,
            "port": self.target.port,
            "scheme": self.target.scheme,
            "prefix": self.target.prefix,
            "state": "listening" if self.up else "down",
            "reach": {
                "code": self.reach.code,
                "text": self.reach.text,
                "address": self.reach.address,
            },
            "probe": self.result.to_json() if self.result is not None else None,
        }


def check_remote(
    target: RemoteTarget,
    settings: RemoteSettings | None = None,
    *,
    timeout: float = CONNECT_TIMEOUT,
    bluesky: bool | None = None,
) -> RemoteCheck:
    """Connect; then, for an HTTP service, the same health check as a local port's."""
    started = time.monotonic()
    settings = settings or RemoteSettings()
    reached = reach(target, timeout)
    if not reached.up or not target.speaks_http:
        return RemoteCheck(target, reached, None, seconds=reached.seconds)
    if target.scheme == "https" and settings.ca_file:
        problem = check_ca_file(settings.ca_file)
        if problem:
            failed = ProbeResult(target.port, target.host, "error", problem)
            return RemoteCheck(target, reached, failed, seconds=time.monotonic() - started)
    key, held_back = settings.key_for(target)
    if bluesky is None and looks_like_bluesky(target.port, []):
        bluesky = True
    result = probe_endpoint(
        RemoteEndpoint(target, settings.ca_file),
        key,
        timeout=timeout,
        bluesky=bluesky,
        expected_http=True,
    )
    if held_back and result.health == "needs-key":
        result = replace(result, summary=f"Bluesky HTTP server up, needs an API key; {held_back}")
    return RemoteCheck(target, reached, result, seconds=time.monotonic() - started)


def remote_history(
    target: RemoteTarget, settings: RemoteSettings, timeout: float = 3.0
) -> list[HistoryItem] | str:
    key, _held_back = settings.key_for(target)
    return history_from(RemoteEndpoint(target, settings.ca_file), key.key, timeout)
