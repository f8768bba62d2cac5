"""Is the service healthy, not just listening? A short HTTP look, Bluesky-aware.

Rules it keeps: loopback addresses only (a test proves others are refused), a timeout per
request (the status request waits a little longer, because bluesky-httpserver itself takes 2 s
to say that its RE Manager is unreachable), and credentials only to the status and history
endpoints of a Bluesky server, as `Authorization: ApiKey <key>`, never logged or shown.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from trayapp.core.apikey import KeyChoice
from trayapp.core.bluesky import OPENAPI_TITLE, HistoryItem, QueueStatus, parse_history
from trayapp.core.model import PortState

Health = Literal[
    "ok",  # a Bluesky server whose RE Manager answered
    "http",  # an HTTP server answered (below 500)
    "server-error",  # HTTP 5xx
    "needs-key",
    "key-rejected",
    "manager-unreachable",
    "environment-failed",
    "not-http",
    "no-answer",
    "error",
    "refused",  # nothing accepts connections: the port stopped between the scan and the check
    "skipped",
]
Verdict = Literal["healthy", "unhealthy", "unchecked"]
# Everything but a working answer and "not looked at" (a service that is not HTTP counts only
# where HTTP was expected: see ProbeResult.verdict).
UNHEALTHY: frozenset[Health] = frozenset(get_args(Health)) - {"ok", "http", "refused", "skipped"}
BLUESKY_HINTS = ("bluesky_httpserver", "bluesky-httpserver", "start-bluesky-httpserver")
BLUESKY_PORTS = frozenset({60610})
MAX_BODY = 64 * 1024
MAX_HISTORY_BODY = 8 * 1024 * 1024  # a busy beamline's history; more is not a history
RESET_TEXT = "connection reset by the host or a firewall"
STATUS_TIMEOUT = 3.0  # bluesky-httpserver answers 408 after 2 s when its RE Manager is gone
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_OPENAPI_TITLE = re.compile(rb'"info"\s*:\s*\{[^{}]*?"title"\s*:\s*"([^"\\]{1,200})"')


class NotLoopback(ValueError):
    """The probe was asked to contact an address outside this machine."""


@dataclass(frozen=True)
class ProbeResult:
    port: int
    host: str
    health: Health
    summary: str  # one line for tooltips, windows and the CLI
    time: float = field(default_factory=time.time)
    status: int | None = None
    server: str | None = None
    title: str | None = None
    queue: QueueStatus | None = None  # a Bluesky server's /api/status, when it answered
    # False: the port is not known to speak HTTP, so "not HTTP" or silence is no fault of it.
    expected_http: bool = True
    bluesky_server: bool = False  # identified as bluesky-httpserver (hints or /openapi.json)
    key_origin: str | None = None  # where the API key sent came from (never the key)

    @property
    def verdict(self) -> Verdict:
        if self.health in ("skipped", "refused"):
            return "unchecked"
        if self.health in ("not-http", "no-answer") and not self.expected_http:
            return "unchecked"
        return "unhealthy" if self.health in UNHEALTHY else "healthy"

    @property
    def short(self) -> str:
        """A few words for a menu line."""
        if self.health == "ok" and self.queue is not None:
            return f"RE Manager {self.queue.line()}"
        return {
            "http": f"HTTP {self.status}" if self.status else "HTTP",
            "server-error": f"HTTP {self.status}: server error",
            "needs-key": "needs an API key",
            "key-rejected": "API key rejected",
            "manager-unreachable": "RE Manager unreachable",
            "environment-failed": "worker environment failed",
            "not-http": "not HTTP" if self.expected_http else "no health check",
            "no-answer": "not answering" if self.expected_http else "no health check",
            "skipped": "not checked",
            "refused": "not accepting connections",
        }.get(self.health, "check failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "health": self.health,
            "verdict": self.verdict,
            "summary": self.summary,
            "time": self.time,
            "http_status": self.status,
            "server": self.server,
            "title": self.title,
            "bluesky": self.queue.to_json() if self.queue is not None else None,
            "api_key_from": self.key_origin,
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


def looks_like_bluesky(port: int, evidence: Sequence[str]) -> bool:
    text = " ".join(evidence).lower()
    return port in BLUESKY_PORTS or any(hint in text for hint in BLUESKY_HINTS)


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool = False


class Endpoint:
    """Where the HTTP requests of one probe go. This one: a loopback address; the remote
    entries' endpoint (core/remote.py) adds TLS and a path prefix, to the host the user typed."""

    def __init__(self, host: str, port: int) -> None:
        self.host = require_loopback(host)
        self.port = port

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def url_path(self, path: str) -> str:
        return path

    def get(self, path: str, timeout: float, api_key: str | None, limit: int = MAX_BODY) -> _Answer:
        """One GET, bounded by `timeout` as a whole: the socket timeout alone limits each read,
        so a server trickling a byte at a time could hold the probe for ever."""
        conn = self.connection(timeout)
        headers = {"User-Agent": "portwatch-probe", "Accept": "*/*", "Connection": "close"}
        if api_key:
            headers["Authorization"] = f"ApiKey {api_key}"
        deadline = time.monotonic() + timeout
        alarm = _WATCHDOG.arm(deadline, conn)
        try:
            conn.request("GET", self.url_path(path), headers=headers)
            response = conn.getresponse()
            body = response.read(limit + 1)
            length = response.getheader("Content-Length", "")
            if length.isdigit() and len(body) < min(int(length), limit + 1):
                raise http.client.IncompleteRead(body, int(length) - len(body))
            return _Answer(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                body[:limit],
                truncated=len(body) > limit,
            )
        except ssl.SSLCertVerificationError:
            raise  # a verdict on the certificate, not a slow server
        except (OSError, http.client.HTTPException):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no complete answer within {timeout:g} s") from None
            raise
        finally:
            _WATCHDOG.disarm(alarm)
            conn.close()


