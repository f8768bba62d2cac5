"""How fast the History window opens with a big history: 100,000 events (by default) in
events.jsonl and its rotated files, 20 ports flapping, health news between.

Measured in-process with real Qt (offscreen unless QT_QPA_PLATFORM says otherwise), each run
with a fresh window: `open` is from creating the window to it being shown and painted (the
log is not read yet: it is read on a thread once shown); `filled` is until the strips, totals
and table show every period; `append` is until one event appended afterwards shows (read
incrementally, not the whole log again). Prints one table; the log lives in a temporary folder
that is removed at the end.

    python benchmarks/history_bench.py [--events 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from trayapp.core import config as cfg  # noqa: E402
from trayapp.core.events import Event  # noqa: E402
from trayapp.core.history import EventLog  # noqa: E402
from trayapp.core.model import Port  # noqa: E402
from trayapp.platforms.scanners import create_scanner  # noqa: E402
from trayapp.ui.controller import Controller  # noqa: E402
from trayapp.ui.history_window import HistoryWindow  # noqa: E402


def write_log(log: EventLog, count: int) -> None:
    now = time.time()
    ports = [Port(60610 + i) for i in range(20)]
    step = 7 * 86400 / count  # a week of history
    batch: list[Event] = []
    for i in range(count):
        port = ports[i % len(ports)]
        when = now - 7 * 86400 + i * step
        kind = ("started", "unhealthy", "healthy", "stopped")[(i // len(ports)) % 4]
        if kind in ("started", "stopped"):
            batch.append(Event(when, port, kind, pid=1000 + i, name="uvicorn", username="alice"))
        else:
            batch.append(Event(when, port, kind, code="http-5xx", detail="HTTP 503"))
        if len(batch) == 5000:
            log.append(batch)
            batch = []
    log.append(batch)


def wait_until(app: QApplication, condition: object, timeout: float = 60) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():  # type: ignore[operator]
        if time.perf_counter() > deadline:
            raise TimeoutError("the window did not get there in time")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)


def one_run(app: QApplication, controller: Controller, log: EventLog) -> tuple[float, ...]:
    painted: list[float] = []
    started = time.perf_counter()
    window = HistoryWindow(controller, log)
    window.show()
    # The first paint has happened once a zero-timer fires after the show's events.
    QTimer.singleShot(0, lambda: painted.append(time.perf_counter()))
    wait_until(app, lambda: painted)
    opened = painted[0] - started
    wait_until(app, lambda: window.store.loaded and window.table.topLevelItemCount() > 0)
    filled = time.perf_counter() - started
    port = Port(60610)
    before = window.store.spans
    appended = time.perf_counter()
    log.append([Event(time.time(), port, "unhealthy", code="http-5xx")])
    window.reload()
    wait_until(app, lambda: window.store.spans is not before)
    append = time.perf_counter() - appended
    window.close()
    window.deleteLater()
    app.processEvents()
    return opened, filled, append


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="portwatch-history-bench-") as folder:
        home = Path(folder)
        log = EventLog(home / "events.jsonl", max_bytes=8 * 1024 * 1024, backups=3)
        write_log(log, args.events)
        counted = len(log.read().events)
        files = len(log.files())
        size = sum(path.stat().st_size for path in log.files())
        config = cfg.Config(ports=())
        controller = Controller(home / "config.json", config, create_scanner, event_log=log)
        results = [one_run(app, controller, log) for _ in range(args.runs)]
    print(
        f"History window, {counted} events in {files} files "
        f"({size / 1e6:.1f} MB), {args.runs} runs, QT_QPA_PLATFORM={os.environ['QT_QPA_PLATFORM']}"
    )
    print(f"{'':38} {'median':>8} {'min':>8} {'max':>8}")
    for index, name in enumerate(
        (
            "open: window shown and painted (ms)",
            "filled: strips, totals, table (ms)",
            "append: one new event shown (ms)",
        )
    ):
        values = [run[index] * 1000 for run in results]
        print(f"{name:38} {statistics.median(values):8.0f} {min(values):8.0f} {max(values):8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
