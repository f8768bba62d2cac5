"""The tray's Prometheus textfile: Settings' "Prometheus textfile folder" keeps
FOLDER/portwatch.prom current, on every change and at least every 60 s.

The text is made on the GUI thread from what the controller holds (cheap); the write, which
syncs to disk, runs on a thread of its own so a slow disk never stalls the GUI.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from trayapp.core import metrics, textfile
from trayapp.core.events import Event
from trayapp.core.remote_monitor import port_of
from trayapp.ui.controller import Controller
from trayapp.ui.worker import start_thread

log = logging.getLogger(__name__)


class _FileWriter(QObject):
    written = Signal(str)  # the file's path
    failed = Signal(str)  # why it could not be written

    @Slot(str, str)
    def write(self, folder: str, text: str) -> None:
        try:
            path = textfile.write(Path(folder), text)
        except OSError as exc:
            self.failed.emit(f"could not write {Path(folder) / textfile.FILE_NAME}: {exc}")
            return
        self.written.emit(str(path))

    @Slot(str)
    def remove(self, folder: str) -> None:
        with contextlib.suppress(OSError):
            (Path(folder) / textfile.FILE_NAME).unlink()


class MetricsExporter(QObject):
    written = Signal(str)
    failed = Signal(str)
    _write = Signal(str, str)
    _remove = Signal(str)

    def __init__(self, controller: Controller, refresh: float = textfile.REFRESH_S) -> None:
        super().__init__()
        self.controller = controller
        self.changes = metrics.ChangeCounter(controller.ports() + controller.remote_ports())
        self.folder = controller.config.textfile_dir
        self.error: str | None = None
        self._refresh = QTimer(self)  # restarted by every write: never more than `refresh` old
        self._refresh.setInterval(int(refresh * 1000))
        self._refresh.timeout.connect(self.write_now)
        self._soon = QTimer(self)  # a poll can bring a change, events and a probe: one write
        self._soon.setSingleShot(True)
        self._soon.setInterval(0)
        self._soon.timeout.connect(self.write_now)
        self._writer = _FileWriter()
        self._thread: QThread | None = None

    def start(self) -> None:
        self._write.connect(self._writer.write)
        self._remove.connect(self._writer.remove)
        self._writer.written.connect(self._on_written)
        self._writer.failed.connect(self._on_failed)
        self.controller.changed.connect(self._soon.start)
        self.controller.probed.connect(self._soon.start)
        self.controller.events.connect(self._on_events)
        self.controller.config_changed.connect(self._on_config)
        self._thread = start_thread(self._writer, "portwatch-textfile")
        if self.folder:
            self._refresh.start()
            self._soon.start()

    def stop(self) -> None:
        self._refresh.stop()
        self._soon.stop()
        if self._thread is not None:
            self._thread.quit()
            if not self._thread.wait(6000):
                log.warning("the textfile thread did not stop in time")
            self._thread = None

    @Slot()
    def write_now(self) -> None:
        snapshot = self.controller.snapshot
        if not self.folder or snapshot is None:
            return
        checks = self.controller.remote_checks
        remote = [checks[port] for port in self.controller.remote_ports() if port in checks]
        ports = [state.port for state in snapshot.states] + [port_of(c.target) for c in remote]
        text = metrics.render(
            snapshot,
            labels={port: self.controller.label(port) for port in ports},
            probes=self.controller.probes,
            changes=self.changes,
            remote=remote,
        )
        self._write.emit(self.folder, text)
        self._refresh.start()

    def _on_events(self, events: list[Event]) -> None:
        self.changes.add(events)
        self._soon.start()

    def _on_config(self) -> None:
        self.changes.watch(self.controller.ports() + self.controller.remote_ports())
        folder = self.controller.config.textfile_dir
        if folder == self.folder:
            return
        if self.folder:
            # Switched off or moved: a file left behind would be scraped as if it were live.
            self._remove.emit(self.folder)
        self.folder = folder
        self.error = None
        if folder:
            self._refresh.start()
            self._soon.start()
        else:
            self._refresh.stop()

    def _on_written(self, path: str) -> None:
        if self.error is not None:
            log.info("metrics file written again: %s", path)
        self.error = None
        self.written.emit(path)

    def _on_failed(self, message: str) -> None:
        if message != self.error:
            log.warning("%s", message)
        self.error = message
        self.failed.emit(message)
