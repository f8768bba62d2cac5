"""Notification throttling: at most one per port per window, the latest state, a count."""

from __future__ import annotations

from trayapp.core.events import Event
from trayapp.core.model import Port
from trayapp.core.throttle import Throttle

A, B = Port(1000), Port(2000)


def ev(kind: str, port: Port = A, pid: int = 1) -> Event:
    return Event(time=0.0, port=port, kind=kind, pid=pid)  # type: ignore[arg-type]


def test_first_event_goes_out_at_once() -> None:
    throttle = Throttle(10)
    assert throttle.offer(ev("started"), 0.0) == ev("started")
    assert throttle.next_due(0.0) is None


def test_flapping_is_folded_into_one_with_the_latest_state_and_count() -> None:
    throttle = Throttle(10)
    throttle.offer(ev("started"), 0.0)
    assert throttle.offer(ev("stopped"), 1.0) is None
    assert throttle.offer(ev("started", pid=2), 2.0) is None
    assert throttle.offer(ev("stopped", pid=2), 3.0) is None
    assert throttle.due(9.9) == []
    assert throttle.next_due(9.0) == 1.0
    [summary] = throttle.due(10.0)
    assert summary.kind == "stopped" and summary.pid == 2 and summary.count == 3
    # The summary restarted the window: the next change waits again.
    assert throttle.offer(ev("started"), 15.0) is None
    assert throttle.due(20.0)[0].count == 1


def test_ports_are_throttled_separately() -> None:
    throttle = Throttle(10)
    assert throttle.offer(ev("started", A), 0.0) is not None
    assert throttle.offer(ev("started", B), 0.5) is not None
    assert throttle.offer(ev("stopped", A), 1.0) is None


def test_quiet_port_notifies_again_after_the_window() -> None:
    throttle = Throttle(10)
    throttle.offer(ev("started"), 0.0)
    assert throttle.offer(ev("stopped"), 10.0) is not None


def test_at_most_one_per_window_over_a_long_flap() -> None:
    throttle = Throttle(10)
    shown = 0
    t = 0.0
    while t < 100:
        shown += throttle.offer(ev("started" if int(t * 20) % 2 else "stopped"), t) is not None
        shown += len(throttle.due(t))
        t += 0.05
    assert 9 <= shown <= 11
