"""Live health: the Bluesky queue in words and news, API keys by the Bluesky convention, one
check and its memory, and the schedule that runs checks off the caller's thread.

Servers are real (tests/probe_servers.py on loopback); the imitation of bluesky-httpserver
stands in for what the real one cannot be made to do (hang, trickle, send garbage, 5xx). The
real stack's normal behaviour is in tests/test_bluesky_real.py and the desktop test.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import probe_servers as servers
from trayapp.core import probe as probe_module
from trayapp.core.apikey import ENV_KEY, ENV_KEYFILE, KeyChoice, choose_key
from trayapp.core.bluesky import (
    HistoryItem,
    QueueStatus,
    items_after,
    parse_history,
    status_notices,
)
from trayapp.core.events import Event
from trayapp.core.health_monitor import HealthMonitor, outcome_events
from trayapp.core.history import EventLog
from trayapp.core.model import Listener, Port, PortState
from trayapp.core.service_check import CheckOutcome, ServiceMemory, ServiceStore, run_check
from trayapp.core.status import health_notification, overall_state, port_status
from trayapp.core.throttle import Throttle
from trayapp.core.writeback import HistoryWriter

REPO = Path(__file__).resolve().parents[1]
KEY = "s3cret-key"


def status(**changes: Any) -> dict[str, Any]:
    return {**servers.RE_MANAGER_STATUS, **changes}


def queue(**changes: Any) -> QueueStatus:
    result = QueueStatus.from_json(status(**changes))
    assert result is not None
    return result


def listening(port: int, host: str = "127.0.0.1") -> PortState:
    return PortState(Port(port), (Listener(port, "tcp", host, "ipv4", uid=0),))


# --- the queue in words ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"manager_state": "executing_queue", "items_in_queue": 3}, "executing queue, 3 queued"),
        (
            {"manager_state": "idle", "items_in_queue": 0, "worker_environment_exists": False},
            "idle, environment closed",
        ),
        ({"manager_state": "paused"}, "paused"),
        ({"manager_state": "paused", "queue_stop_pending": True}, "paused, stop pending"),
        ({"worker_environment_state": "failed"}, "environment failed"),
        ({"manager_state": "creating_environment", "items_in_queue": 0}, "creating environment"),
    ],
)
def test_the_menu_says_the_queue_in_a_few_words(changes: dict[str, Any], line: str) -> None:
    assert queue(**changes).line() == line


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "idle",
        {"items_in_queue": 2},
        {"manager_state": 7},
        {"manager_state": "x" * 500},
        {"manager_state": "idle\nline"},
    ],
)
def test_what_is_not_a_status_is_none(data: object) -> None:
    assert QueueStatus.from_json(data) is None


def test_fields_of_the_wrong_type_are_left_out() -> None:
    odd = QueueStatus.from_json(
        {
            "manager_state": "idle",
            "items_in_queue": "3",
            "items_in_history": -1,
            "worker_environment_exists": "yes",
            "running_item_uid": 5,
            "pause_pending": 1,
        }
    )
    assert odd == QueueStatus(manager_state="idle")
    assert odd.summary() == ("RE Manager idle, ? queued, ? in history, worker environment closed")


def test_news_between_two_looks() -> None:
    idle = queue(manager_state="idle", items_in_queue=0)
    running = queue(manager_state="executing_queue", items_in_queue=2)
    assert status_notices(None, running) == []  # the first look is no news
    assert status_notices(idle, running) == []
    [paused] = status_notices(running, queue(manager_state="paused"))
    assert (paused.kind, paused.text) == ("paused", "the run is paused")
    [stopped] = status_notices(running, queue(manager_state="idle", items_in_queue=1))
    assert stopped.text == "the queue stopped with 1 item left"
    assert status_notices(running, queue(manager_state="idle", items_in_queue=0)) == []
    [failed] = status_notices(idle, queue(worker_environment_state="failed"))
    assert failed.kind == "environment-failed"
    closed = queue(
        manager_state="idle",
        items_in_queue=2,
        worker_environment_exists=False,
        worker_environment_state="closed",
    )
    kinds = [n.kind for n in status_notices(running, closed)]
    assert kinds == ["queue-stopped", "environment-closed"]
    assert "while a plan was running" in status_notices(running, closed)[1].text
    closing = queue(manager_state="closing_environment")
    assert status_notices(closing, closed) == []  # asked for: not news


def item(uid: str, status: str = "completed", stop: float | None = 1.0) -> HistoryItem:
    return HistoryItem(uid, "count", status, "", stop)


def test_new_history_items() -> None:
    items = [item("a", stop=1), item("b", stop=2), item("c", stop=3)]
    assert items_after(items, None, None) == []  # nothing seen before: no old news
    assert items_after(items, "a", 1) == items[1:]
    assert items_after(items, "c", 3) == []
    # The item last seen is gone (history cleared, then new runs): what finished later.
    assert items_after(items, "zzz", 1.5) == items[1:]
    assert items_after([], None, 0.0) == []


def test_history_answers_that_are_not_history() -> None:
    assert parse_history({"items": "no"}) is None
    assert parse_history([]) is None
    parsed = parse_history(
        {
            "items": [
                {
                    "item_uid": "u1",
                    "name": "count",
                    "result": {"exit_status": "failed", "msg": "x\ny"},
                },
                {"name": "no uid"},
                "text",
                {"item_uid": "u2", "result": "not a dict"},
                {"item_uid": "u3", "name": 5, "result": {"time_stop": True}},
            ]
        }
    )
    assert parsed == [
        HistoryItem("u1", "count", "failed", "x y", None),
        HistoryItem("u2", "a plan", "unknown", "", None),
        HistoryItem("u3", "a plan", "unknown", "", None),
    ]


# --- API keys: Settings, then the Bluesky environment variables -------------------------------


def test_key_order_settings_environment_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY}-file\n")
    env = {ENV_KEY: f"{KEY}-env", ENV_KEYFILE: str(key_file)}
    assert choose_key("typed", env).key == "typed"
    assert choose_key("typed", env).origin == "Settings"
    assert (choose_key(None, env).key, choose_key(None, env).origin) == (f"{KEY}-env", ENV_KEY)
    from_file = choose_key(None, {ENV_KEYFILE: str(key_file)})
    assert from_file.key == f"{KEY}-file"  # the trailing newline of `echo KEY > file` goes
    assert from_file.origin == f"{ENV_KEYFILE} ({key_file})"
    assert choose_key(None, {}) == KeyChoice()
    assert KEY not in repr(choose_key(None, env))


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "does not hold text"),
        (b"one two", "other characters"),
        (b"k" * 5000, "larger than 4096 bytes"),
    ],
)
def test_bad_key_files_say_why(tmp_path: Path, content: bytes | None, why: str) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_bytes(content)
    choice = choose_key(None, {ENV_KEYFILE: str(path)})
    assert choice.key is None
    assert choice.problem is not None and why in choice.problem
    assert str(path) in choice.problem


def test_a_folder_or_a_path_through_a_file_is_no_key_file(tmp_path: Path) -> None:
    assert "is a folder" in str(choose_key(None, {ENV_KEYFILE: str(tmp_path)}).problem)
    (tmp_path / "file").write_text("x")
    through = choose_key(None, {ENV_KEYFILE: str(tmp_path / "file" / "key")}).problem
    assert through is not None and "cannot be read" in through


@pytest.mark.posix("file modes and setuid are POSIX")
def test_an_unreadable_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY)
    path.chmod(0)
    tmp_path.chmod(0o755)
    code = (
        "import json, os, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from trayapp.core.apikey import choose_key\n"
        # Imported first, then the privileges dropped: root reads any file, nobody does not.
        "if os.geteuid() == 0:\n    os.setgid(65534); os.setuid(65534)\n"
        f"print(json.dumps(choose_key(None, {{'{ENV_KEYFILE}': {str(path)!r}}}).problem))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == f"the key file {path} cannot be read (permission denied)"


def test_a_bad_environment_key_is_said_not_sent() -> None:
    choice = choose_key(None, {ENV_KEY: "has space"})
    assert choice.key is None and choice.problem is not None
    assert "has space" not in choice.problem
    with servers.serve(servers.BlueskyLike, api_key=KEY) as server:
        outcome = run_check(listening(server.port), ServiceMemory(), choice)
        sent = server.header_values("/api/status", "Authorization")
    assert outcome.result.health == "needs-key"
    assert ENV_KEY in outcome.result.summary
    assert sent == []  # with a broken key nothing is asked of the API


def test_the_key_from_the_environment_opens_the_api() -> None:
    with servers.serve(servers.BlueskyLike, api_key=KEY) as server:
        outcome = run_check(
            listening(server.port), ServiceMemory(), choose_key(None, {ENV_KEY: KEY})
        )
    assert outcome.result.health == "ok"
    assert outcome.result.key_origin == ENV_KEY
    assert KEY not in json.dumps(outcome.result.to_json())


# --- a check, and what it remembers -------------------------------------------------------------


def test_a_plan_that_did_not_complete_is_news_once(tmp_path: Path) -> None:
    history = [
        {"item_uid": "a", "name": "count", "result": {"exit_status": "completed", "time_stop": 1}}
    ]
    store_file = tmp_path / "service-state.json"
    with servers.serve(servers.BlueskyLike, history=history, status=status()) as server:
        state = listening(server.port)
        store = ServiceStore.load(store_file)
        first = run_check(state, store.memory("p"), KeyChoice())
        assert first.notices == ()  # what was there before is not news
        server.options["history"] = [
            *history,
            {
                "item_uid": "b",
                "name": "scan",
                "result": {"exit_status": "aborted", "msg": "stopped by\n user", "time_stop": 2},
            },
            {"item_uid": "c", "name": "count", "result": {"exit_status": "completed"}},
        ]
        server.options["status"] = status(plan_history_uid="changed")
        second = run_check(state, store.memory("p"), KeyChoice())
        assert [n.text for n in second.notices] == ["plan 'scan' aborted: stopped by user"]
        assert store.save() is None
        # The app restarts: the memory comes back from the file, and nothing is news again.
        again = ServiceStore.load(store_file)
        third = run_check(state, again.memory("p"), KeyChoice())
        assert third.notices == ()
        assert third.previous_health == "ok" and third.health_news is None
        paths = [path for path, _ in server.requests if path == "/api/history/get"]
    assert len(paths) == 2  # read only when plan_history_uid changed (and once to begin)


def test_history_that_cannot_be_read_is_tried_again() -> None:
    big = b'{"items": [' + b" " * (9 * 1024 * 1024) + b"]}"

    class HugeHistory(servers.BlueskyLike):
        def do_GET(self) -> None:
            if self.path == "/api/history/get":
                self.reply(200, big, "application/json")
            else:
                super().do_GET()

    with servers.serve(HugeHistory) as server:
        memory = ServiceMemory()
        first = run_check(listening(server.port), memory, KeyChoice())
        second = run_check(listening(server.port), memory, KeyChoice())
    assert first.result.health == "ok"  # the status is fine: only the history is not read
    assert first.problem == "history larger than 8 MiB, not read"
    assert second.problem == first.problem  # not taken as read: asked again next time


@pytest.mark.parametrize(
    ("options", "health", "words"),
    [
        ({"status_raw": b"{not json"}, "error", "/api/status is not JSON"),
        ({"status_raw": b'{"manager_state": 5}'}, "error", "no manager state"),
        ({"status_raw": b"[1, 2]"}, "error", "no manager state"),
        ({"status_raw": b"[" * 100_000}, "error", "too large"),
        ({"status_raw": b" " * (20 * 1024 * 1024)}, "error", "too large"),
        ({"cut": True}, "error", "/api/status answer cut short"),
        ({"status_code": 503}, "server-error", "HTTP 503"),
        ({"status_code": 500, "status_raw": b"Internal Server Error"}, "server-error", "500"),
        ({"manager": "unreachable"}, "manager-unreachable", "RE Manager unreachable"),
        ({"status": status(worker_environment_state="failed")}, "environment-failed", "failed"),
    ],
)
def test_what_a_broken_server_sends(options: dict[str, Any], health: str, words: str) -> None:
    with servers.serve(servers.BlueskyLike, **options) as server:
        result = run_check(listening(server.port), ServiceMemory(), KeyChoice()).result
    assert (result.health, result.verdict) == (health, "unhealthy")
    assert words in result.summary


def test_plain_http_5xx_is_unhealthy_and_4xx_is_not() -> None:
    class Failing(servers.QuietHandler):
        def do_GET(self) -> None:
            self.reply(int(self.server.options["code"]), b"x", "text/plain")

    for code, verdict in ((502, "unhealthy"), (404, "healthy"), (200, "healthy")):
        with servers.serve(Failing, code=code) as server:
            result = run_check(listening(server.port), ServiceMemory(), KeyChoice()).result
        assert result.verdict == verdict, code


def test_a_port_that_stops_between_scan_and_check_is_not_called_unhealthy() -> None:
    memory = ServiceMemory()
    with servers.serve(servers.BlueskyLike) as server:
        port = server.port
        assert run_check(listening(port), memory, KeyChoice()).result.health == "ok"
    # Closed now; the scan has not noticed yet. (The status request alone: known Bluesky.)
    outcome = run_check(listening(port), memory, KeyChoice())
    assert (outcome.result.health, outcome.result.verdict) == ("refused", "unchecked")
    assert outcome.health_news is None and outcome_events(Port(port), outcome) == []
    assert memory.health == "ok"  # when it is back and fine, that is no news either


def test_a_service_that_is_not_http_has_no_health_check() -> None:
    with servers.serve(servers.SshBanner) as server:
        outcome = run_check(listening(server.port), ServiceMemory(), KeyChoice())
    assert (outcome.result.health, outcome.result.verdict) == ("not-http", "unchecked")
    assert outcome.health_news is None
    assert outcome.result.short == "no health check"


def test_a_known_http_service_that_goes_silent_is_unhealthy() -> None:
    with servers.serve(servers.Silent) as server:
        memory = ServiceMemory(speaks_http=True)
        memory.identity = None
        result = run_check(listening(server.port), memory, KeyChoice(), expected_http=True).result
    assert (result.health, result.verdict) == ("no-answer", "unhealthy")


# --- what the user is told --------------------------------------------------------------------


def result_of(health: str, summary: str = "x") -> Any:
    from trayapp.core.probe import ProbeResult

    return ProbeResult(1, "127.0.0.1", health, summary)  # type: ignore[arg-type]


def test_the_worst_port_decides_the_icon() -> None:
    from trayapp.core.model import Snapshot

    up, down = listening(1), PortState(Port(2))
    snap = Snapshot((up, down))
    assert overall_state(snap, False, {}) == "some"
    assert overall_state(snap, False, {Port(1): result_of("ok")}) == "some"
    assert overall_state(snap, False, {Port(1): result_of("manager-unreachable")}) == "unhealthy"
    assert overall_state(Snapshot((up,)), False, {Port(1): result_of("http")}) == "all"
    assert overall_state(snap, True, {Port(1): result_of("manager-unreachable")}) == "trouble"
    # An answer about a port that stopped since is stale: it is not listening, not sick.
    assert overall_state(Snapshot((down,)), False, {Port(2): result_of("no-answer")}) == "none"


def test_status_words() -> None:
    state = listening(1)
    assert port_status(None, None) == "checking..."
    assert port_status(None, None, failed=True) == "unknown (cannot scan)"
    assert port_status(state, None, paused=True) == "paused"
    sick = result_of("manager-unreachable", "HTTP server up, RE Manager unreachable")
    assert port_status(state, sick).endswith("[RE Manager unreachable]")
    assert port_status(state, sick, long=True).endswith("(HTTP server up, RE Manager unreachable)")


def test_one_notification_per_check_and_news_not_folded_away() -> None:
    port = Port(1)
    sick = result_of("manager-unreachable", "RE Manager unreachable")
    event = health_notification(port, sick, "unhealthy", ["plan 'count' aborted"])
    assert event is not None and event.kind == "unhealthy"
    assert event.detail == "unhealthy: RE Manager unreachable\nplan 'count' aborted"
    assert health_notification(port, result_of("ok"), None, []) is None
    # Within the flood window later news is kept beside earlier news, not instead of it.
    throttle = Throttle(window=10)
    first = Event(0, port, "service", code="paused", detail="the run is paused")
    assert throttle.offer(first, 0) is first
    throttle.offer(Event(1, port, "service", detail="plan 'count' aborted"), 1)
    throttle.offer(Event(2, port, "service", detail="the queue stopped with 2 items left"), 2)
    [due] = throttle.due(10)
    assert due.detail == "plan 'count' aborted\nthe queue stopped with 2 items left"


def test_events_of_a_check() -> None:
    port = Port(1)
    sick = result_of("manager-unreachable", "RE Manager unreachable")
    first_sick = outcome_events(port, CheckOutcome(sick, None))
    assert [(e.kind, e.code) for e in first_sick] == [("unhealthy", "manager-unreachable")]
    assert outcome_events(port, CheckOutcome(sick, "manager-unreachable")) == []
    back = outcome_events(port, CheckOutcome(result_of("ok"), "manager-unreachable"))
    assert [(e.kind, e.code) for e in back] == [("healthy", "ok")]
    assert outcome_events(port, CheckOutcome(result_of("ok"), None)) == []
    line = back[0].to_json()
    assert (line["event"], line["code"], line["detail"]) == ("healthy", "ok", "x")
    read_back = Event.from_json(json.loads(json.dumps(line)))
    assert read_back == dataclasses.replace(back[0], time=read_back.time)
    assert abs(read_back.time - back[0].time) < 0.001  # the log keeps milliseconds


# --- the schedule -------------------------------------------------------------------------------


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[Port, CheckOutcome, float]] = []
        self.lock = threading.Lock()

    def __call__(self, port: Port, _state: PortState, outcome: CheckOutcome) -> None:
        with self.lock:
            self.seen.append((port, outcome, time.monotonic()))

    def of(self, port: Port) -> list[CheckOutcome]:
        with self.lock:
            return [outcome for p, outcome, _ in self.seen if p == port]


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.02)


@contextmanager
def monitor(
    intervals: dict[Port, float | None], **options: Any
) -> Iterator[tuple[HealthMonitor, Outcomes]]:
    outcomes = Outcomes()
    health = HealthMonitor(
        outcomes,
        interval_for=lambda port: intervals.get(port, 0.2),
        key_for=lambda _port: KeyChoice(),
        **options,
    )
    try:
        yield health, outcomes
    finally:
        health.close()


def test_checks_start_at_once_and_repeat_on_the_interval() -> None:
    with servers.serve(servers.BlueskyLike) as server, monitor({}) as (health, outcomes):
        port = Port(server.port)
        started = time.monotonic()
        health.update([listening(server.port)])
        wait_for(lambda: len(outcomes.of(port)) >= 4)
        took = time.monotonic() - started
    assert outcomes.of(port)[0].result.health == "ok"
    assert 0.45 < took < 3.0  # the first at once, then three more 0.2 s apart
    paths = [path for path, _ in server.requests]
    # Found out once (GET /, then /openapi.json names it); from then on its status alone.
    assert paths[:3] == ["/", "/openapi.json", "/api/status"]
    assert set(paths[3:]) <= {"/api/status", "/api/history/get"}


def test_a_hanging_server_delays_only_itself() -> None:
    with (
        servers.serve(servers.BlueskyLike, manager="hang") as hanging,
        servers.serve(servers.BlueskyLike) as fine,
        monitor({}) as (health, outcomes),
    ):
        health.update([listening(hanging.port), listening(fine.port)])
        wait_for(lambda: len(outcomes.of(Port(fine.port))) >= 5, timeout=3)
        assert outcomes.of(Port(hanging.port)) == []  # its status request is still waiting
        assert health.in_flight() == 1
        asked = [p for p, _ in hanging.requests if p == "/api/status"]
        assert len(asked) == 1  # at most one check in flight per port
        wait_for(lambda: len(outcomes.of(Port(hanging.port))) >= 1, timeout=6)
    assert outcomes.of(Port(hanging.port))[0].result.health == "manager-unreachable"


def test_paused_off_and_not_http_mean_no_checks() -> None:
    with (
        servers.serve(servers.BlueskyLike) as paused,
        servers.serve(servers.BlueskyLike) as off,
        servers.serve(servers.SshBanner) as ssh,
        monitor({Port(off.port): None}) as (health, outcomes),
    ):
        health.update([listening(ssh.port), listening(off.port)])
        wait_for(lambda: len(outcomes.of(Port(ssh.port))) == 1)
        time.sleep(1.0)
        assert len(outcomes.of(Port(ssh.port))) == 1  # not HTTP: not asked again
        assert outcomes.of(Port(off.port)) == [] and off.requests == []
        health.set_paused(True)
        health.update([listening(paused.port)])
        time.sleep(1.0)
        assert paused.requests == []  # paused: nothing at all
        health.set_paused(False)
        wait_for(lambda: len(outcomes.of(Port(paused.port))) >= 1)


def test_a_port_that_stops_is_no_longer_checked() -> None:
    with servers.serve(servers.BlueskyLike) as server, monitor({}) as (health, outcomes):
        health.update([listening(server.port)])
        wait_for(lambda: len(outcomes.of(Port(server.port))) >= 2)
        health.update([PortState(Port(server.port))])
        time.sleep(0.3)
        count = len(server.requests)
        time.sleep(1.0)
        assert len(server.requests) == count


def test_health_events_reach_the_log_with_the_scans(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    writer = HistoryWriter(log)
    with (
        servers.serve(servers.BlueskyLike, manager="unreachable") as server,
        monitor({}, history=writer) as (health, outcomes),
    ):
        health.update([listening(server.port)])
        wait_for(lambda: len(outcomes.of(Port(server.port))) >= 1)
        server.options["manager"] = "idle"
        wait_for(lambda: any(o.health_news == "healthy" for o in outcomes.of(Port(server.port))))
    kinds = [(e.kind, e.code) for e in log.read().events]
    assert kinds[:2] == [("unhealthy", "manager-unreachable"), ("healthy", "ok")]


def test_requests_start_no_thread_each() -> None:
    """Deadlines are kept by one watchdog thread, not a timer thread per request."""
    with servers.serve(servers.BlueskyLike, manager="hang") as server:
        memory = ServiceMemory(bluesky=True)
        checks = [
            threading.Thread(target=run_check, args=(listening(server.port), memory, KeyChoice()))
            for _ in range(3)
        ]
        for check in checks:
            check.start()
        wait_for(lambda: len([p for p, _ in server.requests if p == "/api/status"]) == 3)
        during = threading.enumerate()  # three requests waiting for their deadline
        for check in checks:
            check.join(10)
    timers = [t for t in during if isinstance(t, threading.Timer)]
    assert [t for t in timers if getattr(t, "function", None) is probe_module._abort] == []
    assert [t.name for t in during].count("portwatch-probe-deadlines") == 1


def test_idle_costs_nothing() -> None:
    """No port listening: the schedule thread sleeps until told something."""
    with monitor({}) as (health, _outcomes):
        health.update([])
        start = time.process_time()
        time.sleep(1.0)
        used = time.process_time() - start
    # process_time counts every thread of this process, the monitor's included.
    assert used < 0.05, used
