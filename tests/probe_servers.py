"""Real servers for tests/test_probe.py: threads on a loopback address, or a child process when
the test needs the listener's owner to look like bluesky-httpserver.

Standard library only, so that this file also runs as a script in a child process:
``python tests/probe_servers.py bluesky_httpserver [--api-key KEY]`` prints its port, serves until
its stdin closes, then exits. "bluesky_httpserver" on that command line is what makes the probe
treat the child as a Bluesky HTTP server (looks_like_bluesky reads the owner's command line).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

HANG_SECONDS = 30.0  # a hanging handler's limit; teardown releases it long before
LOOPBACK = "127.0.0.1"

# What bluesky-httpserver 0.0.14's GET /api/status passes on from RE Manager 0.0.25 (recorded
# from the real pair; the uids shortened).
RE_MANAGER_STATUS: dict[str, Any] = {
    "msg": "RE Manager v0.0.25",
    "items_in_queue": 2,
    "items_in_history": 5,
    "running_item_uid": None,
    "manager_state": "idle",
    "queue_stop_pending": False,
    "queue_autostart_enabled": False,
    "worker_environment_exists": True,
    "worker_environment_state": "idle",
    "worker_background_tasks": 0,
    "re_state": "idle",
    "pause_pending": False,
    "plan_queue_uid": "cda97387",
    "plan_history_uid": "0cb63d03",
}
OPENAPI = {
    "openapi": "3.1.0",
    "info": {
        "title": "Bluesky HTTP Server",
        "description": "Control Experiments using Bluesky Queue Server",
        "version": "0.0.14",
    },
    "paths": {},
}
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2\r\n"


class LoopbackServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A threaded TCP server on a free loopback port that joins its handler threads on close
    (no daemon threads left behind) and records what the HTTP handlers saw."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler], host: str, **options: Any):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.options = options
        self.release = threading.Event()  # set at teardown: hanging handlers give up
        self._lock = threading.Lock()
        self._requests: list[tuple[str, list[tuple[str, str]]]] = []
        super().__init__((host, 0), handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def record(self, path: str, headers: list[tuple[str, str]]) -> None:
        with self._lock:
            self._requests.append((path, headers))

    @property
    def requests(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(path, every header as sent, in order) for each request, oldest first."""
        with self._lock:
            return list(self._requests)

    def header_values(self, path: str, name: str) -> list[list[str]]:
        """For each request to ``path``: the values of every header called ``name``."""
        return [
            [value for key, value in headers if key.lower() == name.lower()]
            for seen, headers in self.requests
            if seen == path
        ]


@contextmanager
def serve(
    handler: type[socketserver.BaseRequestHandler], host: str = LOOPBACK, **options: Any
) -> Iterator[LoopbackServer]:
    """Run ``handler`` on a free port of ``host`` (a loopback address) for the with-block."""
    server = LoopbackServer(handler, host, **options)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="probe-test-server"
    )
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        thread.join()
        server.server_close()  # joins the handler threads (block_on_close)


# --- HTTP -----------------------------------------------------------------------------------


class QuietHandler(BaseHTTPRequestHandler):
    """Records every request; no logging to stderr; a client that went away is not an error."""

    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        # The probe may give up (its timeout) before we answer.
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def version_string(self) -> str:
        return self.server_version

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:
            self.server.record(self.path, list(self.headers.items()))
        return ok

    def reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: int, data: object, **headers: str) -> None:
        self.reply(status, json.dumps(data).encode(), "application/json", **headers)


class Unauthorized(QuietHandler):
    """Answers 401 to everything, as a server behind HTTP authentication does."""

    server_version = "AuthGate/1.0"

    def do_GET(self) -> None:
        self.reply(
            401,
            b"<html><head><title>401 Unauthorized</title></head></html>",
            "text/html",
            WWW_Authenticate='Basic realm="test"',
        )


