"""The Bluesky Queue Server as its users see it: RE Manager status in words, and the changes
worth a notification (a paused run, a plan that did not complete, a queue that stopped with
items left, a worker environment that failed or closed).

Pure data in, data out: the probe fetches `GET /api/status` and `GET /api/history/get`, this
module reads them. Every field is checked for its type, since the answer comes from the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

# Bluesky HTTP Server identifies itself here, without credentials (FastAPI's schema).
OPENAPI_TITLE = "Bluesky HTTP Server"
RUNNING_STATES = ("executing_queue", "starting_queue", "paused")
CLOSING_STATES = ("closing_environment", "destroying_environment")

NoticeKind = Literal[
    "paused", "plan-failed", "queue-stopped", "environment-failed", "environment-closed"
]


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value.isprintable() and len(value) <= 200 else None


def _count(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _flag(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    return value if isinstance(value, bool) else None


@dataclass(frozen=True)
class QueueStatus:
    """The fields of `/api/status` that say how the queue is doing. None: absent or of a
    type the RE Manager never sends."""

    manager_state: str | None = None
    re_state: str | None = None
    worker_environment_exists: bool | None = None
    worker_environment_state: str | None = None
    items_in_queue: int | None = None
    items_in_history: int | None = None
    running_item_uid: str | None = None
    queue_stop_pending: bool | None = None
    pause_pending: bool | None = None
    queue_autostart_enabled: bool | None = None
    plan_history_uid: str | None = None

    @classmethod
    def from_json(cls, data: object) -> QueueStatus | None:
        """None when `data` is not a status at all (no manager_state)."""
        if not isinstance(data, dict):
            return None
        status = cls(
            manager_state=_text(data, "manager_state"),
            re_state=_text(data, "re_state"),
            worker_environment_exists=_flag(data, "worker_environment_exists"),
            worker_environment_state=_text(data, "worker_environment_state"),
            items_in_queue=_count(data, "items_in_queue"),
            items_in_history=_count(data, "items_in_history"),
            running_item_uid=_text(data, "running_item_uid"),
            queue_stop_pending=_flag(data, "queue_stop_pending"),
            pause_pending=_flag(data, "pause_pending"),
            queue_autostart_enabled=_flag(data, "queue_autostart_enabled"),
            plan_history_uid=_text(data, "plan_history_uid"),
        )
        return status if status.manager_state is not None else None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def environment_failed(self) -> bool:
        return self.worker_environment_state == "failed"

    @property
    def running(self) -> bool:
        return self.manager_state in RUNNING_STATES

    def line(self) -> str:
        """A few words for a menu line: 'executing queue, 3 queued', 'idle, environment
        closed', 'paused', 'environment failed'."""
        if self.environment_failed:
            return "environment failed"
        state = (self.manager_state or "unknown state").replace("_", " ")
        if self.manager_state == "paused":
            return "paused" + (", stop pending" if self.queue_stop_pending else "")
        parts = [state]
        if self.manager_state == "idle" and self.worker_environment_exists is False:
            parts.append("environment closed")
        if self.items_in_queue:
            parts.append(f"{self.items_in_queue} queued")
        if self.manager_state == "executing_queue" and self.queue_stop_pending:
            parts.append("stop pending")
        return ", ".join(parts)

    def summary(self) -> str:
        """One sentence for tooltips, windows and the command line."""
        env = self.worker_environment_state or (
            "open" if self.worker_environment_exists else "closed"
        )
        queued = "?" if self.items_in_queue is None else str(self.items_in_queue)
        history = "?" if self.items_in_history is None else str(self.items_in_history)
        return (
            f"RE Manager {(self.manager_state or 'unknown').replace('_', ' ')}, {queued} queued, "
            f"{history} in history, worker environment {env}"
        )


@dataclass(frozen=True)
class HistoryItem:
    """One finished plan from `/api/history/get`."""

    uid: str
    name: str
    exit_status: str
    msg: str = ""
    time_stop: float | None = None

    @property
    def completed(self) -> bool:
        return self.exit_status == "completed"


MAX_MESSAGE = 200


def parse_history(data: object) -> list[HistoryItem] | None:
    """The items of a history answer, oldest first; None when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        return None
    items = []
    for raw in data["items"]:
        if not isinstance(raw, dict):
            continue
        uid = _text(raw, "item_uid")
        if uid is None:
            continue
        result = raw.get("result") if isinstance(raw.get("result"), dict) else {}
        assert isinstance(result, dict)
        msg = result.get("msg")
        stop = result.get("time_stop")
        items.append(
            HistoryItem(
                uid=uid,
                name=_text(raw, "name") or "a plan",
                exit_status=_text(result, "exit_status") or "unknown",
                msg=" ".join(msg.split())[:MAX_MESSAGE] if isinstance(msg, str) else "",
                time_stop=float(stop)
                if isinstance(stop, int | float) and not isinstance(stop, bool)
                else None,
            )
        )
    return items


def items_after(
    items: Sequence[HistoryItem], last_uid: str | None, last_time: float | None
) -> list[HistoryItem]:
    """The items added since the one last seen. When that one is gone (history cleared),
    the items that finished after it did; with nothing seen before, none (no flood of old
    news the first time a server is watched)."""
    if last_uid is None and last_time is None:
        return []
    for index, item in enumerate(items):
        if item.uid == last_uid:
            return list(items[index + 1 :])
    if last_time is None:
        return []
    return [item for item in items if item.time_stop is not None and item.time_stop > last_time]


@dataclass(frozen=True)
class Notice:
    """A change in the queue worth telling the user about."""

    kind: NoticeKind
    text: str


def plan_notice(item: HistoryItem) -> Notice:
    text = f"plan '{item.name}' {item.exit_status}"
    if item.msg:
        text += f": {item.msg}"
    return Notice("plan-failed", text)


def status_notices(previous: QueueStatus | None, now: QueueStatus) -> list[Notice]:
    """What changed between two looks at the queue. The first look says nothing: only
    changes are news."""
    if previous is None:
        return []
    notices: list[Notice] = []
    if now.manager_state == "paused" and previous.manager_state != "paused":
        notices.append(Notice("paused", "the run is paused"))
    stopped = previous.running and now.manager_state == "idle"
    if stopped and now.items_in_queue:
        left = now.items_in_queue
        notices.append(
            Notice("queue-stopped", f"the queue stopped with {left} item{'s' * (left != 1)} left")
        )
    if now.environment_failed and not previous.environment_failed:
        notices.append(Notice("environment-failed", "the worker environment failed"))
    elif (
        previous.worker_environment_exists
        and now.worker_environment_exists is False
        and previous.manager_state not in CLOSING_STATES
    ):
        during = " while a plan was running" if previous.running else ""
        notices.append(Notice("environment-closed", f"the worker environment closed{during}"))
    return notices
