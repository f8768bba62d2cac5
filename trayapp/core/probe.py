"""Is the service healthy, not just listening? A short HTTP look, Bluesky-aware.

Rules it keeps: loopback addresses only (a test proves others are refused), a 1 s timeout per
request, run on a state change or on demand (never on every poll), and credentials only when
the user set an API key for that port, sent as `Authorization: ApiKey <key>` and never logged.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from trayapp.core.model import PortState

Health = Literal[
    "ok", "http", "needs-key", "manager-unreachable", "not-http", "no-answer", "error", "skipped"
]
BLUESKY_HINTS = ("bluesky_httpserver", "bluesky-httpserver", "start-bluesky-httpserver")
BLUESKY_PORTS = frozenset({60610})
STATUS_FIELDS = ("manager_state", "items_in_queue", "items_in_history", "worker_environment_exists")
MAX_BODY = 64 * 1024
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class NotLoopback(ValueError):
    """The probe was asked to contact an address outside this machine."""


@dataclass(frozen=True)
class ProbeResult:
    port: int
    host: str
    health: Health
    summary: str  # one line for menus, tooltips and the CLI
    time: float = field(default_factory=time.time)
    status: int | None = None
    server: str | None = None
    title: str | None = None
    bluesky: dict[str, Any] | None = None  # the /api/status fields we show

    @property
    def short(self) -> str:
        """A few words for a menu line."""
        if self.health == "ok":
            state = (self.bluesky or {}).get("manager_state", "?")
            return f"RE Manager {state}"
        return {
            "http": f"HTTP {self.status}" if self.status else "HTTP",
            "needs-key": "needs an API key",
            "manager-unreachable": "RE Manager unreachable",
            "not-http": "not HTTP",
            "no-answer": "not answering",
            "skipped": "not probed",
        }.get(self.health, "probe failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "health": self.health,
            "summary": self.summary,
            "time": self.time,
            "http_status": self.status,
            "server": self.server,
            "title": self.title,
            "bluesky": self.bluesky,
        }


def require_loopback(host: str) -> str:
    """The address to connect to, normalised; NotLoopback for anything off this machine.
    What is checked is exactly what is contacted: no brackets or names left for DNS."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise NotLoopback(
            f"{host!r} is not an IP address; the probe only contacts loopback"
        ) from None
    if not address.is_loopback:
        raise NotLoopback(f"{host} is not a loopback address; the probe only contacts loopback")
    return str(address)


def loopback_for(addresses: Sequence[str]) -> str | None:
    """The loopback address that reaches a listener bound to these addresses, if any."""
    for address in addresses:
        # A v4-mapped address only takes IPv4: reach it over 127.x, not ::1.
        plain = address.removeprefix("::ffff:")
        if plain == "0.0.0.0":
            return "127.0.0.1"
        if plain.startswith("127."):
            return plain
    for address in addresses:
        if address in ("::", "::1"):
            return "::1"
    return None


def sendable_key(key: str) -> bool:
    """An HTTP header value we can send: printable ASCII, no spaces or line breaks."""
    return bool(key) and all(33 <= ord(ch) <= 126 for ch in key)


def looks_like_bluesky(port: int, evidence: Sequence[str]) -> bool:
    text = " ".join(evidence).lower()
    return port in BLUESKY_PORTS or any(hint in text for hint in BLUESKY_HINTS)


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _get(host: str, port: int, path: str, timeout: float, api_key: str | None) -> _Answer:
    """One GET, bounded by `timeout` as a whole: the socket timeout alone limits each read,
    so a server trickling a byte at a time could hold the probe for ever."""
    host = require_loopback(host)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"User-Agent": "portwatch-probe", "Accept": "*/*", "Connection": "close"}
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    deadline = time.monotonic() + timeout
    alarm = threading.Timer(timeout, _abort, (conn,))
    alarm.daemon = True
    alarm.start()
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read(MAX_BODY)
        return _Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    except (OSError, http.client.HTTPException):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no complete answer within {timeout:g} s") from None
        raise
    finally:
        alarm.cancel()
        conn.close()


def _abort(conn: http.client.HTTPConnection) -> None:
    # Wakes a read blocked in another thread; close() alone would not.
    if conn.sock is not None:
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)


