"""Background work for the GUI: scanning and process actions, each on its own thread.

Workers only emit signals; widgets are touched by the GUI thread alone. A scan that stalls
(psutil.net_connections can take over a second) stalls only this thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from trayapp.core.apikey import KeyChoice
from trayapp.core.history import EventLog
from trayapp.core.inspection import make_report
from trayapp.core.model import Port, PortState
from trayapp.core.probe import ProbeResult
from trayapp.core.report import PortReport
from trayapp.core.scanning import ScanError, Scanner
from trayapp.core.service_check import ServiceMemory, run_check
from trayapp.core.watcher import Watcher, late_after
from trayapp.core.writeback import HistoryWriter
from trayapp.platforms import host_facts
from trayapp.platforms.processes import terminate

log = logging.getLogger(__name__)


class ScanWorker(QObject):
    """Polls the watched ports on a timer; answers one-off inspections of any port."""

    snapshot = Signal(object)  # Snapshot
    events = Signal(list)  # list[Event]
    failed = Signal(str)  # the whole scan failed: state unknown, keep the last one
    inspected = Signal(object, object)  # Port, PortReport (with connections) or None on failure
    history_problem = Signal(object)  # str | None: why the events log cannot be written now

    def __init__(
        self,
        scanner_factory: Callable[[], Scanner],
        ports: list[Port],
        interval: float,
        event_log: EventLog | HistoryWriter | None,
    ) -> None:
        super().__init__()
        self._factory = scanner_factory
        self._ports = ports
        self._interval_ms = int(interval * 1000)
        self._log = event_log
        self._watcher: Watcher | None = None
        self._timer: QTimer | None = None
        self._history_problem: str | None = None
        self._due: float | None = None  # monotonic time the next timed poll is due

    @Slot()
    def start(self) -> None:
        # Created here so the scanner (netlink socket, caches) belongs to this thread.
        self._watcher = Watcher(
            self._factory(),
            self._ports,
            log=self._log,
            gap_s=late_after(self._interval_ms / 1000),
        )
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)  # re-armed after each poll: slow scans never pile up
        self._timer.timeout.connect(self.poll)
        self.poll()

    @Slot()
    def poll(self) -> None:
        if self._watcher is None or self._timer is None:
            return
        if self._due is not None:
            late = time.monotonic() - self._due
            if late > late_after(self._interval_ms / 1000):
                # The single-shot timer fires once however long we slept: one poll catches up.
                log.info("woke %.0f s late (suspended or stopped): one catch-up poll", late)
        try:
            snapshot, events = self._watcher.poll()
        except Exception as exc:  # never let a scanner bug kill the watch thread
            log.exception("scan failed")
            snapshot, events = None, []
            self._watcher.last_error = f"scan failed: {exc}"
        if snapshot is None:
            self.failed.emit(self._watcher.last_error or "scan failed")
        else:
            self.snapshot.emit(snapshot)
        if events:
            self.events.emit(events)
        if self._watcher.history_problem != self._history_problem:
            self._history_problem = self._watcher.history_problem
            self.history_problem.emit(self._history_problem)
        if self._ports:
            self._timer.start(self._interval_ms)
            self._due = time.monotonic() + self._interval_ms / 1000
        else:
            # Paused, or nothing watched: no timer, no scans, until set_ports() says otherwise.
            self._due = None

    @Slot(list, str)
    def set_ports(self, ports: list[Port], reason: str = "") -> None:
        self._ports = ports
        if self._watcher is not None:
            self._watcher.set_ports(ports, reason)
            if self._timer is not None:
                self._timer.stop()
            self.poll()

    @Slot(float)
    def set_interval(self, seconds: float) -> None:
        self._interval_ms = int(seconds * 1000)
        if self._watcher is not None:
            self._watcher.gap_s = late_after(seconds)

    @Slot(object)
    def inspect(self, port: Port) -> None:
        """Scan one port with its connections and assemble range, known use and diagnosis.
        All here, because reading the OS's ranges can be slow (netsh on Windows)."""
        if self._watcher is None:
            return
        try:
            state = self._watcher.scanner.scan([port], connections=True).states[0]
            result: PortReport | None = make_report(state, host_facts(), probe=False)
        except ScanError as exc:
            log.warning("inspecting %s failed: %s", port, exc)
            result = None
        except Exception:
            log.exception("inspecting %s failed", port)
            result = None
        self.inspected.emit(port, result)

    @Slot()
    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self._watcher is not None:
            self._watcher.close("quit")
            self._watcher.scanner.close()
            self._watcher = None


class ActionWorker(QObject):
    """Runs slow one-off actions away from the GUI thread: terminate (waits up to 5 s) and
    the service probe (loopback HTTP, 1 s timeout per request)."""

    finished = Signal(int, object)  # pid, Outcome
    probed = Signal(object, object)  # Port, ProbeResult

    @Slot(object, object)
    def probe(self, state: PortState, key: KeyChoice) -> None:
        """A one-off check of a port that is not watched (its window was opened)."""
        try:
            result = run_check(state, ServiceMemory(), key).result
        except Exception as exc:  # a probe bug must not kill the thread
            log.exception("probe of %s failed", state.port)
            result = ProbeResult(state.port.number, "", "error", f"probe failed: {exc}")
        self.probed.emit(state.port, result)

    @Slot(int, object, bool)
    def terminate(self, pid: int, create_time: float | None, force: bool) -> None:
        self.finished.emit(pid, terminate(pid, create_time, force=force))


def start_thread(
    worker: QObject, name: str, on_started: Callable[[], None] | None = None
) -> QThread:
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    if on_started is not None:
        thread.started.connect(on_started)
    thread.start()
    return thread
