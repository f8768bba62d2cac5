"""Keeps a flapping port from flooding the desktop with notifications.

At most one notification per port per window. Changes inside the window are folded into one
pending notification that carries the latest state and how many changes it stands for; it
goes out when the window ends. Clock: monotonic seconds passed in, so it is testable and immune
to wall-clock jumps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trayapp.core.events import LISTEN_KINDS, Event
from trayapp.core.model import Port

DEFAULT_WINDOW = 10.0
MAX_LINES = 6


@dataclass
class _PortSlot:
    last_sent: float
    pending: Event | None = None


class Throttle:
    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        self.window = window
        self._slots: dict[Port, _PortSlot] = {}

    def offer(self, event: Event, now: float) -> Event | None:
        """The event to show now, or None if it was folded into a pending one."""
        slot = self._slots.get(event.port)
        if slot is None or now - slot.last_sent >= self.window:
            self._slots[event.port] = _PortSlot(last_sent=now)
            return event
        pending = slot.pending
        count = event.count + (pending.count if pending else 0)
        detail = event.detail
        if pending is not None and pending.detail and detail and event.kind not in LISTEN_KINDS:
            # Service news is not superseded by later news (a plan aborted, then the queue
            # stopped): keep every line, the latest last.
            lines = [*pending.detail.splitlines(), *detail.splitlines()]
            detail = "\n".join(dict.fromkeys(lines[-MAX_LINES:]))
            return self._hold(slot, replace(event, detail=detail, count=1))
        return self._hold(slot, replace(event, count=count))

    @staticmethod
    def _hold(slot: _PortSlot, event: Event) -> None:
        slot.pending = event
        return None

    def due(self, now: float) -> list[Event]:
        """Pending notifications whose window has ended; each restarts its port's window."""
        ready: list[Event] = []
        for slot in self._slots.values():
            if slot.pending is not None and now - slot.last_sent >= self.window:
                ready.append(slot.pending)
                slot.pending = None
                slot.last_sent = now
        return ready

    def next_due(self, now: float) -> float | None:
        """Seconds until the next pending notification is due, or None if none waits."""
        waits = [
            max(0.0, slot.last_sent + self.window - now)
            for slot in self._slots.values()
            if slot.pending is not None
        ]
        return min(waits) if waits else None
