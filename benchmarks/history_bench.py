"""How fast the History window opens with a big history: 100,000 events (by default) in
events.jsonl and its rotated files, 20 ports flapping, health news between.

Measured in-process with real Qt (offscreen unless QT_QPA_PLATFORM says otherwise), each run
with a fresh window: `open` is from creating the window to it being shown and painted (the
log is not read yet: it is read on a thread once shown); `filled` is until the strips, totals
and table show every period and are painted, once with the periods cache beside the log
(what every window but the first finds) and once without it (the first window ever, or after
a rotation dropped the oldest file: every line parsed); `append` is until one event appended
afterwards is painted (read incrementally, not the whole log again); `week` is switching the
window to the last week, which shows every period of this log. Waiting happens in Qt's
event loop, as in the app. Prints one table; the log lives in a temporary folder that is
removed at the end.

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

from PySide6.QtCore import QEventLoop, QTimer, SignalInstance  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from trayapp.core import config as cfg  # noqa: E402
from trayapp.core import period_cache  # noqa: E402
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


def wait_for(
    app: QApplication, signal: SignalInstance, condition: object, timeout: float = 60
) -> None:
    """Wait in Qt's event loop, as the app does when idle (not spinning, which would take
    the interpreter away from the reading thread), until `condition` holds."""
    deadline = time.perf_counter() + timeout
    while not condition():  # type: ignore[operator]
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("the window did not get there in time")
        loop = QEventLoop()
        signal.connect(loop.quit)
        QTimer.singleShot(int(min(left, 1.0) * 1000), loop.quit)
        loop.exec()
        signal.disconnect(loop.quit)


def settle(app: QApplication) -> None:
    """Until what the last change asked for is done: Qt handles the posted events (layout,
    paint) before a zero-timer fires."""
    done: list[bool] = []
    QTimer.singleShot(0, lambda: done.append(True))
    while not done:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)


def one_run(
    app: QApplication, controller: Controller, log: EventLog, cached: bool
) -> tuple[float, ...]:
    if not cached:
        period_cache.cache_file(log.path).unlink(missing_ok=True)
    painted: list[float] = []
    started = time.perf_counter()
    window = HistoryWindow(controller, log)
    window.show()
    # The first paint has happened once a zero-timer fires after the show's events.
    QTimer.singleShot(0, lambda: painted.append(time.perf_counter()))
    while not painted:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
    opened = painted[0] - started
    wait_for(app, window.store.changed, lambda: window.periods.rowCount() > 0)
    settle(app)  # filled means on the screen: laid out, strips painted, table rows drawn
    filled = time.perf_counter() - started
    port = Port(60610)
    before = window.store.spans
    appended = time.perf_counter()
    log.append([Event(time.time(), port, "unhealthy", code="http-5xx")])
    window.reload()
    wait_for(app, window.store.changed, lambda: window.store.spans is not before)
    settle(app)
    append = time.perf_counter() - appended
    switched = time.perf_counter()
    window.span_filter.setCurrentIndex(2)  # the last week: every period of this log
    settle(app)
    week = time.perf_counter() - switched
    window.close()
    window.deleteLater()
    app.processEvents()
    return opened, filled, append, week


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
        cold = [one_run(app, controller, log, cached=False) for _ in range(args.runs)]
        warm = [one_run(app, controller, log, cached=True) for _ in range(args.runs)]
    print(
        f"History window, {counted} events in {files} files "
        f"({size / 1e6:.1f} MB), {args.runs} runs, QT_QPA_PLATFORM={os.environ['QT_QPA_PLATFORM']}"
    )
    print(f"{'':46} {'median':>8} {'min':>8} {'max':>8}")
    lines = (
        ("open: window shown and painted (ms)", warm, 0),
        ("filled, periods cache kept beside the log (ms)", warm, 1),
        ("filled, no cache: every line parsed (ms)", cold, 1),
        ("append: one new event shown (ms)", warm, 2),
        ("switch to Last week: all periods shown (ms)", warm, 3),
    )
    for name, results, index in lines:
        values = [run[index] * 1000 for run in results]
        print(f"{name:46} {statistics.median(values):8.0f} {min(values):8.0f} {max(values):8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
