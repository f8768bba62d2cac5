"""Change events: what the watcher reports and the history log stores."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from trayapp.core.model import PROTOCOLS, Port, is_port_number

# started/stopped/owner-changed: what listens; healthy/unhealthy: what a health check found;
# service: news from the service itself (a Bluesky run paused, a plan aborted, ...).
EventKind = Literal["started", "stopped", "owner-changed", "healthy", "unhealthy", "service"]
EVENT_KINDS: tuple[EventKind, ...] = (
    "started",
    "stopped",
    "owner-changed",
    "healthy",
    "unhealthy",
    "service",
)
LISTEN_KINDS: tuple[EventKind, ...] = ("started", "stopped", "owner-changed")
NEWS_KINDS: tuple[EventKind, ...] = ("healthy", "unhealthy", "service")
# When something began or stopped watching a port, so that history can tell "down" from "not
# watched". Written to the log only; they are no change to notify about or count. `code` says
# why (WATCH_BEGAN_REASONS / WATCH_ENDED_REASONS), `watcher` who ("tray", "watch-<pid>"), and a
# "watch-began" says what was seen at that moment (`listening` and the owner fields).
WatchKind = Literal["watch-began", "watch-ended"]
WATCH_KINDS: tuple[WatchKind, ...] = ("watch-began", "watch-ended")
WATCH_BEGAN_REASONS = ("start", "added", "resumed", "woke")
# "lost": the watcher died unannounced (killed, crashed, power lost); written by the next
# watcher to start, at the time the dead one was last known alive (core/alive.py).
WATCH_ENDED_REASONS = ("quit", "paused", "removed", "suspended", "lost")
MAX_DETAIL = 300


@dataclass(frozen=True)
class Event:
    time: float  # seconds since the epoch
    port: Port
    kind: EventKind | WatchKind
    pid: int | None = None
    name: str | None = None
    username: str | None = None
    addresses: tuple[str, ...] = ()
    # How many raw changes this event stands for (the notifier folds flapping into one).
    count: int = 1
    # Health and service events: the health code ("manager-unreachable") or notice kind
    # ("plan-failed"), and the words for it.
    code: str | None = None
    detail: str | None = None
    # Watch events: what was seen when watching began, and who watches.
    listening: bool | None = None
    watcher: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "time": iso_time(self.time),
            "port": self.port.number,
            "protocol": self.port.protocol,
            **({"host": self.port.host} if self.port.host else {}),
            "event": self.kind,
            "pid": self.pid,
            "name": self.name,
            "user": self.username,
            "addresses": list(self.addresses),
            # News, and listen events of another machine's entry (why it is down).
            **(
                {"code": self.code, "detail": self.detail}
                if self.kind in NEWS_KINDS
                or (self.kind in LISTEN_KINDS and self.detail is not None)
                else {}
            ),
            **(
                {"reason": self.code, "watcher": self.watcher, "listening": self.listening}
                if self.kind in WATCH_KINDS
                else {}
            ),
        }

    @classmethod
    def from_json(cls, obj: object) -> Event:
        """Build an event from a decoded log line; ValueError for anything malformed."""
        if not isinstance(obj, dict):
            raise ValueError("not an object")
        port, protocol, kind = obj.get("port"), obj.get("protocol", "tcp"), obj.get("event")
        if not is_port_number(port):
            raise ValueError("bad port")
        if protocol not in PROTOCOLS:
            raise ValueError("bad protocol")
        if kind not in EVENT_KINDS and kind not in WATCH_KINDS:
            raise ValueError("bad event")
        when = parse_iso_time(obj.get("time"))
        pid = obj.get("pid")
        name = obj.get("name")
        user = obj.get("user")
        addresses = obj.get("addresses") or []
        code, detail = obj.get("code", obj.get("reason")), obj.get("detail")
        listening, watcher = obj.get("listening"), obj.get("watcher")
        host = obj.get("host", "")
        if not isinstance(host, str) or len(host) > MAX_DETAIL or not host.isprintable():
            raise ValueError("bad host")
        return cls(
            time=when,
            port=Port(port, protocol, host),
            kind=kind,
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            name=name if isinstance(name, str) else None,
            username=user if isinstance(user, str) else None,
            addresses=tuple(a for a in addresses if isinstance(a, str))
            if isinstance(addresses, list)
            else (),
            code=code[:MAX_DETAIL] if isinstance(code, str) else None,
            detail=detail[:MAX_DETAIL] if isinstance(detail, str) else None,
            listening=listening if isinstance(listening, bool) else None,
            watcher=watcher[:MAX_DETAIL] if isinstance(watcher, str) else None,
        )


def iso_time(seconds: float) -> str:
    """Local time with its UTC offset, so logs stay unambiguous across DST and travel."""
    return dt.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="milliseconds")


def parse_iso_time(value: object) -> float:
    """Seconds since the epoch; ValueError for anything that isn't a time we can also show
    (year 9999 parses, but cannot be turned back into a local time)."""
    if not isinstance(value, str):
        raise ValueError("time is not a string")
    try:
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()
        seconds = parsed.timestamp()
    except (OverflowError, OSError) as exc:
        raise ValueError(f"time out of range: {exc}") from None
    # Within two days of year 1 or 9999 some time zone cannot show it: one comparison here
    # instead of formatting every time of a long log once more.
    if not _SHOWABLE[0] < seconds < _SHOWABLE[1]:
        raise ValueError("time out of range")
    return seconds


_SHOWABLE = (
    dt.datetime(1, 1, 3, tzinfo=dt.timezone.utc).timestamp(),
    dt.datetime(9999, 12, 29, tzinfo=dt.timezone.utc).timestamp(),
)
