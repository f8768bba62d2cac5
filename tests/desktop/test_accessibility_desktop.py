"""The windows as a screen reader and a keyboard-only user meet them, on the real desktop
(Xvfb + D-Bus + dunst + xfce4-panel) with the real app: its accessibility tree read through
AT-SPI (Debian's at-spi2-core and python3-pyatspi, in a /usr/bin/python3 child process), the
port window and Settings driven by keys alone (xdotool), windows opened from the tray's menu
the way the panel does it (dbusmenu Event "clicked").
Screenshots: test-artifacts/desktop/a11y-*.png (the README's History and port window).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import missing_part
from trayapp.core.events import Event
from trayapp.core.history import EventLog
from trayapp.core.model import Port

from .app_support import App, free_port, start_server, write_config
from .harness import Desktop, wait_until
from .wayland_harness import WaylandDesktop

HERE = Path(__file__).resolve().parent
READER = HERE / "atspi_reader.py"
SYSTEM_PYTHON = "/usr/bin/python3"
# Roles a person operates: each must have a name a screen reader can say.
CONTROL_ROLES = {
    "push button",
    "check box",
    "combo box",
    "table",
    "tree table",
    "list",
    "text",
    "spin button",
    "password text",
    "tree",
}


def require_atspi() -> None:
    checker = "import pyatspi"
    if (
        shutil.which("at-spi-bus-launcher") is None
        and not Path("/usr/libexec/at-spi-bus-launcher").exists()
    ):
        missing_part("AT-SPI is not installed (Debian package at-spi2-core)")
    if (
        not Path(SYSTEM_PYTHON).exists()
        or subprocess.run([SYSTEM_PYTHON, "-c", checker], capture_output=True).returncode != 0
    ):
        missing_part("pyatspi is not installed (Debian package python3-pyatspi)")


class Reader:
    """Asks the AT-SPI registry about the app, through the reader script."""

    def __init__(self, desktop: Desktop, pid: int) -> None:
        self.desktop = desktop
        self.pid = pid

    def _run(self, command: str) -> Any:
        done = subprocess.run(
            [SYSTEM_PYTHON, str(READER), command, str(self.pid)],
            env=self.desktop._tool_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def tree(self) -> list[dict[str, Any]]:
        nodes = self._run("tree")
        return nodes or []

    def focused(self) -> dict[str, Any] | None:
        focused: dict[str, Any] | None = self._run("focused")
        return focused

    def window(self, title: str) -> list[dict[str, Any]]:
        """The nodes of the top-level window named `title`."""
        nodes = self.tree()
        tops = [n["path"] for n in nodes if "/" not in n["path"] and n["name"] == title]
        if not tops:
            return []
        return [n for n in nodes if n["path"] == tops[0] or n["path"].startswith(tops[0] + "/")]


def click_menu(desktop: Desktop, label_start: str) -> None:
    [item] = wait_until(desktop.tray_items, 20, message="the app's tray item")
    desktop.click_tray_menu(item, label_start)


def unnamed_controls(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        n
        for n in nodes
        if n["role"] in CONTROL_ROLES
        and n["showing"]
        and not n["name"].strip()
        # A combo box's and a table's inner list/cells are parts, named by their whole.
        and not (n["role"] == "list" and n["path"].count("/") > 1)
    ]


@pytest.fixture
def running(desktop: Desktop, app_home: Path) -> Iterator[tuple[App, int]]:
    with running_app(desktop, app_home) as started:
        yield started


@contextlib.contextmanager
def running_app(desktop: Desktop, app_home: Path) -> Iterator[tuple[App, int]]:
    """The app with its accessibility bridge on, watching a real server with an hour of
    history, on an X11 or a Wayland desktop; its menu made."""
    require_atspi()
    port = free_port()
    write_config(app_home, port, "Test API")
    # An hour of history before this run, so the strips have something to show.
    now = time.time()
    log = EventLog(app_home / "data" / "events.jsonl")
    p = Port(port)
    log.append(
        [
            Event(
                now - 3600,
                p,
                "watch-began",
                listening=True,
                pid=4242,
                name="uvicorn",
                code="start",
                watcher="tray",
            ),
            Event(now - 2400, p, "unhealthy", code="http-5xx", detail="HTTP 503"),
            Event(now - 2100, p, "healthy", code="healthy"),
            Event(now - 1500, p, "stopped", pid=4242, name="uvicorn"),
            Event(now - 1200, p, "watch-ended", code="quit", watcher="tray"),
        ]
    )
    server = start_server(port)
    app = App(desktop, app_home, env={"QT_LINUX_ACCESSIBILITY_ALWAYS_ON": "1"})
    try:
        [item] = wait_until(desktop.tray_items, 30, message="the app's tray item")
        # The menu is made again as the first scan and health check come in; a click sent
        # meanwhile names an item that is gone. Wait until it has the port's line and holds.
        seen: list[list[str]] = []

        def settled() -> bool:
            seen.append(desktop.tray_menu_labels(item))
            return (
                len(seen) > 1
                and seen[-1] == seen[-2]
                and any(label.startswith(str(port)) for label in seen[-1])
            )

        wait_until(settled, 30, interval=1.0, message="the tray menu made")
        yield app, port
    finally:
        server.terminate()
        server.wait(10)
        if app.proc.poll() is None:
            app.proc.send_signal(signal.SIGTERM)
        _code, err = app.finish()
        assert "Traceback" not in err, err


def focus(desktop: Desktop, title: str) -> int:
    [wid] = wait_until(lambda: desktop.find_windows(name=title), 15, message=title)
    if not isinstance(desktop, WaylandDesktop):  # sway gives a new window the focus itself
        desktop.run(["xdotool", "windowfocus", "--sync", str(wid)], check=False)
    return wid


def _focused_cell(reader: Reader, table_name: str) -> str | None:
    """The current cell's words: Qt keeps the focused state on a table's current cell."""
    nodes = reader.tree()
    tables = [n["path"] for n in nodes if n["role"] == "table" and n["name"] == table_name]
    if not tables:
        return None
    cells = [
        n["name"]
        for n in nodes
        if n["role"] == "table cell" and n["focused"] and n["path"].startswith(tables[0] + "/")
    ]
    return cells[0] if cells else None


def _tab_round(desktop: Desktop, reader: Reader, limit: int = 40) -> list[str]:
    """Tab until the focus comes back where it began: what it passed, as role:name."""
    seen: list[str] = []
    for _ in range(limit):
        desktop.key("Tab")
        focused = wait_until(reader.focused, 5, message="something focused")
        seen.append(f"{focused['role']}:{focused['name']}")
        if len(seen) > 3 and seen[-1] == seen[0]:
            break
    assert seen[-1] == seen[0], f"Tab did not come round: {seen}"
    return seen


def open_history(desktop: Desktop, reader: Reader) -> list[dict[str, Any]]:
    """From the tray's menu; its strips (once the log is read) as AT-SPI sees them."""
    click_menu(desktop, "History...")
    focus(desktop, "^Port Watch History$")
    strips: list[dict[str, Any]] = wait_until(
        lambda: [
            n for n in reader.window("Port Watch History") if n["name"].startswith("Timeline of")
        ],
        20,
        message="the History window's strips through AT-SPI",
    )
    return strips


