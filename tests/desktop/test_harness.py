"""Self-test of the desktop harness: a tiny PySide6 tray program, watched from outside.

Screenshots land in test-artifacts/desktop/ (git-ignored): xfce-01..05, trayer-01..04.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .harness import Desktop, DesktopError, Image, Rect, parse_dbus_text, wait_until

TINY_TRAY = Path(__file__).resolve().parent / "tiny_tray.py"
GREEN, RED = "#22c55e", "#ef4444"
BLUE, YELLOW = "#3b82f6", "#eab308"


class TinyTray:
    """tiny_tray.py running in the desktop, with its stdout lines collected by a thread."""

    def __init__(self, desktop: Desktop, *args: str) -> None:
        self.proc = desktop.spawn(
            [sys.executable, str(TINY_TRAY), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_line(self, prefix: str, timeout: float = 15.0) -> str:
        def find() -> str | None:
            return next((line for line in self.lines if line.startswith(prefix)), None)

        with self._changed:
            if not self._changed.wait_for(find, timeout):
                pytest.fail(f"tiny_tray never said {prefix!r}; it said: {self.lines}")
            found = find()
        assert found is not None
        return found

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def quit_with_sigterm(self, timeout: float = 10.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout)
        self._reader.join(timeout)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.stdout.close()
        return status


def assert_text_lines(image: Image, count: int, what: str) -> list[Rect]:
    """`count` lines of dark 'ink' enclosed by a light background, each wider than tall and of
    a plausible text height: labels, without reading them (there is no OCR here)."""
    lines = image.text_lines()
    assert len(lines) == count, f"{what}: expected {count} line(s) of text, found {lines}"
    for line in lines:
        assert 6 <= line.h <= 24 and line.w >= 2 * line.h, f"{what}: {line} is not a text line"
    return lines


# -- the parser, no desktop needed ---------------------------------------------------------------

MONITOR_SAMPLE = """\
signal time=1795829066.578515 sender=org.freedesktop.DBus -> destination=:1.0 serial=2 \
path=/org/freedesktop/DBus; interface=org.freedesktop.DBus; member=NameAcquired
   string ":1.0"
method call time=1795829078.683169 sender=:1.11 -> destination=org.freedesktop.Notifications \
serial=23 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; \
member=Notify
   string "tinytray"
   uint32 0
   string "dialog-information"
   string "A "quoted" title"
   string "line one
   string "not a value"
line three"
   array [
      string "default"
      string "Open"
   ]
   array [
      dict entry(
         string "urgency"
         variant             byte 1
      )
      dict entry(
         string "image-data"
         variant             struct {
               int32 2
               boolean true
               array of bytes [
                  ff 00 10
               ]
            }
      )
      dict entry(
         string "x-id"
         variant             array of bytes "abc" + \\0
      )
   ]
   int32 -1
signal time=1795829078.348987 sender=:1.7 -> destination=(null destination) serial=40 \
path=/StatusNotifierWatcher; interface=org.kde.StatusNotifierWatcher; \
member=StatusNotifierItemRegistered
   string ":1.11/StatusNotifierItem"
method call time=1795829079.1 sender=:1.11 -> destination=org.freedesktop.Notifications \
serial=24 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; \
member=Notify
   string "tinytray"
   uint32 0
