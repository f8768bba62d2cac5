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

import bisect
import csv
import io
import json
import math
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, Literal, NamedTuple, overload

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
_BY_SEVERITY: list[State] = sorted(_SEVERITY, key=_SEVERITY.__getitem__)


class Period(NamedTuple):
    """One stretch of one state (and owner). A tuple: the History window makes thousands of
    them from the columns below each time it shows a span, and tuples are made fastest."""

    port: Port
    start: float
    end: float | None  # None: going on now
    state: State
    began: str  # the kind of record that began it ("started", "watch-began", ...)
    reason: str | None = None  # a watch record's reason, a health record's code
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


class Tracker:
    """What the log says about one port so far, while reading it in order."""

    def __init__(self) -> None:
        self.watchers: set[str] = set()
        self.listening = False
        self.healthy = True
        self.owner: tuple[int | None, str | None, str | None] = (None, None, None)
        self.seen = False
        # The owner and health when watching last ended on a listening port. The health
        # checks remember the health per owner (service-state.json) and record only a change,
        # so a watch that begins on the same owner starts from it: a service still unhealthy
        # after a restart stays unhealthy here, not "up" until it changes.
        self.remembered: tuple[tuple[int | None, str | None, str | None], bool] | None = None

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
                self.remembered = (self.owner, self.healthy) if self.listening else None
                self.healthy = True
                self.listening = False
                self.owner = (None, None, None)
            return
        if kind == "watch-began":
            already = {w for w in self.watchers if w}  # another watcher is looking already
            self.watchers.add(event.watcher or "")
            listening = bool(event.listening)
            owner = _owner(event) if listening else (None, None, None)
            if already and listening and self.listening and owner == self.owner:
                return  # nothing new about the port: its health stands
            carried = self.remembered if not already else None
            self.listening, self.owner = listening, owner
            self.healthy = not (listening and carried is not None and carried == (owner, False))
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


