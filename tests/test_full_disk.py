"""A full disk, a read-only disk and a vanished folder under the history, the log file and the
settings: on a real tmpfs of a few KiB (root: it mounts), filled and freed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests.support import free_port
from tests.tmpfs import Tmpfs
from tests.ui_support import http_server, make_controller
from trayapp.core import config as cfg
from trayapp.core.events import Event
from trayapp.core.history import EventLog
from trayapp.core.logfile import LogFileHandler
from trayapp.core.model import Port
from trayapp.core.writeback import HistoryWriter
from trayapp.fileio import append_whole, describe_write_error
from trayapp.ui.tray import Tray


def event(i: int) -> Event:
    return Event(
        time=1_700_000_000.0 + i,
        port=Port(60610),
        kind="started" if i % 2 == 0 else "stopped",
        pid=1000 + i,
        name="uvicorn",
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def disk(tmp_path: Path) -> Tmpfs:
    with Tmpfs(tmp_path / "disk", size_kib=16) as mounted:
        yield mounted  # type: ignore[misc]


def test_a_short_write_on_a_filling_disk_is_cut_back(disk: Tmpfs) -> None:
    path = disk.path / "events.jsonl"
    path.write_bytes(b'{"first": 1}\n')
    disk.fill()
    slack = 4096 - path.stat().st_size  # the rest of its page still fits, then ENOSPC
    with pytest.raises(OSError) as info:
        append_whole(path, b"x" * (slack + 100) + b"\n")
    assert "No space left" in str(info.value)
    assert path.read_bytes() == b'{"first": 1}\n'  # no half line left behind


def test_history_keeps_events_while_the_disk_is_full_and_writes_them_in_order(
    disk: Tmpfs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    log = EventLog(disk.path / "data" / "events.jsonl")
    clock = Clock()
    writer = HistoryWriter(log, clock=clock)
    disk.fill()
    writer.write([event(1), event(2)])
    writer.write([event(3)])
    clock.now += 10
    writer.retry()
    assert writer.problem == f"no space left on {disk.path}"
    assert writer.waiting == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one line per fault, not per attempt
    assert str(disk.path) in warnings[0]

    disk.free()
    writer.write([event(4)])
    assert writer.problem is None and writer.waiting == 0
    assert [e.pid for e in log.read().events] == [1001, 1002, 1003, 1004]
    assert "history written again: 4 changes that waited were saved" in caplog.messages


def test_history_retries_on_its_own_once_the_disk_has_room(disk: Tmpfs) -> None:
    log = EventLog(disk.path / "events.jsonl")
    clock = Clock()
    writer = HistoryWriter(log, retry_s=2.0, clock=clock)
    disk.fill()
    writer.write([event(0), event(1)])
    assert writer.problem is not None
    disk.free()
    writer.retry()  # too soon: paced, nothing tried
    assert writer.waiting == 2
    clock.now += 2.0
    writer.retry()
    assert writer.problem is None
    assert [e.pid for e in log.read().events] == [1000, 1001]


def test_history_backlog_is_bounded_and_says_what_was_lost(
    disk: Tmpfs, caplog: pytest.LogCaptureFixture
) -> None:
    log = EventLog(disk.path / "events.jsonl")
    writer = HistoryWriter(log, limit=3)
    disk.read_only()
    writer.write([event(i) for i in range(5)])
    assert writer.problem == f"{disk.path} is read-only"
    assert writer.waiting == 3
    disk.read_only(False)
    writer.write([event(5)])
    # Still failing, the new one pushes out one more: the newest three are written, and the
    # three oldest are named as lost.
    assert [e.pid for e in log.read().events] == [1003, 1004, 1005]
    assert "3 older changes were lost while the history was unwritable" in caplog.messages


def test_a_vanished_data_folder_is_named_and_written_again_when_back(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    log = EventLog(folder / "events.jsonl")
    writer = HistoryWriter(log, retry_s=0)
    folder.write_text("not a folder")  # the folder is gone and something else holds its name
    writer.write([event(0)])
    assert writer.problem == f"{folder} is not a folder"
    folder.unlink()
    writer.retry()
    assert writer.problem is None
    assert [e.pid for e in log.read().events] == [1000]


@pytest.mark.parametrize(
    ("errno_name", "expected"),
    [
        ("ENOSPC", "no space left on /"),
        ("EROFS", "/ is read-only"),
        ("EACCES", "no permission to write in /"),
        ("EDQUOT", "disk quota exceeded on /"),
    ],
)
def test_write_errors_in_words(errno_name: str, expected: str) -> None:
    import errno

    code = getattr(errno, errno_name)
    assert describe_write_error(OSError(code, os.strerror(code)), Path("/x/y")) == expected


def test_settings_save_on_a_full_disk_fails_clearly_and_keeps_the_old_file(disk: Tmpfs) -> None:
    path = disk.path / "config" / "config.json"
    old = cfg.Config(ports=(cfg.WatchedPort(Port(8080), "old"),))
    cfg.save(path, old)
    before = path.read_bytes()
    disk.fill()
    new = cfg.Config(ports=tuple(cfg.WatchedPort(Port(p), "x" * 70) for p in range(9000, 9040)))
    with pytest.raises(cfg.SaveError) as info:
        cfg.save(path, new)
    assert str(info.value) == f"no space left on {disk.path}; the settings file is unchanged"
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left
    disk.free()
    cfg.save(path, new)
    assert cfg.load(path).config == new


def test_the_log_file_on_a_full_disk_prints_one_line_and_no_traceback(disk: Tmpfs) -> None:
    """In a child process, so its stderr is exactly what a user's terminal would show."""
    script = f"""
import logging, sys, time
from pathlib import Path
from trayapp.core.logfile import LogFileHandler
disk = Path({str(disk.path)!r})
filler = disk / "filler"
problems = []
handler = LogFileHandler(disk / "log" / "portwatch.log", retry_s=0.2, on_problem=problems.append)
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
with filler.open("wb", buffering=0) as f:
    try:
        while f.write(bytes(512)):
            pass
    except OSError:
        pass
for i in range(50):
    logging.info("change %d", i)
print("problems", problems, file=sys.stdout)
filler.unlink()
time.sleep(1.0)  # the handler's own retry, with nothing new logged
print("problems", problems, file=sys.stdout)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line == (
        f"portwatch: cannot write the log file {disk.path}/log/portwatch.log: no space left on "
        f"{disk.path}; keeping its lines in memory until it can"
    )
    first, second = result.stdout.splitlines()
    assert first == f"problems ['no space left on {disk.path}']"
    assert second == f"problems ['no space left on {disk.path}', None]"
    lines = (disk.path / "log" / "portwatch.log").read_text().splitlines()
    assert lines == [f"change {i}" for i in range(50)]


def test_the_standard_file_handler_is_what_printed_tracebacks(disk: Tmpfs) -> None:
    """Why the app has its own handler: logging's prints a traceback per line it cannot write."""
    script = f"""
import logging.handlers
from pathlib import Path
disk = Path({str(disk.path)!r})
handler = logging.handlers.RotatingFileHandler(disk / "portwatch.log", maxBytes=10**6)
logging.getLogger().addHandler(handler)
with (disk / "filler").open("wb", buffering=0) as f:
    try:
        while f.write(bytes(512)):
            pass
    except OSError:
        pass
for i in range(3):
    logging.warning("change %d", i)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.stderr.count("--- Logging error ---") == 3


def test_log_lines_wait_in_order_while_the_folder_is_read_only(disk: Tmpfs) -> None:
    problems: list[str | None] = []
    handler = LogFileHandler(disk.path / "portwatch.log", retry_s=3600, on_problem=problems.append)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test-log-ro")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("before")
        disk.read_only()
        logger.warning("during 1")
        logger.warning("during 2")
        assert problems == [f"{disk.path} is read-only"]
        disk.read_only(False)
        handler.retry()
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert problems == [f"{disk.path} is read-only", None]
    assert (disk.path / "portwatch.log").read_text().splitlines() == [
        "before",
        "during 1",
        "during 2",
        "after",
    ]


def test_the_tray_says_once_that_history_cannot_be_written(
    qtbot: QtBot, tmp_path: Path, portwatch_home: Path
) -> None:
    """A real server starts and stops while the history's disk is full: the tooltip and the menu
    say why, one notification says it, and the changes reach events.jsonl once there is room."""
    port = Port(free_port())
    with Tmpfs(tmp_path / "data", size_kib=16) as disk:
        disk.fill()
        controller = make_controller(
            portwatch_home, [port], log=EventLog(disk.path / "events.jsonl")
        )
        sent: list[tuple[str, str]] = []  # new notifications, not updates of one in place

        def send(title: str, body: str, replaces: int) -> int:
            if not replaces:
                sent.append((title, body))
            return len(sent)

        tray = Tray(controller)
        tray.send_notification = send
        controller.start()
        try:
            qtbot.waitUntil(lambda: controller.snapshot is not None, timeout=10000)
            for _ in range(2):
                with http_server(port.number):
                    qtbot.waitUntil(lambda: bool(controller.state(port).listening), timeout=10000)
                qtbot.waitUntil(lambda: not controller.state(port).listening, timeout=10000)
            line = (
                f"History cannot be written: no space left on {disk.path} "
                "(kept in memory until it can)"
            )
            qtbot.waitUntil(lambda: line in tray.tooltip(), timeout=10000)
            tray.rebuild_menu()
            assert line in [a.text() for a in tray.menu.actions()]
            problem_notes = [s for s in sent if "cannot write" in s[0]]
            assert problem_notes == [
                (
                    "Port Watch cannot write its history",
                    f"no space left on {disk.path}. Kept in memory until it can.",
                )
            ]
            assert any("now listening" in body for _title, body in sent)  # changes still told
            disk.free()
            qtbot.waitUntil(lambda: line not in tray.tooltip(), timeout=10000)
            kinds = [
                json.loads(x)["event"]
                for x in (disk.path / "events.jsonl").read_text().splitlines()
            ]
            # In order, none lost; besides them the watch began (and health news may come).
            assert kinds[0] == "watch-began"
            changes = [kind for kind in kinds if kind in ("started", "stopped")]
            assert changes == ["started", "stopped", "started", "stopped"]
        finally:
            controller.stop()


def test_the_settings_dialog_says_why_it_could_not_save(
    qtbot: QtBot, tmp_path: Path, portwatch_home: Path
) -> None:
    from PySide6.QtWidgets import QDialogButtonBox

    from trayapp.platforms.autostart import XdgAutostart
    from trayapp.platforms.scanners import create_scanner
    from trayapp.ui.controller import Controller
    from trayapp.ui.settings_dialog import SettingsDialog

    with Tmpfs(tmp_path / "config", size_kib=16) as disk:
        path = disk.path / "config.json"
        cfg.save(path, cfg.Config())
        before = path.read_bytes()
        controller = Controller(path, cfg.Config(), create_scanner)  # never started: no scans
        dialog = SettingsDialog(controller, XdgAutostart(config_home=tmp_path / "xdg"))
        qtbot.addWidget(dialog)
        dialog.inputs["interval"].setValue(7.5)  # type: ignore[union-attr]
        disk.fill()
        dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
        assert dialog.error.text() == (
            f"Could not save settings: no space left on {disk.path}; the settings file is unchanged"
        )
        assert dialog.result() == 0  # not accepted: the dialog stays for another try
        assert path.read_bytes() == before
        assert controller.config == cfg.Config()  # nothing half-applied