def _abort(conn: http.client.HTTPConnection) -> None:
    # Wakes a read blocked in another thread; close() alone would not.
    if conn.sock is not None:
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread that aborts requests past their deadline. A timer thread per request cost
    a thread start for every health check; this one sleeps until the next deadline."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._armed: dict[int, tuple[float, http.client.HTTPConnection]] = {}
        self._next_id = 0
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, conn: http.client.HTTPConnection) -> int:
        with self._wake:
            self._next_id += 1
            self._armed[self._next_id] = (deadline, conn)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="portwatch-probe-deadlines", daemon=True
                )
                self._thread.start()
            self._wake.notify()
            return self._next_id

    def disarm(self, alarm: int) -> None:
        with self._wake:
            self._armed.pop(alarm, None)

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for alarm, (deadline, conn) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[alarm]
                        _abort(conn)
                waits = [deadline - now for deadline, _conn in self._armed.values()]
                # Nothing armed: sleep until something is (no wake-ups while idle).
                self._wake.wait(min(waits) if waits else None)


_WATCHDOG = _Watchdog()


def probe(
    port: int,
    host: str = "127.0.0.1",
    *,
    timeout: float = 1.0,
    api_key: str | KeyChoice | None = None,
    bluesky: bool | None = False,
    expected_http: bool = True,
    root: bool = True,
) -> ProbeResult:
    """Look at a TCP service on loopback. Raises NotLoopback for any other address.

    bluesky: True when the owner is known to be bluesky-httpserver, None to find out from
    its public /openapi.json (an owner hidden from us, or a renamed program). root=False
    skips `GET /` for a server already known to be a Bluesky server."""
    key = api_key if isinstance(api_key, KeyChoice) else KeyChoice.from_settings(api_key)
    return probe_endpoint(
        Endpoint(host, port),
        key,
        timeout=timeout,
        bluesky=bluesky,
        expected_http=expected_http,
        root=root,
    )