class Strings:
    """Each distinct text once, by number: the columns below hold numbers. Only ever grows, so
    a copy of the columns made on one thread reads it safely while another adds to it."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.texts: list[str] = list(texts)
        self._index = {text: i for i, text in enumerate(self.texts)}

    def number(self, text: str | None) -> int:
        if text is None:
            return -1
        found = self._index.get(text)
        if found is None:
            found = self._index[text] = len(self.texts)
            self.texts.append(text)
        return found

    def text(self, number: int) -> str | None:
        return self.texts[number] if number >= 0 else None


_OPEN = math.inf  # the end of a period still going on, in the `ends` column
_MAX_PID = 2**63 - 1
COLUMN_TYPES = {  # name: array type code
    "starts": "d",
    "ends": "d",
    "reach": "d",  # the latest end so far: periods before the first reach >= t end before t
    "states": "b",
    "began": "i",
    "reasons": "i",
    "pids": "q",  # -1: none
    "names": "i",
    "users": "i",
}


# The columns that make a Period, in its fields' order.
_PERIOD_COLUMNS = ("starts", "ends", "states", "began", "reasons", "pids", "names", "users")


class PortPeriods(Sequence[Period]):
    """One port's periods as columns of numbers (arrays): a week of a flapping port is
    100,000 periods, which as objects take seconds to make and to copy; as columns a copy is a
    memcpy and only the periods a view shows become Period objects."""

    def __init__(self, port: Port, strings: Strings) -> None:
        self.port = port
        self.strings = strings
        self.columns: dict[str, array[Any]] = {
            name: array(code) for name, code in COLUMN_TYPES.items()
        }
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Period: ...
    @overload
    def __getitem__(self, index: slice) -> list[Period]: ...
    def __getitem__(self, index: int | slice) -> Period | list[Period]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.size)
            if step == 1:
                return self._rows(start, stop)
            return [self._rows(i, i + 1)[0] for i in range(start, stop, step)]
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(index)
        return self._rows(index, index + 1)[0]

    def __iter__(self) -> Iterator[Period]:
        return iter(self._rows(0, self.size))

    def since(self, when: float) -> list[Period]:
        """The periods that reach into the time from `when` on (all of them, for -inf)."""
        first = bisect.bisect_left(self.columns["reach"], when, 0, self.size)
        return self._rows(first, self.size, when)

    def _rows(self, first: int, stop: int, when: float = -math.inf) -> list[Period]:
        """Periods first..stop-1 as objects, those that end before `when` left out."""
        c = self.columns
        texts, port, make = self.strings.texts, self.port, tuple.__new__
        return [
            make(
                Period,
                (
                    port,
                    start,
                    None if end == _OPEN else end,
                    STATES[state],
                    texts[began] if began >= 0 else "",
                    texts[reason] if reason >= 0 else None,
                    None if pid < 0 else pid,
                    texts[name] if name >= 0 else None,
                    texts[user] if user >= 0 else None,
                ),
            )
            for start, end, state, began, reason, pid, name, user in zip(
                *(c[n][first:stop] for n in _PERIOD_COLUMNS), strict=True
            )
            if end >= when
        ]

    def first_start(self) -> float | None:
        return min(self.columns["starts"][: self.size]) if self.size else None

    def append(
        self,
        when: float,
        state: State,
        began: str,
        reason: str | None,
        owner: tuple[int | None, str | None, str | None],
    ) -> None:
        c, number = self.columns, self.strings.number
        pid, name, user = owner
        c["starts"].append(when)
        c["ends"].append(_OPEN)
        c["reach"].append(_OPEN)
        c["states"].append(STATES.index(state))
        c["began"].append(number(began))
        c["reasons"].append(number(reason))
        # A pid the column cannot hold is no process a log line could have seen: none.
        c["pids"].append(pid if pid is not None and 0 <= pid <= _MAX_PID else -1)
        c["names"].append(number(name))
        c["users"].append(number(user))
        self.size += 1

    def end_last(self, when: float) -> None:
        c = self.columns
        c["ends"][-1] = when
        c["reach"][-1] = max(when, c["reach"][-2]) if self.size > 1 else when

    def last_open(self) -> bool:
        return self.size > 0 and self.columns["ends"][self.size - 1] == _OPEN

    def last_state(self) -> State | None:
        return STATES[self.columns["states"][self.size - 1]] if self.size else None

    def view(self, count: int, end_last: float | None = None) -> PortPeriods:
        """A copy of the first `count` periods that the builder's next additions leave alone;
        with `end_last`, the last one ended then."""
        copy = PortPeriods(self.port, self.strings)
        copy.columns = {name: column[:count] for name, column in self.columns.items()}
        copy.size = count
        if end_last is not None and count:
            copy.end_last(end_last)
        return copy


class PeriodBuilder:
    """Builds periods from events given in log order, a batch at a time: a window that shows
    the history adds what was appended since, without reading the log again."""

    def __init__(self) -> None:
        self.strings = Strings()
        self.trackers: dict[Port, Tracker] = {}
        self.tables: dict[Port, PortPeriods] = {}

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            self._add(event)

    def _add(self, event: Event) -> None:
        tracker = self.trackers.get(event.port)
        if tracker is None:
            if event.kind != "watch-began" and event.kind not in LISTEN_KINDS:
                return  # says nothing about a state we never saw begin
            tracker = self.trackers[event.port] = Tracker()
            self.tables[event.port] = PortPeriods(event.port, self.strings)
        table = self.tables[event.port]
        before = (tracker.state(), tracker.owner) if tracker.seen else None
        tracker.apply(event)
        tracker.seen = True
        after = (tracker.state(), tracker.owner)
        if after == before:
            return
        if table.last_open():
            table.end_last(event.time)
        state, owner = after
        reason = event.code if event.kind not in LISTEN_KINDS else None
        table.append(event.time, state, event.kind, reason, owner)

    def views(self, dead: Mapping[str, float] | None = None) -> dict[Port, PortPeriods]:
        """The periods so far as copies, each port's ending with its last watched period
        (the open unwatched tail is no period: it has no end, and nothing watches it).

        `dead`: watchers known to have died unannounced, and when each was last alive
        (core/alive.py): a period still open that only they watched ended then."""
        result: dict[Port, PortPeriods] = {}
        for port, table in self.tables.items():
            count = table.size - (1 if table.last_state() == "unwatched" else 0)
            if not count:
                continue
            end_last = None
            watchers = self.trackers[port].watchers
            if (
                dead
                and watchers
                and count == table.size
                and table.last_open()
                and watchers <= dead.keys()
            ):
                start = table.columns["starts"][count - 1]
                end_last = max(start, max(dead[watcher] for watcher in watchers))
            result[port] = table.view(count, end_last)
        return result

    def periods(self, dead: Mapping[str, float] | None = None) -> dict[Port, list[Period]]:
        """`views`, each period an object (for the command line and exports)."""
        return {port: list(view) for port, view in self.views(dead).items()}


def periods(
    events: Iterable[Event], dead: Mapping[str, float] | None = None
) -> dict[Port, list[Period]]:
    """Periods in the order the events happened (the log's order, which survives a clock
    set back; durations are clamped at zero there). A new period begins when the state or the
    owner changes."""
    builder = PeriodBuilder()
    builder.add(events)
    return builder.periods(dead)


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


class Segment(NamedTuple):
    """A stretch of the strip: one state from start to end (clipped to the window)."""

    start: float
    end: float
    state: State
    period: Period | None  # None: no record covers it


def segments(spans: list[Period], since: float, now: float) -> list[Segment]:
    """The window [since, now] cut into states, gaps filled with "unwatched". Periods out of
    time order (a clock set back) are laid out in time order; overlaps keep the later record."""
    inside: list[tuple[float, float, Period]] = []
    for span in spans:
        start = span.start if span.start > since else since
        end = span.end if span.end is not None and span.end < now else now
        if end > start:
            inside.append((start, end, span))
    inside.sort(key=itemgetter(0))  # stable: of two that start together, the later record last
    result: list[Segment] = []
    add, make = result.append, tuple.__new__  # thousands of them: the fastest way to make one
    cursor = since
    for start, end, span in inside:
        if start < cursor:
            start = cursor
        if start >= end:
            continue
        if start > cursor:
            add(make(Segment, (cursor, start, "unwatched", None)))
        add(make(Segment, (start, end, span.state, span)))
        cursor = end
    if cursor < now:
        result.append(Segment(cursor, now, "unwatched", None))
    return result


def cells(spans: list[Period], since: float, now: float, width: int) -> list[State]:
    """The strip as `width` cells, oldest first; a cell shows the worst state within it, so a
    short outage stays visible however long the window."""
    return segment_cells(segments(spans, since, now), since, now, width)


def segment_cells(laid: list[Segment], since: float, now: float, width: int) -> list[State]:
    """`cells` of segments already laid out."""
    width = max(1, width)
    step = (now - since) / width if now > since else 0.0
    if step <= 0:
        return ["unwatched"] * width
    ranks = [0] * width  # _SEVERITY of each cell's worst state so far
    severity = _SEVERITY
    edge = 1e-6 * step  # a segment that ends exactly on a cell's edge does not reach into it
    for start, end, state, _period in laid:
        rank = severity[state]
        if not rank:
            continue  # "unwatched": what every cell is to begin with
        first = int((start - since) // step)
        last = int((max(start, end - edge) - since) // step)
        if last >= width:
            last = width - 1
        for index in range(first if first > 0 else 0, last + 1):
            if rank > ranks[index]:
                ranks[index] = rank
    by_rank = _BY_SEVERITY
    return [by_rank[rank] for rank in ranks]


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
    return sorted((span for spans in spans_by_port.values() for span in spans), key=_START)


_START = attrgetter("start")


def period_rows(ordered: list[Period], now: float) -> list[dict[str, object]]:
    return [
        {
            "port": span.port.number,
            "protocol": span.port.protocol,
            "state": span.state,
            "start": iso_time(span.start),
            "end": iso_time(span.end) if span.end is not None else None,
            "duration_s": round(span.duration(now), 3),
            "event": span.began,
            "reason": span.reason,
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