class BlueskyLike(QuietHandler):
    """bluesky-httpserver (FastAPI on uvicorn) as the probe sees it: GET / (404),
    /openapi.json (public), /api/status and /api/history/get (key-protected).

    Options (keyword arguments of serve(); ``server.options`` may be changed while it runs):
    ``api_key``: the API needs ``Authorization: ApiKey <api_key>`` (401 otherwise), None = open;
    ``manager``: "idle" (200 with ``status``, default RE_MANAGER_STATUS), "unreachable" (408,
    what the server answers when RE Manager does not reply over 0MQ) or "hang" (no answer until
    the test ends); ``status_raw``: bytes to send as the status body instead;
    ``status_code``: another status code; ``cut``: announce the body, send half, close;
    ``history``: the items of /api/history/get; ``options_file``: a JSON file read before
    each request, whose keys replace these (a test in another process changes the server).
    """

    server_version = "uvicorn"

    def do_GET(self) -> None:
        options = self.server.options
        if options.get("options_file"):
            with open(options["options_file"], encoding="utf-8") as file:
                options = {**options, **json.load(file)}
        if self.path == "/openapi.json":
            self.reply_json(200, OPENAPI)
            return
        if self.path not in ("/api/status", "/api/history/get"):
            # The server routes only /api/...: FastAPI's 404 for anything else, "/" included.
            self.reply_json(404, {"detail": "Not Found"})
            return
        key = options.get("api_key")
        if key is not None and self.headers.get("Authorization") != f"ApiKey {key}":
            self.reply_json(401, {"detail": "Not authenticated"}, WWW_Authenticate="Bearer")
            return
        if self.path == "/api/history/get":
            items = options.get("history", [])
            self.reply_json(200, {"success": True, "msg": "", "items": items})
            return
        manager = options.get("manager", "idle")
        if manager == "unreachable":
            detail = "Request timeout: ZMQ communication error: timeout occurred"
            self.reply_json(408, {"detail": detail})
            return
        if manager == "hang" and self.server.release.wait(HANG_SECONDS):
            return  # the test is over; the probe left long ago
        body = options.get("status_raw")
        if body is None:
            body = json.dumps(options.get("status", RE_MANAGER_STATUS)).encode()
        if options.get("cut"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.reply(options.get("status_code", 200), body, "application/json")


class Trickle(QuietHandler):
    """Starts a 200 answer, then sends one header byte every 0.1 s for ``seconds`` (option)."""

    def do_GET(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        self.wfile.flush()
        end = time.monotonic() + float(self.server.options.get("seconds", 2.0))
        while time.monotonic() < end and not self.server.release.wait(0.1):
            self.wfile.write(b"x")
            self.wfile.flush()
        self.close_connection = True


# --- TCP services that are not HTTP -----------------------------------------------------------


class SshBannerThenClose(socketserver.BaseRequestHandler):
    """An SSH server's greeting, then the connection closes at once."""

    def handle(self) -> None:
        self.request.sendall(SSH_BANNER)


class SshBanner(socketserver.BaseRequestHandler):
    """Like OpenSSH: greets, reads the client's first line, rejects it, closes."""

    def handle(self) -> None:
        self.request.sendall(SSH_BANNER)
        self.request.settimeout(5.0)
        try:
            self.request.recv(4096)
            self.request.sendall(b"Invalid SSH identification string.\r\n")
        except OSError:
            pass


class Garbage(socketserver.BaseRequestHandler):
    """Reads the request and answers bytes that are not HTTP."""

    def handle(self) -> None:
        self.request.settimeout(5.0)
        try:
            self.request.recv(4096)
            self.request.sendall(b"\x00\xff\x13garbage \x7f\x80 not a status line\r\n\r\n")
        except OSError:
            pass


class Silent(socketserver.BaseRequestHandler):
    """Accepts the connection and never says anything (until the test ends)."""

    server: LoopbackServer

    def handle(self) -> None:
        self.server.release.wait(HANG_SECONDS)


# --- as a child process -----------------------------------------------------------------------


@contextmanager
def bluesky_child(api_key: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A Bluesky-like server that wants `api_key`, in a child process (a real owner for the
    scanner to name): (its port, the process). It ends when its stdin is closed."""
    server = subprocess.Popen(
        [sys.executable, __file__, "bluesky_httpserver", "--api-key", api_key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline()), server
    finally:
        server.communicate(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["bluesky_httpserver"])
    parser.add_argument("--api-key")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--options-file", help="JSON read before each request (see BlueskyLike)")
    args = parser.parse_args(argv)
    options = {"options_file": args.options_file} if args.options_file else {}
    with serve(BlueskyLike, args.host, api_key=args.api_key, **options) as server:
        print(server.port, flush=True)
        sys.stdin.read()  # until the test closes our stdin


if __name__ == "__main__":
    main()