"""


def test_parse_dbus_monitor_text() -> None:
    from .harness import notification_from_message

    messages = parse_dbus_text(MONITOR_SAMPLE)
    assert [m.member for m in messages] == [
        "NameAcquired",
        "Notify",
        "StatusNotifierItemRegistered",
        "Notify",
    ]
    notes = [n for n in map(notification_from_message, messages) if n]
    assert len(notes) == 1  # the last Notify is still being written: not yet a notification
    (note,) = notes
    assert note["summary"] == 'A "quoted" title'
    assert note["body"] == 'line one\n   string "not a value"\nline three'
    assert note["action_labels"] == {"default": "Open"}
    assert note["hints"] == {
        "urgency": 1,
        "image-data": (2, True, b"\xff\x00\x10"),
        "x-id": b"abc\x00",
    }
    assert note["expire_timeout"] == -1
    assert note["sender"] == ":1.11"
    assert messages[2].args == [":1.11/StatusNotifierItem"]


# -- xfce4-panel: StatusNotifierItem + D-Bus notifications -----------------------------------------


def test_xfce_tray_icon_notification_menu_and_exit(desktop: Desktop) -> None:
    assert desktop.tray_host == "xfce"
    env = desktop.env
    assert env["QT_QPA_PLATFORM"] == "xcb" and env["DISPLAY"].startswith(":")

    app = TinyTray(desktop, "--colours", GREEN, RED, "--message-ms", "2500")
    assert app.wait_for_line("tray-available") == "tray-available True"

    # 1. showMessage() -> a Notify call on the bus, which dunst shows.
    note = desktop.wait_for_notification(lambda n: n["summary"] == "Tiny title", timeout=15)
    assert (note["app_name"], note["body"]) == ("tinytray", "tiny body")
    desktop.wait_until(
        lambda: (
            desktop.dunst_displayed() > 0
            or any(h["summary"] == "Tiny title" for h in desktop.dunst_history())
        ),
        timeout=5,
        message="dunst to show the notification",
    )
    desktop.screenshot("xfce-01-notification")  # dunst popup top right; panel: attention icon

    # 2. The icon's own pixels, once the attention icon (shown with the message) is gone.
    desktop.move_pointer(600, 600)
    area = desktop.wait_for_tray_colour(GREEN, timeout=15)
    assert area.contains(12, 16), f"first tray icon expected around (12, 16), found {area}"
    green = desktop.capture(*area)
    assert green.fraction(GREEN) > 0.9
    green.save_png(desktop.artifacts_dir / "xfce-02-icon-green-crop.png")
    desktop.screenshot("xfce-02-icon-green")

    # 3. SIGUSR1 -> the app switches to red, and so does the panel.
    app.proc.send_signal(signal.SIGUSR1)
    app.wait_for_line(f"colour {RED}")
    desktop.wait_for_tray_colour(RED, timeout=10)
    red = desktop.capture(*area)
    assert red.fraction(GREEN) < 0.05 and red.fraction(RED) > 0.9
    assert red.differing_pixels(green) >= 0.9 * area.w * area.h
    desktop.screenshot("xfce-03-icon-red")

    # 4. The exported menu, and the panel's popup of it on right-click.
    (item,) = desktop.tray_items()
    assert desktop.tray_menu_labels(item) == ["Hello tray"]
    assert desktop.popup_menus() == []
    desktop.click(*area.center, button=3)
    (menu,) = desktop.wait_until(desktop.popup_menus, timeout=10, message="a popup menu")
    app.wait_for_line("menu-about-to-show")
    geometry = desktop.window_geometry(menu)
    panel = desktop.panel_geometry()
    assert geometry.y >= panel.y + panel.h - 2 and geometry.x < 100, geometry
    assert desktop.window_class(menu)[-1] == "Wrapper-2.0"  # drawn by the panel's plugin
    menu_image = desktop.capture(*geometry)
    assert_text_lines(menu_image, 1, "xfce menu")
    menu_image.save_png(desktop.artifacts_dir / "xfce-04-menu-crop.png")
    desktop.screenshot("xfce-04-menu")
    desktop.click(*geometry.center, button=1)  # choose "Hello tray": the app hears it
    app.wait_for_line("hello-triggered")
    desktop.wait_until(lambda: not desktop.popup_menus(), timeout=5, message="menu to close")

    # 5. After it expired, dunst keeps the notification in its history.
    desktop.wait_until(
        lambda: [h for h in desktop.dunst_history() if h["summary"] == "Tiny title"],
        timeout=10,
        message="the notification in dunst's history",
    )

    # 6. SIGTERM: clean exit, icon gone from the panel, nothing left running.
    assert app.quit_with_sigterm() == 0
    assert app.lines[-1] == "bye", app.lines
    desktop.wait_until(lambda: desktop.tray_items() == [], timeout=10, message="item unregistered")
    desktop.wait_until(lambda: desktop.tray_icon_area() is None, timeout=10, message="empty panel")
    assert desktop.find_windows(pid=app.proc.pid) == []
    assert desktop.stray_processes() == []
    desktop.screenshot("xfce-05-after-quit")


# -- trayer: XEmbed tray, Qt's own balloon ---------------------------------------------------------


@pytest.mark.parametrize("desktop", ["trayer"], indirect=True)
def test_trayer_xembed_icon_window_balloon_menu_and_exit(desktop: Desktop) -> None:
    assert desktop.tray_host == "trayer"
    app = TinyTray(desktop, "--colours", BLUE, YELLOW, "--message-ms", "20000")
    assert app.wait_for_line("tray-available") == "tray-available True"
    panel = desktop.panel_geometry()

    def icon_window() -> int | None:
        for wid in desktop.find_windows(class_="^tinytray$"):
            g = desktop.window_geometry(wid)
            if panel.contains(g.x, g.y) and panel.contains(g.x + g.w - 1, g.y + g.h - 1):
                return wid
        return None

    # 1. The icon is an X window of the app's class, embedded in trayer, showing the colour.
    wid = desktop.wait_until(
        icon_window, timeout=15, message="the XEmbed icon window", ignore=(DesktopError,)
    )
    icon = desktop.window_geometry(wid)
    assert desktop.wait_until(
        lambda: desktop.capture(*icon).fraction(BLUE) > 0.5, timeout=10, message="a blue icon"
    )
    area = desktop.tray_icon_area()  # found by pixels, independently of the window
    assert area is not None, "no icon pixels in trayer"
    assert icon.contains(area.x, area.y) and icon.contains(area.x + area.w - 1, area.y + area.h - 1)
    assert desktop.capture(*area).fraction(BLUE) > 0.9

    # 2. showMessage() draws a balloon (tooltip window of the app's class), not a D-Bus Notify.
    balloon = desktop.wait_until(
        lambda: [
            w
            for w in desktop.find_windows(class_="^tinytray$")
            if "TOOLTIP" in desktop.window_types(w)
        ],
        timeout=10,
        message="Qt's balloon window",
    )[0]
    app.wait_for_line("message-sent")
    assert_text_lines(desktop.capture(*desktop.window_geometry(balloon)), 2, "balloon")
    assert desktop.notifications() == []
    desktop.screenshot("trayer-01-balloon")

    # 3. A line on stdin switches the icon to yellow.
    app.send("switch")
    app.wait_for_line(f"colour {YELLOW}")
    desktop.wait_until(
        lambda: desktop.capture(*icon).fraction(YELLOW) > 0.5, timeout=10, message="a yellow icon"
    )
    assert desktop.capture(*icon).fraction(BLUE) < 0.05
    desktop.screenshot("trayer-02-switched")

    # 4. Right-click: Qt's own QMenu window (class tinytray, type POPUP_MENU).
    desktop.click(*icon.center, button=3)
    (menu,) = desktop.wait_until(desktop.popup_menus, timeout=10, message="a popup menu")
    assert desktop.window_class(menu)[-1] == "tinytray"
    app.wait_for_line("menu-about-to-show")
    geometry = desktop.window_geometry(menu)
    assert_text_lines(desktop.capture(*geometry), 1, "trayer menu")
    desktop.screenshot("trayer-03-menu")
    desktop.click(*geometry.center, button=1)
    app.wait_for_line("hello-triggered")

    # 5. SIGTERM: clean exit, its windows gone, nothing left running.
    assert app.quit_with_sigterm() == 0
    assert app.lines[-1] == "bye", app.lines
    wait_until(
        lambda: not desktop.find_windows(class_="^tinytray$"), timeout=10, message="no windows"
    )
    desktop.wait_until(lambda: desktop.tray_icon_area() is None, timeout=10, message="empty tray")
    assert desktop.stray_processes() == []
    desktop.screenshot("trayer-04-after-quit")