def history_tree(desktop: Desktop, reader: Reader, port: int) -> None:
    """The History window opened from the menu: every control named; the port's strip says
    its state and totals in words."""
    [strip] = open_history(desktop, reader)
    nodes = reader.window("Port Watch History")
    assert unnamed_controls(nodes) == []
    assert strip["name"] == f"Timeline of {port} Test API"
    assert f"{port} Test API: now up" in strip["description"]
    assert "not watched" in strip["description"] and "% of the watched time" in strip["description"]
    names = {n["name"] for n in nodes}
    assert {"Periods", "Refresh", "Export CSV...", "Export JSON...", "Close"} <= names


def port_window_tree(desktop: Desktop, reader: Reader, port: int) -> None:
    """The port's window opened from its menu line: every control named, who can reach the
    listener in words, its strip."""
    click_menu(desktop, f"{port} Test API")
    title = f"What's on port {port}/tcp"
    focus(desktop, title)
    nodes = wait_until(
        lambda: [n for n in reader.tree() if n["name"] == "Listeners"] and reader.tree(),
        20,
        message="the port window through AT-SPI",
    )
    window = [n for n in nodes if n["path"].split("/")[0] == _top(nodes, title)]
    assert unnamed_controls(window) == []
    texts = " ".join(n["name"] for n in window)
    assert "127.0.0.1: reachable only from this machine (loopback)." in texts
    assert any(n["name"] == f"Timeline of {port} Test API" for n in window)


