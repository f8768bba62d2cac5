"""History as periods: from the events log to "up from 09:12 to 11:40 (2 h 28 min)", uptime
totals over the watched time, and the strip that pictures them.

Every moment of a port's history is one of four states: up, down, unhealthy (listening, but its
health check fails), or unwatched (nothing watched it: before the first record, between a
"watch-ended" and the next "watch-began", after the last "watch-ended"). Only watched time
counts towards percentages.

Old logs (before watch events were written) have only changes: their first change begins a
watched period, as far as anyone knows. A watcher that died unannounced wrote no "watch-ended":
its mark (core/alive.py) says until when it was alive, and its watch ends there.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from trayapp.core.events import LISTEN_KINDS, Event, iso_time
from trayapp.core.model import Port

HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY

State = Literal["up", "down", "unhealthy", "unwatched"]
STATES: tuple[State, ...] = ("up", "unhealthy", "down", "unwatched")
STATE_WORDS: dict[State, str] = {
    "up": "up",
    "down": "down",
    "unhealthy": "up but unhealthy",
    "unwatched": "not watched",
}
# The strip in a terminal: shapes, not colours, tell the states apart.
STRIP_CHARS: dict[State, str] = {"up": "█", "unhealthy": "▒", "down": "▁", "unwatched": "·"}
ASCII_STRIP_CHARS: dict[State, str] = {"up": "#", "unhealthy": "~", "down": "_", "unwatched": "."}
# Which state a strip cell shows when several share it: trouble must not hide in a cell.
_SEVERITY: dict[State, int] = {"down": 3, "unhealthy": 2, "up": 1, "unwatched": 0}


@dataclass(frozen=True)
class Period:
    port: Port
    start: float
    end: float | None  # None: going on now
    state: State
    event: Event  # the record that began it
    pid: int | None = None
    name: str | None = None
    username: str | None = None

    @property
    def up(self) -> bool:
        """Listening (healthy or not)."""
        return self.state in ("up", "unhealthy")

    def duration(self, now: float) -> float:
        return max(0.0, (self.end if self.end is not None else now) - self.start)


@dataclass(frozen=True)
class Totals:
    up: float
    down: float
    unhealthy: float = 0.0
    unwatched: float = 0.0

    @property
    def known(self) -> float:
        """Watched time."""
        return self.up + self.down + self.unhealthy

    @property
    def uptime_ratio(self) -> float | None:
        """Share of the watched time the port was up and healthy."""
        return self.up / self.known if self.known else None


class _PortState:
    """What the log says about one port so far, while reading it in order."""

    def __init__(self) -> None:
        self.watchers: set[str] = set()
        self.listening = False
        self.healthy = True
        self.owner: tuple[int | None, str | None, str | None] = (None, None, None)
        self.seen = False

    def state(self) -> State:
        if not self.watchers:
            return "unwatched"
        if not self.listening:
            return "down"
        return "up" if self.healthy else "unhealthy"

    def apply(self, event: Event) -> None:
        kind = event.kind
        if kind in ("watch-began", "watch-ended"):
            self.watchers.discard("")  # watch records from here on: no more guessing
        if kind == "watch-ended":
            self.watchers.discard(event.watcher or "")
            if not self.watchers:
                # Nobody looks: no state, no owner; the next watch finds out afresh.
                self.healthy = True
                self.listening = False
                self.owner = (None, None, None)
            return
        if kind == "watch-began":
            self.watchers.add(event.watcher or "")
            self.listening = bool(event.listening)
            self.healthy = True
            self.owner = _owner(event) if self.listening else (None, None, None)
            return
        if kind in LISTEN_KINDS and not self.watchers:
            # A change that nobody was recorded to watch: a log from before watch events.
            self.watchers.add("")
        if kind in ("started", "owner-changed"):
            if kind == "started" or not self.listening:
                self.healthy = True
            self.listening = True
            self.owner = _owner(event)
        elif kind == "stopped":
            self.listening = False
            self.healthy = True
            self.owner = (None, None, None)
        elif kind == "unhealthy" and self.watchers:
            self.healthy = False
        elif kind == "healthy":
            self.healthy = True


def _owner(event: Event) -> tuple[int | None, str | None, str | None]:
    return (event.pid, event.name, event.username)


class PeriodBuilder:
    """Builds periods from events given in log order, a batch at a time: a window that shows
    the history adds what was appended since, without reading the log again."""

    def __init__(self) -> None:
        self._trackers: dict[Port, _PortState] = {}
        self._spans: dict[Port, list[Period]] = {}

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            self._add(event)

    def _add(self, event: Event) -> None:
        tracker = self._trackers.get(event.port)
        if tracker is None:
            if event.kind != "watch-began" and event.kind not in LISTEN_KINDS:
                return  # says nothing about a state we never saw begin
            tracker = self._trackers[event.port] = _PortState()
        spans = self._spans.setdefault(event.port, [])
        before = (tracker.state(), tracker.owner) if tracker.seen else None
        tracker.apply(event)
        tracker.seen = True
        after = (tracker.state(), tracker.owner)
        if after == before:
            return
        if spans and spans[-1].end is None:
            spans[-1] = _ended(spans[-1], event.time)
        state, (pid, name, user) = after
        spans.append(Period(event.port, event.time, None, state, event, pid, name, user))

    def periods(self, dead: Mapping[str, float] | None = None) -> dict[Port, list[Period]]:
        """A copy of the periods so far, each port's list ending with its last watched period
        (the open unwatched tail is no period: it has no end, and nothing watches it).

        `dead`: watchers known to have died unannounced, and when each was last alive
        (core/alive.py): a period still open that only they watched ended then."""
        result: dict[Port, list[Period]] = {}
        for port, spans in self._spans.items():
            copy = spans[:-1] if spans and spans[-1].state == "unwatched" else list(spans)
            watchers = self._trackers[port].watchers
            if dead and copy and copy[-1].end is None and watchers and watchers <= dead.keys():
                last_alive = max(dead[watcher] for watcher in watchers)
                copy[-1] = _ended(copy[-1], max(copy[-1].start, last_alive))
            if copy:
                result[port] = copy
        return result


def periods(
    events: Iterable[Event], dead: Mapping[str, float] | None = None
) -> dict[Port, list[Period]]:
    """Periods in the order the events happened (the log's order, which survives a clock
    set back; durations are clamped at zero there). A new period begins when the state or the
    owner changes."""
    builder = PeriodBuilder()
    builder.add(events)
    return builder.periods(dead)


def _ended(span: Period, when: float) -> Period:
    return Period(
        span.port, span.start, when, span.state, span.event, span.pid, span.name, span.username
    )


def unwatched_since(spans: list[Period]) -> float | None:
    """When watching ended for good, if the last period has ended."""
    if spans and spans[-1].end is not None:
        return spans[-1].end
    return None


def totals(spans: Iterable[Period], since: float, now: float) -> Totals:
    """Seconds in each state within [since, now]; what no period covers is unwatched."""
    seconds: dict[State, float] = dict.fromkeys(STATES, 0.0)
    for span in spans:
        start = max(span.start, since)
        end = min(span.end if span.end is not None else now, now)
        if end > start:
            seconds[span.state] += end - start
    watched = seconds["up"] + seconds["down"] + seconds["unhealthy"]
    unwatched = max(0.0, (now - since) - watched) if now > since else 0.0
    return Totals(seconds["up"], seconds["down"], seconds["unhealthy"], unwatched)


@dataclass(frozen=True)
class Segment:
    """A stretch of the strip: one state from start to end (clipped to the window)."""

    start: float
    end: float
    state: State
    period: Period | None  # None: no record covers it


def segments(spans: list[Period], since: float, now: float) -> list[Segment]:
    """The window [since, now] cut into states, gaps filled with "unwatched". Periods out of
    time order (a clock set back) are laid out in time order; overlaps keep the later record."""
    inside: list[Segment] = []
    for span in spans:
        start = max(span.start, since)
        end = min(span.end if span.end is not None else now, now)
        if end > start:
            inside.append(Segment(start, end, span.state, span))
    inside.sort(key=lambda s: s.start)
    result: list[Segment] = []
    cursor = since
    for segment in inside:
        start = max(segment.start, cursor)
        if start >= segment.end:
            continue
        if start > cursor:
            result.append(Segment(cursor, start, "unwatched", None))
        result.append(Segment(start, segment.end, segment.state, segment.period))
        cursor = segment.end
    if cursor < now:
        result.append(Segment(cursor, now, "unwatched", None))
    return result


def cells(spans: list[Period], since: float, now: float, width: int) -> list[State]:
    """The strip as `width` cells, oldest first; a cell shows the worst state within it, so a
    short outage stays visible however long the window."""
    width = max(1, width)
    step = (now - since) / width if now > since else 0.0
    result: list[State] = ["unwatched"] * width
    for segment in segments(spans, since, now):
        if step <= 0:
            break
        first = int((segment.start - since) // step)
        # A segment that ends exactly on a cell's edge does not reach into that cell.
        last = min(width - 1, int((max(segment.start, segment.end - 1e-6 * step) - since) // step))
        for index in range(max(0, first), last + 1):
            if _SEVERITY[segment.state] > _SEVERITY[result[index]]:
                result[index] = segment.state
    return result


def strip_text(states: list[State], ascii_only: bool = False) -> str:
    chars = ASCII_STRIP_CHARS if ascii_only else STRIP_CHARS
    return "".join(chars[state] for state in states)


def duration_text(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def totals_text(totals: Totals) -> str:
    """'up 2 h 0 min, unhealthy 5 min 0 s, down 0 s, not watched 3 h 1 min; up 96.0 % of the
    watched time'."""
    parts = [f"up {duration_text(totals.up)}"]
    if totals.unhealthy:
        parts.append(f"unhealthy {duration_text(totals.unhealthy)}")
    parts.append(f"down {duration_text(totals.down)}")
    parts.append(f"not watched {duration_text(totals.unwatched)}")
    ratio = totals.uptime_ratio
    share = f"; up {ratio:.1%} of the watched time" if ratio is not None else "; never watched"
    return ", ".join(parts) + share


