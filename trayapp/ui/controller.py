"""The app's state on the GUI thread: settings, the latest snapshot, and the workers.

Views (tray, windows, dialogs) read from here and call its methods; they never talk to the
workers or the OS themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, Signal

from trayapp.core import config as cfg
from trayapp.core.apikey import KeyChoice, choose_key
from trayapp.core.events import LISTEN_KINDS, Event
from trayapp.core.health_monitor import HealthMonitor
from trayapp.core.history import EventLog
from trayapp.core.logfile import LogFileHandler
from trayapp.core.model import Port, PortState, Snapshot
from trayapp.core.probe import ProbeResult
from trayapp.core.remote import RemoteCheck, RemoteTarget
from trayapp.core.remote_monitor import RemoteEntry, RemoteMonitor, port_of
from trayapp.core.remote_report import key_for as remote_key_for
from trayapp.core.scanning import Scanner
from trayapp.core.service_check import CheckOutcome, ServiceStore
from trayapp.core.services import label_for
from trayapp.core.status import (
    IconState,
    health_notification,
    overall_state,
    port_label,
    port_title,
)
from trayapp.core.writeback import HistoryWriter
from trayapp.platforms import current_os
from trayapp.ui.worker import ActionWorker, ScanWorker, start_thread

log = logging.getLogger(__name__)


def remote_notifications(check: RemoteCheck, events: list[Event]) -> list[Event]:
    """What a remote check tells the user: its starts and stops, and its health and queue
    news in one notification, worded as for a port of this machine."""
    shown = [event for event in events if event.kind in LISTEN_KINDS]
    news = next((e.kind for e in events if e.kind in ("healthy", "unhealthy")), None)
    notices = [e.detail or e.code or "" for e in events if e.kind == "service"]
    if check.result is not None and (news or notices):
        event = health_notification(port_of(check.target), check.result, news, notices)
        if event is not None:
            shown.append(event)
    return shown


class Controller(QObject):
    changed = Signal()  # a new snapshot, or a scan failure
    config_changed = Signal()
    events = Signal(list)  # list[Event], from the watcher
    inspected = Signal(object, object)  # Port, PortReport | None
    action_done = Signal(int, object)  # pid, Outcome
    paused_changed = Signal(bool)
    # Port, ProbeResult, CheckOutcome (None for a one-off check of a port not watched)
    probed = Signal(object, object, object)
    # Something could not be written (what, why), said once when the first such problem starts.
    write_failed = Signal(str, str)
    _log_file_problem = Signal(object)  # str | None, from whichever thread logged

    # Queued requests to the worker threads (signals cross threads safely).
    _set_ports = Signal(list, str)  # ports, why they change ("paused", "resumed", "")
    _set_interval = Signal(float)
    _inspect = Signal(object)
    _terminate = Signal(int, object, bool)
    _probe = Signal(object, object)
    _checked = Signal(object, object, object)  # from the health pool: Port, PortState, outcome
    _remote_checked = Signal(object, list)  # from a remote entry's thread: RemoteCheck, events

    def __init__(
        self,
        config_path: Path,
        config: cfg.Config,
        scanner_factory: Callable[[], Scanner],
        *,
        event_log: EventLog | None = None,
        extra_ports: list[Port] | None = None,
        service_store: ServiceStore | None = None,
    ) -> None:
        super().__init__()
        self.config_path = config_path
        self.config = config
        self.extra_ports = [p for p in (extra_ports or []) if config.watched(p) is None]
        self.snapshot: Snapshot | None = None
        self.error: str | None = None
        self.paused = False
        self.probes: dict[Port, ProbeResult] = {}
        # What cannot be written right now and why, e.g. {"history": "no space left on /home"}.
        self.write_problems: dict[str, str] = {}
        # Queued: never inside the logging call that failed.
        self._log_file_problem.connect(
            self._on_log_file_problem, Qt.ConnectionType.QueuedConnection
        )
        # One writer for the scan's changes and the health checks' news, so that while the
        # disk refuses they wait together, and are written in the order they happened.
        self._history = HistoryWriter(event_log) if event_log is not None else None
        self._scan = ScanWorker(scanner_factory, self.ports(), config.interval, self._history)
        self._actions = ActionWorker()
        self._threads: list[QThread] = []
        self._store = service_store
        self.health: HealthMonitor | None = None
        # Entries on other machines: their last check, keyed by the Port carrying their title.
        self.remote_checks: dict[Port, RemoteCheck] = {}
        self._remote: RemoteMonitor | None = None

    @property
    def event_log(self) -> EventLog | None:
        """The events log the history windows read (None: this app keeps no history)."""
        return self._history.log if self._history is not None else None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._scan.snapshot.connect(self._on_snapshot)
        self._scan.failed.connect(self._on_failed)
        self._scan.events.connect(self._on_events)
        self._scan.inspected.connect(self.inspected)
        self._scan.history_problem.connect(self._on_history_problem)
        self._actions.finished.connect(self.action_done)
        self._set_ports.connect(self._scan.set_ports)
        self._set_interval.connect(self._scan.set_interval)
        self._inspect.connect(self._scan.inspect)
        self._terminate.connect(self._actions.terminate)
        self._probe.connect(self._actions.probe)
        self._actions.probed.connect(self._on_probed)
        self._checked.connect(self._on_checked)
        self._remote_checked.connect(self._on_remote_checked)
        self._start_remote()
        # Checks report from pool threads; the signal queues them to the GUI thread.
        self.health = HealthMonitor(
            lambda port, state, outcome: self._checked.emit(port, state, outcome),
            interval_for=self.health_interval,
            key_for=self.key_for,
            store=self._store,
            history=self._history,
        )
        self._threads = [
            start_thread(self._scan, "portwatch-scan", self._scan.start),
            start_thread(self._actions, "portwatch-actions"),
        ]

    def _start_remote(self, reason: str = "start") -> None:
        """(Re)start the entries' checks; `reason` is the "watch-began" of entries new to it."""
        entries = [
            RemoteEntry(
                entry.target,
                entry.interval,
                entry.remote_settings(remote_key_for(entry.target, entry.api_key)),
            )
            for entry in self.config.remotes
        ]
        kept = {port_of(entry.target): entry.target for entry in entries}
        carried: dict[RemoteTarget, RemoteCheck] = {}
        reasons: dict[RemoteTarget, str] = {}
        if self._remote is not None:
            # Closed first: from then on its last checks stay as they are.
            ended = self._remote.close("removed")
            self._write_history([event for event in ended if event.port not in kept])
            carried = {t: c for t, c in self._remote.last.items() if t in kept.values()}
            reasons = self._remote.not_begun()  # not checked yet: their reason still holds
        self.remote_checks = {p: c for p, c in self.remote_checks.items() if p in kept}
        # Each entry on a thread of its own: a dead host never holds the GUI or the scans.
        self._remote = RemoteMonitor(
            entries,
            lambda check, events: self._remote_checked.emit(check, events),
            store=self._store,
            reason=reason,
            carried=carried,
            reasons=reasons,
        )

    def _stop_remote(self, reason: str) -> None:
        if self._remote is not None:
            self._write_history(self._remote.close(reason))
            self._remote = None

    def _write_history(self, events: list[Event]) -> None:
        if events and self._history is not None:
            self._history.write(events)

    def stop(self) -> None:
        self._stop_remote("quit")
        if self.health is not None:
            self.health.close()
            self.health = None
        if self._threads:
            QMetaObject.invokeMethod(self._scan, "stop", Qt.ConnectionType.BlockingQueuedConnection)
        for thread in self._threads:
            thread.quit()
            if not thread.wait(6000):
                log.warning("thread %s did not stop in time", thread.objectName())
        self._threads = []

    def watch_log_file(self, handler: LogFileHandler) -> None:
        """Show the log file's trouble like the history's (its handler reports from any thread)."""
        handler.on_problem = self._log_file_problem.emit
        if handler.problem is not None:
            self._set_write_problem("log file", handler.problem)

    # -- what views read -------------------------------------------------------------------
    def ports(self) -> list[Port]:
        return [entry.port for entry in self.config.ports] + self.extra_ports

    def remote_ports(self) -> list[Port]:
        return [port_of(entry.target) for entry in self.config.remotes]

    def remote_check(self, port: Port) -> RemoteCheck | None:
        return self.remote_checks.get(port)

    def label(self, port: Port) -> str:
        return port_label(self.config, port, current_os())

    def title(self, port: Port) -> str:
        return port_title(self.config, port, current_os())

    def health_interval(self, port: Port) -> float | None:
        entry = self.config.watched(port)
        return entry.health_interval if entry else cfg.DEFAULT_HEALTH_INTERVAL

    def key_for(self, port: Port) -> KeyChoice:
        """Read on every check, so a key file or environment change needs no restart."""
        entry = self.config.watched(port)
        return choose_key(entry.api_key if entry else None)

    def is_watched(self, port: Port) -> bool:
        return port in self.ports()

    def state(self, port: Port) -> PortState | None:
        if self.snapshot is None or port not in self.ports():
            return None
        return self.snapshot.state(port)

    def icon_state(self) -> IconState:
        if self.paused:
            return "none" if self.snapshot is None else overall_state(self.snapshot, False)
        remote = [self.remote_checks[p] for p in self.remote_ports() if p in self.remote_checks]
        return overall_state(self.snapshot, self.error is not None, self.probes, remote)

    # -- what views ask for ----------------------------------------------------------------
    def inspect(self, port: Port) -> None:
        self._inspect.emit(port)

    def terminate(self, pid: int, create_time: float | None, force: bool = False) -> None:
        self._terminate.emit(pid, create_time, force)

    def probe(self, state: PortState) -> None:
        """Check the service's health now: a watched port through its schedule, any other
        port once."""
        if not (state.listening and state.port.protocol == "tcp"):
            self.probes.pop(state.port, None)
        elif self.is_watched(state.port) and self.health is not None:
            self.health.recheck(state.port)
        else:
            self._probe.emit(state, self.key_for(state.port))

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        # Pausing stops the scans themselves, not just the notifications: idle means idle.
        self._set_ports.emit([] if paused else self.ports(), "paused" if paused else "resumed")
        if self.health is not None:
            self.health.set_paused(paused)
        if paused:
            self._stop_remote("paused")  # other machines are not asked either while paused
        elif self._threads and self._remote is None:
            self._start_remote("resumed")
        self.paused_changed.emit(paused)

    def watch(self, port: Port, label: str = "") -> None:
        if self.is_watched(port):
            return
        if not label:
            label = label_for(port.number, port.protocol, os_name=current_os()) or ""
        entry = cfg.WatchedPort(port, label=label)
        self.apply(self.config.with_ports((*self.config.ports, entry)))

    def unwatch(self, port: Port) -> None:
        self.extra_ports = [p for p in self.extra_ports if p != port]
        self.apply(self.config.with_ports(tuple(e for e in self.config.ports if e.port != port)))

    def apply(self, config: cfg.Config) -> None:
        """Save new settings and put them into effect. Raises OSError if saving failed."""
        cfg.save(self.config_path, config)
        old = self.config
        self.config = config
        self.extra_ports = [p for p in self.extra_ports if config.watched(p) is None]
        if not self.paused:
            self._set_ports.emit(self.ports(), "")
        if config.interval != old.interval:
            self._set_interval.emit(config.interval)
        if self.health is not None and config.ports != old.ports:
            self.health.recheck_all()  # a new key or interval takes effect at once
        if self._threads and not self.paused and config.remotes != old.remotes:
            self._start_remote("added")
        self.config_changed.emit()

    # -- from the worker -------------------------------------------------------------------
    def _on_snapshot(self, snapshot: Snapshot) -> None:
        # Most polls see nothing new: then the views have nothing to redo (idle means idle).
        same = (
            self.snapshot is not None
            and self.error is None
            and self.snapshot.states == snapshot.states
            and self.snapshot.problems == snapshot.problems
        )
        self.snapshot = snapshot
        self.error = None
        if not same:
            for state in snapshot.states:
                if not state.listening:
                    self.probes.pop(state.port, None)
            if self.health is not None and not self.paused:
                self.health.update(snapshot.states)
            self.changed.emit()

    def _on_failed(self, message: str) -> None:
        if message != self.error:
            log.warning("scan failed: %s", message)
        self.error = message
        self.changed.emit()

    def _on_history_problem(self, problem: str | None) -> None:
        self._set_write_problem("history", problem)

    def _on_log_file_problem(self, problem: str | None) -> None:
        self._set_write_problem("log file", problem)

    def _set_write_problem(self, what: str, problem: str | None) -> None:
        if self.write_problems.get(what) == problem:
            return
        first = not self.write_problems
        if problem is None:
            self.write_problems.pop(what, None)
        else:
            self.write_problems[what] = problem
            if first:  # a full disk fails history and log file at once: tell the user once
                self.write_failed.emit(what, problem)
        self.changed.emit()

    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            log.info("%s %s pid=%s name=%s", event.port, event.kind, event.pid, event.name)
        self.events.emit(events)

    def _on_checked(self, port: Port, state: PortState, outcome: CheckOutcome) -> None:
        now = self.state(port)
        if now is None or not now.listening:
            return  # it stopped (or was unwatched) while we looked: the answer is stale
        result = outcome.result
        if outcome.health_news or outcome.notices:
            log.info("%s health %s: %s", port, result.health, result.summary)
        self.probes[port] = result
        self.probed.emit(port, result, outcome)

    def _on_remote_checked(self, check: RemoteCheck, events: list[Event]) -> None:
        port = port_of(check.target)
        if port not in self.remote_ports() or self.paused:
            return  # removed in Settings while it was checked, or paused: stale
        before = self.remote_checks.get(port)
        self.remote_checks[port] = check
        if events:
            self._write_history(events)
            shown = remote_notifications(check, events)
            if shown:
                self._on_events(shown)
        if before is None or before.line != check.line:
            self.changed.emit()

    def _on_probed(self, port: Port, result: ProbeResult) -> None:
        state = self.state(port)
        if state is not None and not state.listening:
            return  # it stopped while we probed: the answer is stale
        self.probes[port] = result
        self.probed.emit(port, result, None)