def probe_endpoint(
    endpoint: Endpoint,
    key: KeyChoice,
    *,
    timeout: float = 1.0,
    bluesky: bool | None = False,
    expected_http: bool = True,
    root: bool = True,
) -> ProbeResult:
    """probe() for any endpoint: the loopback one, or a remote entry's (core/remote.py)."""
    port, host = endpoint.port, endpoint.host
    if bluesky and not root:
        # Known to be a Bluesky server: its status alone answers (one request, not two).
        return _bluesky(endpoint, key, None, "", None, None)
    try:
        answer = endpoint.get("/", timeout, api_key=None)
    except TimeoutError:
        return ProbeResult(
            port,
            host,
            "no-answer",
            f"no answer within {timeout:g} s",
            expected_http=expected_http or bool(bluesky),
        )
    except ConnectionRefusedError:
        # Said by the scan, not here: a stop is not a sick service.
        return ProbeResult(port, host, "refused", "connection refused")
    except ssl.SSLCertVerificationError as exc:
        return ProbeResult(
            port, host, "error", f"certificate not trusted: {exc.verify_message or exc.reason}"
        )
    except ssl.SSLError as exc:
        return ProbeResult(port, host, "error", f"TLS failed: {exc.reason or exc}")
    except ConnectionResetError:
        # Accepted, then cut off: not an answer at all, so said as what happened.
        return ProbeResult(
            port, host, "not-http", RESET_TEXT, expected_http=expected_http or bool(bluesky)
        )
    except (http.client.HTTPException, ConnectionError, UnicodeError):
        return ProbeResult(
            port,
            host,
            "not-http",
            "answers, but not HTTP",
            expected_http=expected_http or bool(bluesky),
        )
    except OSError as exc:
        return ProbeResult(port, host, "error", f"could not connect: {exc.strerror or exc}")
    server = answer.headers.get("server")
    title = _title(answer.body)
    base = f"HTTP {answer.status}" + (f", {server}" if server else "")
    if title:
        base += f', "{title}"'
    if bluesky is None:
        bluesky = _openapi_title(endpoint, timeout) == OPENAPI_TITLE
    if not bluesky:
        health: Health = "server-error" if answer.status >= 500 else "http"
        return ProbeResult(
            port, host, health, base, status=answer.status, server=server, title=title
        )
    return _bluesky(endpoint, key, answer.status, base, server, title)


def _openapi_title(endpoint: Endpoint, timeout: float) -> str | None:
    """FastAPI's schema names the application, and needs no credentials."""
    try:
        answer = endpoint.get("/openapi.json", timeout, api_key=None)
    except (OSError, http.client.HTTPException, UnicodeError):
        return None
    if answer.status != 200:
        return None
    match = _OPENAPI_TITLE.search(answer.body)
    return match.group(1).decode("utf-8", "replace") if match else None


def _title(body: bytes) -> str | None:
    match = _TITLE.search(body)
    if not match:
        return None
    text = match.group(1).decode("utf-8", "replace")
    return " ".join(text.split())[:120] or None


