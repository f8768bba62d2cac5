"""History as periods: from the events log to "up from 09:12 to 11:40 (2 h 28 min)" and
uptime/downtime totals.

Only what was seen counts: time before a port's first logged event is unknown, not down.
The log records changes, so a period runs until the next change of that port (or now).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass

from trayapp.core.events import LISTEN_KINDS, Event, iso_time
from trayapp.core.model import Port

DAY = 86400.0
WEEK = 7 * DAY


@dataclass(frozen=True)
class Period:
    port: Port
    start: float
    end: float | None  # None: still going
    up: bool
    event: Event  # the change that began it

    def duration(self, now: float) -> float:
        return max(0.0, (self.end if self.end is not None else now) - self.start)


@dataclass(frozen=True)
class Totals:
    up: float
    down: float

    @property
    def known(self) -> float:
        return self.up + self.down

    @property
    def uptime_ratio(self) -> float | None:
        return self.up / self.known if self.known else None


def periods(events: Iterable[Event]) -> dict[Port, list[Period]]:
    """Periods in the order the events happened (the log's order, which survives a clock
    set back; durations are clamped at zero there)."""
    by_port: dict[Port, list[Event]] = {}
    for event in events:
        if event.kind not in LISTEN_KINDS:
            continue  # health and service news do not start or end a listening period
        by_port.setdefault(event.port, []).append(event)
    result: dict[Port, list[Period]] = {}
    for port, port_events in by_port.items():
        spans = []
        for index, event in enumerate(port_events):
            following = port_events[index + 1] if index + 1 < len(port_events) else None
            spans.append(
                Period(
                    port=port,
                    start=event.time,
                    end=following.time if following else None,
                    up=event.kind != "stopped",
                    event=event,
                )
            )
        result[port] = spans
    return result


def totals(spans: Iterable[Period], since: float, now: float) -> Totals:
    """Up and down seconds within [since, now]."""
    up = down = 0.0
    for span in spans:
        start = max(span.start, since)
        end = min(span.end if span.end is not None else now, now)
        if end <= start:
            continue
        if span.up:
            up += end - start
        else:
            down += end - start
    return Totals(up, down)


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


def rows(spans_by_port: dict[Port, list[Period]], now: float) -> list[dict[str, object]]:
    """Flat rows for export, oldest first."""
    ordered = sorted(
        (span for spans in spans_by_port.values() for span in spans), key=lambda s: s.start
    )
    return [
        {
            "port": span.port.number,
            "protocol": span.port.protocol,
            "event": span.event.kind,
            "state": "up" if span.up else "down",
            "start": iso_time(span.start),
            "end": iso_time(span.end) if span.end is not None else None,
            "duration_s": round(span.duration(now), 3),
            "pid": span.event.pid,
            "name": span.event.name,
            "user": span.event.username,
            "host": span.port.host,  # another machine's entry; "" for this machine's ports
        }
        for span in ordered
    ]


CSV_FIELDS = (
    "port",
    "protocol",
    "event",
    "state",
    "start",
    "end",
    "duration_s",
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