def choose_last_hour(desktop: Desktop, reader: Reader, mnemonic: str, shot: str) -> None:
    """The span chooser reached by its mnemonic, Home picks "Last hour"; then a screenshot."""
    desktop.key(mnemonic)
    desktop.key("Home")
    wait_until(
        lambda: any(n["name"] == "Last hour" and n["role"] == "combo box" for n in reader.tree()),
        10,
        message=f"the last hour chosen after {mnemonic}",
    )
    time.sleep(0.5)
    desktop.screenshot(shot)


@pytest.mark.timeout(240)
def test_windows_through_atspi_and_by_keyboard(
    desktop: Desktop, running: tuple[App, int], app_home: Path
) -> None:
    app, port = running
    reader = Reader(desktop, app.proc.pid)

    # 1. History: every control named; a strip per port that says its state in words.
    history_tree(desktop, reader, port)
    choose_last_hour(desktop, reader, "alt+s", "a11y-history")  # Show: by keyboard
    desktop.key("Escape")
    wait_until(lambda: not desktop.find_windows(name="^Port Watch History$"), 10, message="closed")

    # 2. The port window: named controls, exposure and health in words.
    title = f"What's on port {port}/tcp"
    port_window_tree(desktop, reader, port)
    # History: the group's mnemonic lands in its span chooser.
    choose_last_hour(desktop, reader, "alt+h", "a11y-port-window")

    # 3. Keyboard only: Tab walks every control and comes back; Alt+W stops watching, again
    # starts; Escape closes.
    seen = _tab_round(desktop, reader)
    chain = " | ".join(seen)
    for wanted in (
        "combo box:",
        f"filler:Timeline of {port} Test API",
        "tree:Listeners",
        "push button:Copy details",
        "push button:Check health",
        "push button:Terminate...",
        "push button:Stop watching",
        "push button:Close",
    ):
        assert wanted in chain, (wanted, seen)
    desktop.key("alt+w")
    wait_until(
        lambda: str(port) not in (app_home / "config" / "config.json").read_text(),
        10,
        message="Alt+W stopped watching (saved)",
    )
    desktop.key("alt+w")
    wait_until(
        lambda: str(port) in (app_home / "config" / "config.json").read_text(),
        10,
        message="Alt+W watched again",
    )
    desktop.key("Escape")
    wait_until(lambda: not desktop.find_windows(name=title), 10, message="port window closed")

    # 4. Settings by keyboard: Alt+A adds a row, typing fills the port, Return ends the edit,
    # Return again saves (Save is the default button); Escape leaves a second one unchanged.
    click_menu(desktop, "Settings...")
    focus(desktop, "^Port Watch Settings$")
    nodes = wait_until(
        lambda: (
            [n for n in reader.tree() if n["name"] == "Watched ports" and n["role"] == "table"]
            and reader.tree()
        ),
        20,
        message="Settings through AT-SPI",
    )
    settings = [n for n in nodes if n["path"].split("/")[0] == _top(nodes, "Port Watch Settings")]
    assert unnamed_controls(settings) == []
    desktop.key("alt+a")
    # A mnemonic "clicks" the button animated, about 0.1 s later: a person sees the new row
    # appear before typing.
    time.sleep(0.6)
    desktop.run(["xdotool", "type", "--delay", "30", "8123"])
    desktop.key("Return")
    desktop.screenshot("a11y-settings-typed")
    desktop.key("Return")
    wait_until(
        lambda: not desktop.find_windows(name="^Port Watch Settings$"), 10, message="saved, closed"
    )
    saved = json.loads((app_home / "config" / "config.json").read_text())
    assert [entry["port"] for entry in saved["ports"]] == [port, 8123]
    wait_until(
        lambda: any(
            label.startswith("8123") for label in desktop.tray_menu_labels(desktop.tray_items()[0])
        ),
        10,
        message="the new port in the menu",
    )
    # Arrow keys in the table: Alt+P focuses it, Down selects the new row, Alt+R removes it,
    # Return saves.
    click_menu(desktop, "Settings...")
    focus(desktop, "^Port Watch Settings$")
    desktop.key("alt+p")  # the table, through its label's mnemonic
    table = wait_until(reader.focused, 5, message="the table focused")
    assert (table["role"], table["name"]) == ("table", "Watched ports"), table
    desktop.key("Down")
    desktop.key("alt+r")
    time.sleep(0.6)  # the animated click
    desktop.key("Return")
    wait_until(lambda: not desktop.find_windows(name="^Port Watch Settings$"), 10, message="saved")
    config = json.loads((app_home / "config" / "config.json").read_text())
    assert [entry["port"] for entry in config["ports"]] == [port]
    # Escape cancels: nothing changes.
    click_menu(desktop, "Settings...")
    focus(desktop, "^Port Watch Settings$")
    desktop.key("alt+a")
    time.sleep(0.6)
    desktop.run(["xdotool", "type", "--delay", "30", "9999"])
    desktop.key("Escape")  # ends the cell's edit
    desktop.key("Escape")  # cancels the dialog
    wait_until(
        lambda: not desktop.find_windows(name="^Port Watch Settings$"), 10, message="cancelled"
    )
    assert json.loads((app_home / "config" / "config.json").read_text()) == config