def _bluesky(
    endpoint: Endpoint,
    key: KeyChoice,
    root_status: int | None,
    base: str,
    server: str | None,
    title: str | None,
) -> ProbeResult:
    port, host = endpoint.port, endpoint.host

    def result(health: Health, summary: str, **extra: Any) -> ProbeResult:
        return ProbeResult(
            port,
            host,
            health,
            summary,
            server=server,
            title=title,
            bluesky_server=True,
            key_origin=key.origin if key.key else None,
            **extra,
        )

    if key.problem:
        # Never put the key (or an error quoting it) into a result, a log or the screen.
        return result("needs-key", f"Bluesky HTTP server up; {key.problem}")
    try:
        answer = endpoint.get("/api/status", STATUS_TIMEOUT, key.key)
    except TimeoutError:
        return result(
            "manager-unreachable",
            f"HTTP server up, RE Manager not answering (no status in {STATUS_TIMEOUT:g} s)",
        )
    except ConnectionRefusedError:
        return ProbeResult(port, host, "refused", "connection refused")
    except http.client.IncompleteRead:
        return result("error", "HTTP server up, /api/status answer cut short")
    except ConnectionResetError:
        return result("error", f"HTTP server up, /api/status: {RESET_TEXT}")
    except (http.client.HTTPException, OSError) as exc:
        return result("error", f"HTTP server up, /api/status failed: {type(exc).__name__}")
    server = server or answer.headers.get("server")
    if answer.status in (401, 403):
        if key.key:
            return result(
                "key-rejected",
                f"Bluesky HTTP server up, the API key ({key.origin}) was rejected",
                status=answer.status,
            )
        return result(
            "needs-key",
            "Bluesky HTTP server up, needs an API key (set one in Settings or "
            "QSERVER_HTTP_SERVER_API_KEY)",
            status=answer.status,
        )
    if answer.status == 408:
        return result("manager-unreachable", "HTTP server up, RE Manager unreachable", status=408)
    if answer.status >= 500:
        return result(
            "server-error",
            f"Bluesky HTTP server error (HTTP {answer.status})",
            status=answer.status,
        )
    if answer.status != 200:
        # No Bluesky API here after all (say, a dev server on 60610): report what GET / said.
        base = base or f"HTTP {answer.status}" + (f", {server}" if server else "")
        summary = f"{base}; not a Bluesky server (/api/status: {answer.status})"
        return ProbeResult(
            port,
            host,
            "http",
            summary,
            status=root_status or answer.status,
            server=server,
            title=title,
        )
    if answer.truncated:
        return result("error", "HTTP server up, /api/status answer too large", status=200)
    try:
        data = json.loads(answer.body)
    except (ValueError, RecursionError):
        return result("error", "HTTP server up, /api/status is not JSON", status=200)
    queue = QueueStatus.from_json(data)
    if queue is None:
        return result("error", "HTTP server up, /api/status has no manager state", status=200)
    health: Health = "environment-failed" if queue.environment_failed else "ok"
    return result(health, queue.summary(), status=200, queue=queue)


def fetch_history(
    port: int, host: str, api_key: str | None, timeout: float = STATUS_TIMEOUT
) -> list[HistoryItem] | str:
    """The plan history of a Bluesky server, oldest first, or why it could not be read."""
    return history_from(Endpoint(host, port), api_key, timeout)


def history_from(
    endpoint: Endpoint, api_key: str | None, timeout: float = STATUS_TIMEOUT
) -> list[HistoryItem] | str:
    try:
        answer = endpoint.get("/api/history/get", timeout, api_key, limit=MAX_HISTORY_BODY)
    except TimeoutError:
        return f"no history within {timeout:g} s"
    except (http.client.HTTPException, OSError, UnicodeError) as exc:
        return f"history could not be read ({type(exc).__name__})"
    if answer.status != 200:
        return f"history answered HTTP {answer.status}"
    if answer.truncated:
        return f"history larger than {MAX_HISTORY_BODY // (1024 * 1024)} MiB, not read"
    try:
        items = parse_history(json.loads(answer.body))
    except (ValueError, RecursionError):
        items = None
    return "history is not what a Bluesky server sends" if items is None else items


def probe_state(
    state: PortState,
    api_key: str | KeyChoice | None = None,
    timeout: float = 1.0,
    *,
    bluesky: bool | None = None,
    expected_http: bool = False,
    root: bool = True,
) -> ProbeResult:
    """Probe a listening TCP port where its listeners can be reached on loopback.
    bluesky=None: decided from the owner (or, hidden or unknown, from /openapi.json)."""
    addresses = [listener.address for listener in state.listeners]
    port = state.port.number
    host = loopback_for(addresses)
    if host is None:
        where = ", ".join(dict.fromkeys(addresses)) or "no address"
        return ProbeResult(
            port, "", "skipped", f"listens only on {where}; not checked (loopback only)"
        )
    if bluesky is None and looks_like_bluesky(port, state.evidence):
        bluesky = True
    return probe(
        port,
        host,
        timeout=timeout,
        api_key=api_key,
        bluesky=bluesky,
        expected_http=expected_http,
        root=root,
    )