def probe(
    port: int,
    host: str = "127.0.0.1",
    *,
    timeout: float = 1.0,
    api_key: str | None = None,
    bluesky: bool = False,
) -> ProbeResult:
    """Look at a TCP service on loopback. Raises NotLoopback for any other address."""
    host = require_loopback(host)
    if api_key is not None:
        api_key = api_key.strip()
        if not sendable_key(api_key):
            # Never put the key (or an error quoting it) into a result, a log or the screen.
            return ProbeResult(
                port,
                host,
                "needs-key",
                "the API key has characters that cannot be sent; set it again in Settings",
            )
    try:
        answer = _get(host, port, "/", timeout, api_key=None)
    except TimeoutError:
        return ProbeResult(port, host, "no-answer", f"no answer within {timeout:g} s")
    except ConnectionRefusedError:
        return ProbeResult(port, host, "error", "connection refused")
    except (http.client.HTTPException, ConnectionError, UnicodeError):
        return ProbeResult(port, host, "not-http", "answers, but not HTTP")
    except OSError as exc:
        return ProbeResult(port, host, "error", f"could not connect: {exc.strerror or exc}")
    server = answer.headers.get("server")
    title = _title(answer.body)
    base = f"HTTP {answer.status}" + (f", {server}" if server else "")
    if title:
        base += f', "{title}"'
    if not bluesky:
        return ProbeResult(
            port, host, "http", base, status=answer.status, server=server, title=title
        )
    return _bluesky(port, host, timeout, api_key, answer.status, base, server, title)


def _title(body: bytes) -> str | None:
    match = _TITLE.search(body)
    if not match:
        return None
    text = match.group(1).decode("utf-8", "replace")
    return " ".join(text.split())[:120] or None


def _bluesky(
    port: int,
    host: str,
    timeout: float,
    api_key: str | None,
    root_status: int,
    base: str,
    server: str | None,
    title: str | None,
) -> ProbeResult:
    def result(health: Health, summary: str, **extra: Any) -> ProbeResult:
        return ProbeResult(port, host, health, summary, server=server, title=title, **extra)

    try:
        answer = _get(host, port, "/api/status", timeout, api_key)
    except TimeoutError:
        return result("manager-unreachable", "HTTP server up, RE Manager not answering (timeout)")
    except (http.client.HTTPException, OSError) as exc:
        return result("error", f"HTTP server up, /api/status failed: {exc}")
    if answer.status in (401, 403):
        need = "API key rejected" if api_key else "needs an API key (set one in Settings)"
        return result("needs-key", f"Bluesky HTTP server up, {need}", status=answer.status)
    if answer.status == 408:
        return result("manager-unreachable", "HTTP server up, RE Manager unreachable", status=408)
    if answer.status != 200:
        # No Bluesky API here after all (say, a dev server on 60610): report what GET / said.
        summary = f"{base}; not a Bluesky server (/api/status: {answer.status})"
        return result("http", summary, status=root_status)
    try:
        data = json.loads(answer.body)
    except ValueError:
        return result("http", "HTTP server up, /api/status is not JSON", status=200)
    if not isinstance(data, dict):
        return result("http", "HTTP server up, unexpected /api/status answer", status=200)
    fields = {key: data.get(key) for key in STATUS_FIELDS if key in data}
    state = fields.get("manager_state", "?")
    summary = (
        f"RE Manager {state}, {fields.get('items_in_queue', '?')} queued, "
        f"{fields.get('items_in_history', '?')} in history, worker environment "
        + ("open" if fields.get("worker_environment_exists") else "closed")
    )
    return result("ok", summary, status=200, bluesky=fields)


def probe_state(state: PortState, api_key: str | None = None, timeout: float = 1.0) -> ProbeResult:
    """Probe a listening TCP port where its listeners can be reached on loopback."""
    addresses = [listener.address for listener in state.listeners]
    port = state.port.number
    host = loopback_for(addresses)
    if host is None:
        where = ", ".join(dict.fromkeys(addresses)) or "no address"
        return ProbeResult(
            port, "", "skipped", f"listens only on {where}; not probed (loopback only)"
        )
    return probe(
        port,
        host,
        timeout=timeout,
        api_key=api_key,
        bluesky=looks_like_bluesky(port, state.evidence),
    )
