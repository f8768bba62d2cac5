"""The real app on a real desktop: Xvfb + D-Bus + dunst + xfce4-panel (StatusNotifierItem).

One scenario, as a person would live it: the app starts with a watched port free, a server
starts (icon turns green, a notification names the process), a right-click shows the port's
line, choosing it opens the port window with the server's pid, the server stops (icon and
notification again), Quit from the menu, nothing left running.
Screenshots: test-artifacts/desktop/app-*.png.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

from .app_support import GREEN, REPO, RING, App, start_server, write_config
from .harness import Desktop, Rect, wait_until


def menu_rows(desktop: Desktop) -> tuple[Rect, list[Rect]]:
    """The open context menu's window and its text rows, top to bottom."""
    menu = wait_until(lambda: desktop.popup_menus(), 10, message="the context menu")[0]
    area = desktop.window_geometry(menu)
    rows = desktop.capture(*area).text_lines()
    return area, rows


def click_row(desktop: Desktop, row: Rect) -> None:
    """Click a menu row (text_lines() gives screen coordinates)."""
    desktop.click(*row.center)


def close_window(desktop: Desktop, wid: int) -> None:
    """As a person would, with the keyboard (there is no window manager to ask)."""
    desktop.run(["xdotool", "windowfocus", "--sync", str(wid)], check=False)
    desktop.key("Escape")


@pytest.fixture
def server_port() -> Iterator[int]:
    yield free_port()


@pytest.mark.timeout(180)
def test_a_day_in_the_tray(desktop: Desktop, app_home: Path, server_port: int) -> None:
    port, label = server_port, "Test API"
    write_config(app_home, port, label)
    app = App(desktop, app_home)
    server: subprocess.Popen[bytes] | None = None
    try:
        # 1. Watching a free port: the "none" icon (a grey ring).
        none_area = desktop.wait_for_tray_colour(RING, timeout=30, min_fraction=0.2)
        none_icon = desktop.capture(*none_area)
        assert none_icon.fraction(GREEN) < 0.05
        desktop.screenshot("app-1-free")

        # 2. A server starts: green icon within a poll interval, a notification naming it.
        server = start_server(port)
        started_at = time.monotonic()
        note = desktop.wait_for_notification(
            lambda n: str(port) in n["summary"] and "now listening" in n["body"], timeout=15
        )
        assert note["summary"] == f"{port} {label}"
        assert f"python (pid {server.pid}" in note["body"]
        area = desktop.wait_for_tray_colour(GREEN, timeout=20, min_fraction=0.3)
        seen_after = time.monotonic() - started_at
        desktop.screenshot("app-2-notification")

        # Clicking the notification (dunst: middle button = its default action) opens the
        # port's window.
        [popup] = wait_until(lambda: desktop.find_windows(class_="Dunst"), 10, message="popup")
        desktop.click(*desktop.window_geometry(popup).center, button=2)
        title = f"What's on port {port}/tcp: listening, python \\(pid {server.pid}"
        [window] = wait_until(lambda: desktop.find_windows(name=title), 15, message=title)
        desktop.screenshot("app-2b-clicked-notification")
        close_window(desktop, window)
        wait_until(lambda: not desktop.find_windows(name=title), 10, message="window closed")
        # The same screen square before and after: the shapes differ, not just the colours.
        listening_icon = desktop.capture(*none_area)
        assert listening_icon.differing_pixels(none_icon) > 0.3 * none_area.w * none_area.h
        desktop.screenshot("app-3-listening")

        # 3. Right-click: the panel draws the menu the app exports, with the port's live line.
        desktop.click(*area.center, button=3)
        _menu_area, rows = menu_rows(desktop)
        [item] = wait_until(desktop.tray_items, 10, message="the app's tray item")
        labels = desktop.tray_menu_labels(item)
        line = f"{port} {label}: listening, python (pid {server.pid}"
        assert labels[0].startswith(line), labels
        assert labels[-1] == "Quit"
        assert len(rows) >= 8, rows  # ports, actions, Quit
        desktop.screenshot("app-4-menu")

        # 4. Choosing the port's line opens its window, which shows the server's pid.
        click_row(desktop, rows[0])
        [window] = wait_until(lambda: desktop.find_windows(name=title), 15, message=title)
        geometry = desktop.window_geometry(window)
        assert geometry.w > 400 and geometry.h > 300
        desktop.screenshot("app-5-port-window")

        # 5. The server stops: icon back to the ring, a "stopped" notification.
        server.terminate()
        server.wait(10)
        server = None
        desktop.wait_for_notification(
            lambda n: str(port) in n["summary"] and n["body"].startswith("stopped"), timeout=20
        )
        desktop.wait_for_tray_colour(RING, timeout=30, min_fraction=0.2)
        desktop.screenshot("app-6-stopped")

        # 6. Left-click: the overview of every watched port. (Without a window manager the
        # port window opens at 0,0, over the panel: close it first.)
        for wid in desktop.find_windows(name="What's on port"):
            close_window(desktop, wid)
        area = desktop.wait_for_tray_icon()
        desktop.click(*area.center, button=1)
        [overview] = wait_until(
            lambda: desktop.find_windows(name="^Port Watch$"), 15, message="the overview window"
        )
        desktop.screenshot("app-6b-overview")
        close_window(desktop, overview)
        wait_until(lambda: not desktop.find_windows(name="^Port Watch$"), 10, message="closed")

        # 7. Quit from the menu: the app exits cleanly and leaves nothing behind.
        area = desktop.wait_for_tray_icon()
        desktop.click(*area.center, button=3)
        _menu_area, rows = menu_rows(desktop)
        click_row(desktop, rows[-1])
        app.quit_chosen(desktop, "app-8-quit")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        app.stop()
    log = app.log()
    assert "notify:" in log and "started" in log
    print(f"icon turned green {seen_after:.2f} s after the server listened")


@pytest.mark.timeout(120)
def test_no_tray_falls_back_to_a_window(app_home: Path, tmp_path: Path) -> None:
    """No tray host at all (a bare X server and bus): the app opens its overview window and
    still notifies over D-Bus."""
    desktop = Desktop()
    try:
        desktop.start("xfce")
        # Stop the panel: now there is a notification service but no tray.
        desktop.run(["xfce4-panel", "--quit"], check=False)
        wait_until(
            lambda: (
                "org.kde.StatusNotifierWatcher"
                not in desktop.run(
                    [
                        "dbus-send",
                        "--session",
                        "--print-reply",
                        "--dest=org.freedesktop.DBus",
                        "/org/freedesktop/DBus",
                        "org.freedesktop.DBus.ListNames",
                    ]
                ).stdout
            ),
            15,
            message="the tray host gone",
        )
        port = free_port()
        write_config(app_home, port, "No Tray")
        env = {
            **desktop.env,
            "PORTWATCH_HOME": str(app_home),
            "PORTWATCH_TRAY_WAIT": "1",
            "PYTHONPATH": str(REPO),
        }
        proc = desktop.spawn(
            [sys.executable, "-m", "trayapp"], env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_until(lambda: desktop.find_windows(name="^Port Watch$"), 20, message="overview")
            desktop.screenshot("app-notray-overview")
            server = start_server(port)
            try:
                note = desktop.wait_for_notification(
                    lambda n: str(port) in n["summary"], timeout=20
                )
                assert "now listening: python" in note["body"]
            finally:
                server.terminate()
                server.wait(10)
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
    finally:
        desktop.stop()
