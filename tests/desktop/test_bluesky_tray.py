"""The tray against the real Bluesky Queue Server (Redis + RE Manager + bluesky-httpserver, all
on loopback, started and stopped by pid), on the real desktop (Xvfb + D-Bus + dunst +
xfce4-panel), asserted on what a person sees: the menu the panel draws from the app's
dbusmenu, the tooltip, the Notify calls, the icon's pixels.

The key comes the way the Bluesky tools take it: QSERVER_HTTP_SERVER_API_KEY in the
environment, nothing in Settings.
Screenshots: test-artifacts/desktop/bluesky-*.png.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bluesky_stack import API_KEY, BlueskyStack

from .app_support import GREEN
from .harness import Desktop, wait_until

ORANGE = "#ea580c"  # resources/icons/unhealthy.svg
REPO = Path(__file__).resolve().parents[2]
HEALTH_INTERVAL = 2.0
LABEL = "Queue Server"


class TrayApp:
    def __init__(self, desktop: Desktop, home: Path, extra_env: dict[str, str]) -> None:
        env = {**desktop.env, "PORTWATCH_HOME": str(home), "PYTHONPATH": str(REPO), **extra_env}
        self.home = home
        self.proc = desktop.spawn(
            [sys.executable, "-m", "trayapp", "--debug"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def quit(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        assert self.proc.returncode == 0, err
        assert "Traceback" not in err, err
        return str(err)

    def events(self) -> list[dict[str, Any]]:
        path = self.home / "data" / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_config(home: Path, port: int) -> None:
    folder = home / "config"
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "ports": [{"port": port, "label": LABEL, "health_interval": HEALTH_INTERVAL}],
        "interval": 0.5,
    }
    (folder / "config.json").write_text(json.dumps(config))


def port_line(desktop: Desktop) -> str:
    [item] = wait_until(desktop.tray_items, 10, message="the app's tray item")
    return desktop.tray_menu_labels(item)[0]


def wait_line(desktop: Desktop, text: str, timeout: float = 30) -> str:
    found = wait_until(
        lambda: line if text in (line := port_line(desktop)) else None,
        timeout,
        message=f"the menu line to say {text!r}",
        ignore=(Exception,),
    )
    return str(found)


def ours(port: int) -> Any:
    return lambda n: str(port) in n["summary"]


def notes_after(desktop: Desktop, port: int, count: int) -> list[dict[str, Any]]:
    return [n for n in desktop.notifications() if str(port) in n["summary"]][count:]


@pytest.mark.timeout(420)
def test_the_queue_as_its_users_see_it(
    desktop: Desktop, bluesky_stack: BlueskyStack, tmp_path: Path
) -> None:
    stack = bluesky_stack
    port = stack.http_port
    home = tmp_path / "home"
    write_config(home, port)
    key_env = {"QSERVER_HTTP_SERVER_API_KEY": API_KEY}
    app = TrayApp(desktop, home, key_env)
    try:
        # Started while the server is already up: the health is in the menu at once (no
        # change of the port was needed), from the key in the environment.
        line = wait_line(desktop, "RE Manager idle")
        assert line.startswith(f"{port} {LABEL}: listening, start-bluesky-h"), line
        assert "environment closed" in line
        desktop.wait_for_tray_colour(GREEN, timeout=20, min_fraction=0.3)

        # A count plan running.
        stack.open_environment()
        stack.add_plan()
        stack.add_plan()
        stack.start_queue()
        line = wait_line(desktop, "RE Manager executing queue, 1 queued")
        desktop.screenshot("bluesky-1-running")

        # Pause: a notification, and the menu says so.
        before = len(notes_after(desktop, port, 0))
        stack.pause()
        note = desktop.wait_for_notification(
            lambda n: ours(port)(n) and "the run is paused" in n["body"], timeout=15
        )
        assert note["summary"] == f"{port} {LABEL}"
        wait_line(desktop, "RE Manager paused")

        # Abort: the plan is named with its exit status; the aborted item goes back to the
        # queue, so the queue stopped with items left.
        stack.abort()
        note = desktop.wait_for_notification(
            lambda n: ours(port)(n) and "aborted" in n["body"], timeout=15
        )
        assert "plan 'count' aborted" in note["body"], note
        desktop.wait_for_notification(
            lambda n: ours(port)(n) and "the queue stopped with 2 items left" in n["body"],
            timeout=15,
        )
        line = wait_line(desktop, "RE Manager idle, 2 queued")
        # The menu as a person sees it, for the README.
        area = desktop.wait_for_tray_icon()
        desktop.click(*area.center, button=3)
        wait_until(lambda: desktop.popup_menus(), 10, message="the context menu")
        desktop.screenshot("bluesky-2-menu")
        desktop.key("Escape")
        # Away from the icon: the panel draws a hover frame around it otherwise.
        desktop.run(["xdotool", "mousemove", "500", "400"])

        # The RE Manager dies; the HTTP server stays and answers 408: unhealthy icon and a
        # notification within one health interval plus 5 s.
        count = len(notes_after(desktop, port, 0))
        stack.kill_manager()
        killed = time.monotonic()
        note = desktop.wait_for_notification(
            lambda n: ours(port)(n) and "RE Manager unreachable" in n["body"],
            timeout=HEALTH_INTERVAL + 5 + 3,  # + the server's own 2 s answer and one poll
        )
        took = time.monotonic() - killed
        assert note["body"].startswith("unhealthy:"), note
        # The diamond covers less of its square than a disc does.
        desktop.screenshot("bluesky-3-unreachable")
        desktop.close_notifications()
        area = desktop.wait_for_tray_colour(ORANGE, timeout=10, min_fraction=0.1)
        assert desktop.capture(*area).fraction(GREEN) < 0.02
        assert "RE Manager unreachable" in port_line(desktop)

        # It comes back: healthy again.
        stack.start_manager()
        desktop.wait_for_notification(
            lambda n: ours(port)(n) and n["body"].startswith("healthy again"), timeout=60
        )
        desktop.close_notifications()
        desktop.wait_for_tray_colour(GREEN, timeout=20, min_fraction=0.3)
        wait_line(desktop, "RE Manager idle")
        seen = len(notes_after(desktop, port, 0))
        assert seen > count >= before
        err = app.quit()
        assert "Logging error" not in err

        # The events log has the health changes and the news, as events of their own.
        kinds = [(e["event"], e.get("code")) for e in app.events()]
        assert ("service", "paused") in kinds
        assert ("service", "plan-failed") in kinds
        assert ("unhealthy", "manager-unreachable") in kinds
        assert ("healthy", "ok") in kinds
        assert API_KEY not in (home / "data" / "events.jsonl").read_text()

        # Restarted: the same state is not news again.
        app = TrayApp(desktop, home, key_env)
        wait_line(desktop, "RE Manager idle")
        time.sleep(3 * HEALTH_INTERVAL)  # three more checks
        assert notes_after(desktop, port, seen) == []
        app.quit()
    finally:
        if app.proc.poll() is None:
            app.proc.kill()
        _out, err = app.proc.communicate()
        print(f"app exit {app.proc.returncode}; stderr tail: {str(err)[-3000:]}")
    log = (home / "log" / "portwatch.log").read_text()
    assert API_KEY not in log
    print(f"unhealthy notification {took:.1f} s after the RE Manager was killed")
