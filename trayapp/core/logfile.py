"""The app's log file: rotated by size, and quiet about its own trouble.

logging's own file handlers print a "--- Logging error ---" traceback to stderr for every line
they cannot write: on a full disk that is one traceback per change, for weeks. This handler
instead keeps the lines it could not write in memory (bounded), says once (one stderr line and
`on_problem`) what is wrong, retries now and then, and writes the waiting lines in order as soon
as it can.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from trayapp.core.writeback import Backlog
from trayapp.fileio import append_whole, describe_write_error, rotate_files

LOG_BACKLOG = 2_000  # lines
RETRY_S = 5.0


class LogFileHandler(logging.Handler):
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1_000_000,
        backups: int = 3,
        limit: int = LOG_BACKLOG,
        retry_s: float = RETRY_S,
        on_problem: Callable[[str | None], None] | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self.retry_s = retry_s
        # Called with the reason when writing starts failing and with None when it works again;
        # from whichever thread logged, with the handler's lock held: it must not log itself.
        self.on_problem = on_problem
        self.problem: str | None = None
        self._backlog: Backlog[str] = Backlog(limit)
        self._timer: threading.Timer | None = None
        self._closed = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception as exc:  # a bad format string in a log call must not cost the line
            line = f"(unformattable log message {record.msg!r} {record.args!r}: {exc!r})"
        self._backlog.add([line + "\n"])
        self._flush()

    def retry(self) -> None:
        """Write what waits, if the file can be written now."""
        self.acquire()
        try:
            self._timer = None
            if not self._closed:
                self._flush()
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        finally:
            self.release()
        super().close()

    def _flush(self) -> None:
        if not self._backlog:
            return
        dropped = self._backlog.dropped
        lines = list(self._backlog.items)
        if dropped:
            lines.insert(0, f"({dropped} log lines were lost while the log file was unwritable)\n")
        data = "".join(lines).encode("utf-8", "backslashreplace")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self.max_bytes:
                rotate_files(self.path, self.backups)
            append_whole(self.path, data)
        except OSError as exc:
            self._failed(describe_write_error(exc, self.path))
            return
        self._backlog.clear()
        if self.problem is not None:
            self.problem = None
            if self.on_problem is not None:
                self.on_problem(None)

    def _failed(self, problem: str) -> None:
        if problem != self.problem:
            self.problem = problem
            # The one place this can still be said; one line, never a traceback.
            stream = sys.stderr
            if stream is not None:
                try:
                    stream.write(
                        f"portwatch: cannot write the log file {self.path}: {problem}; "
                        "keeping its lines in memory until it can\n"
                    )
                    stream.flush()
                except (OSError, ValueError):
                    pass
            if self.on_problem is not None:
                self.on_problem(problem)
        if self._timer is None and not self._closed:
            # Nothing else may log for hours; without this the waiting lines would wait as long.
            self._timer = threading.Timer(self.retry_s, self.retry)
            self._timer.daemon = True
            self._timer.name = "portwatch-log-retry"
            self._timer.start()