def _top(nodes: list[dict[str, Any]], title: str) -> str:
    for node in nodes:
        if "/" not in node["path"] and node["name"].startswith(title):
            return str(node["path"])
    raise AssertionError(f"no window {title!r} in the accessibility tree")


@pytest.mark.timeout(240)
def test_history_and_the_port_dialogs_by_keyboard(
    desktop: Desktop, running: tuple[App, int], app_home: Path
) -> None:
    app, port = running
    reader = Reader(desktop, app.proc.pid)
    name = f"{port} Test API"

    # 1. History: Tab reaches every control and comes round; arrow keys walk a strip and the
    # table's rows; Escape closes.
    assert [n["name"] for n in open_history(desktop, reader)] == [f"Timeline of {name}"]
    seen = _tab_round(desktop, reader)
    chain = " | ".join(seen)
    # Every control once, top to bottom, and nothing unnamed in between.
    cycle = seen[:-1]
    start = cycle.index("combo box:All ports")  # a combo box is called by its current choice
    assert cycle[start:] + cycle[:start] == [
        "combo box:All ports",
        "combo box:Last day",
        "push button:Refresh",
        f"filler:Timeline of {name}",
        "table:Periods",
        "push button:Export CSV...",
        "push button:Export JSON...",
        "push button:Close",
    ], chain
    for _ in range(len(chain.split(" | "))):
        if wait_until(reader.focused, 5, message="focus")["name"] == f"Timeline of {name}":
            break
        desktop.key("Tab")
    desktop.key("Home")
    first = wait_until(reader.focused, 5, message="the strip")["description"]
    desktop.key("End")
    last = wait_until(reader.focused, 5, message="the strip")["description"]
    # The oldest stretch is before any record; the newest is this run's watch, with its owner.
    assert first.startswith("not watched from "), first
    assert last.startswith("up from ") and " to now " in last, last
    desktop.key("alt+i")  # Per&iods: the table, through its label's mnemonic
    table = wait_until(reader.focused, 5, message="the table focused")
    assert (table["role"], table["name"]) == ("table", "Periods"), table
    desktop.key("Home")
    top = wait_until(lambda: _focused_cell(reader, "Periods"), 5, message="a current cell")
    desktop.key("Down")
    below = wait_until(
        lambda: (cell := _focused_cell(reader, "Periods")) != top and cell,
        5,
        message="Down moved to the next row",
    )
    # Newest first: the row below began earlier.
    assert below < top, (top, below)
    desktop.key("Escape")
    wait_until(lambda: not desktop.find_windows(name="^Port Watch History$"), 10, message="closed")

    # 2. Check a port: the dialog's field is named, typing a port and Return opens its window;
    # a wrong port says what is wrong and what is allowed, and Return dismisses that.
    click_menu(desktop, "Check a port...")
    focus(desktop, "^Check a port$")
    dialog = wait_until(lambda: reader.window("Check a port"), 15, message="the dialog")
    assert unnamed_controls(dialog) == [], dialog
    field = wait_until(reader.focused, 5, message="the field focused")
    assert field["role"] == "text" and "Port" in field["name"], field
    desktop.run(["xdotool", "type", "--delay", "30", str(port)])
    desktop.key("Return")
    title = f"What's on port {port}/tcp"
    focus(desktop, title)
    desktop.key("Escape")
    wait_until(lambda: not desktop.find_windows(name=title), 10, message="port window closed")
    click_menu(desktop, "Check a port...")
    focus(desktop, "^Check a port$")
    desktop.run(["xdotool", "type", "--delay", "30", "70000"])
    desktop.key("Return")
    said = wait_until(
        lambda: [
            n["name"]
            for n in reader.window("Check a port")
            if "70000" in n["name"] and n["role"] == "label"
        ],
        10,
        message="the error, in words",
    )
    assert "1" in said[0] and "65535" in said[0], said
    desktop.key("Return")
    wait_until(lambda: not desktop.find_windows(name="^Check a port$"), 10, message="dismissed")

    # 3. Watch a port: typed and Return saves it; Escape leaves the settings as they were.
    config = app_home / "config" / "config.json"
    click_menu(desktop, "Watch a port...")
    focus(desktop, "^Watch a port$")
    desktop.run(["xdotool", "type", "--delay", "30", "8124"])
    desktop.key("Return")
    wait_until(
        lambda: 8124 in [entry["port"] for entry in json.loads(config.read_text())["ports"]],
        10,
        message="8124 watched (saved)",
    )
    before = config.read_text()
    click_menu(desktop, "Watch a port...")
    focus(desktop, "^Watch a port$")
    desktop.run(["xdotool", "type", "--delay", "30", "8125"])
    desktop.key("Escape")
    wait_until(lambda: not desktop.find_windows(name="^Watch a port$"), 10, message="cancelled")
    time.sleep(0.5)
    assert config.read_text() == before


@pytest.mark.timeout(240)
def test_the_tree_on_wayland(wayland: WaylandDesktop, app_home: Path) -> None:
    """AT-SPI is D-Bus, not X11: the same tree from the app on Qt's Wayland platform (sway),
    read over the session's bus."""
    with running_app(wayland, app_home) as (app, port):
        reader = Reader(wayland, app.proc.pid)
        history_tree(wayland, reader, port)
        port_window_tree(wayland, reader, port)