def rows(spans_by_port: dict[Port, list[Period]], now: float) -> list[dict[str, object]]:
    """One object per period for export, oldest first."""
    return period_rows(ordered(spans_by_port), now)


def ordered(spans_by_port: dict[Port, list[Period]]) -> list[Period]:
    """Every port's periods in one list, oldest first."""
    return sorted((span for spans in spans_by_port.values() for span in spans), key=_start)


def _start(span: Period) -> float:
    return span.start


def period_rows(ordered: list[Period], now: float) -> list[dict[str, object]]:
    return [
        {
            "port": span.port.number,
            "protocol": span.port.protocol,
            "state": span.state,
            "start": iso_time(span.start),
            "end": iso_time(span.end) if span.end is not None else None,
            "duration_s": round(span.duration(now), 3),
            "event": span.event.kind,
            "reason": span.event.code if span.event.kind not in LISTEN_KINDS else None,
            "pid": span.pid,
            "name": span.name,
            "user": span.username,
            "host": span.port.host,  # another machine's entry; "" for this machine's ports
        }
        for span in ordered
    ]


CSV_FIELDS = (
    "port",
    "protocol",
    "state",
    "start",
    "end",
    "duration_s",
    "event",
    "reason",
    "pid",
    "name",
    "user",
    "host",
)


def to_csv(table: list[dict[str, object]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_FIELDS})
    return buffer.getvalue()


def to_json(table: list[dict[str, object]]) -> str:
    return json.dumps(table, indent=2)
