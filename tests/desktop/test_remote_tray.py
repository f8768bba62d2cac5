"""A Bluesky Queue Server on another machine, in the tray on the real desktop (Xvfb + D-Bus +
dunst + xfce4-panel): the "other machine" is a network namespace (tests/netns.py) running the
real Redis + RE Manager + bluesky-httpserver bound to its own address. Asserted on what a person
sees: the menu the panel draws, the icon's pixels, the Notify calls. Needs root for the
namespace (skipped without, a failure under CI=true). Screenshots:
test-artifacts/desktop/remote-*.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bluesky_stack import API_KEY, BlueskyStack, missing
from tests.netns import other_machine
from tests.support import missing_part

from .app_support import RING
from .harness import Desktop, wait_until
from .test_bluesky_tray import GREEN, TrayApp

LABEL = "Queue Server (beamline)"


def write_config(home: Path, target: str) -> None:
    folder = home / "config"
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        "target": target,
        "label": LABEL,
        "api_key": API_KEY,
        "allow_plain_key": True,  # agreed in Settings: the namespace's link is plain http
        "interval": 2,
    }
    (folder / "config.json").write_text(json.dumps({"ports": [], "remotes": [entry]}))


def menu_line(desktop: Desktop, text: str, timeout: float = 40) -> str:
    def found() -> str | None:
        [item] = desktop.tray_items()
        labels = desktop.tray_menu_labels(item)
        return next((label for label in labels if text in label), None)

    line = wait_until(found, timeout, message=f"a menu line saying {text!r}", ignore=(Exception,))
    return str(line)


@pytest.mark.timeout(300)
def test_a_remote_bluesky_server_in_the_tray(desktop: Desktop, tmp_path: Path) -> None:
    reason = missing()
    if reason:
        missing_part(reason)
    with other_machine() as machine:
        address = machine.address
        target = f"{address}:60610"
        with BlueskyStack(http_port=60610, host=address, netns=machine.name) as stack:
            stack.wait_status("the RE Manager to be idle", lambda s: s["manager_state"] == "idle")
            home = tmp_path / "home"
            write_config(home, target)
            app = TrayApp(desktop, home, {})
            try:
                line = menu_line(desktop, "RE Manager idle")
                assert line.startswith(f"{target} {LABEL}: listening on {address} [RE Manager"), (
                    line
                )
                desktop.wait_for_tray_colour(GREEN, timeout=20, min_fraction=0.3)
                desktop.wait_for_notification(
                    lambda n: (
                        n["summary"] == f"{target} {LABEL}"
                        and n["body"] == f"now listening on {address}"
                    ),
                    timeout=10,
                )
                desktop.close_notifications()  # the README's picture: the menu alone
                area = desktop.wait_for_tray_icon()
                desktop.click(*area.center, button=3)
                wait_until(lambda: desktop.popup_menus(), 10, message="the context menu")
                desktop.screenshot("remote-1-menu")
                desktop.key("Escape")
                desktop.run(["xdotool", "mousemove", "500", "400"])

                # The other machine stops answering (a firewall that drops): said in words,
                # in the menu and a notification, and the icon turns grey.
                machine.black_hole()
                note = desktop.wait_for_notification(
                    lambda n: target in n["summary"] and "no answer in 2 s" in n["body"],
                    timeout=30,
                )
                assert note["summary"] == f"{target} {LABEL}"
                assert note["body"] == "down: no answer in 2 s: host down or a firewall drops it"
                line = menu_line(desktop, "no answer in 2 s")
                assert line == (
                    f"{target} {LABEL}: no answer in 2 s: host down or a firewall drops it"
                )
                desktop.close_notifications()
                desktop.wait_for_tray_colour(RING, timeout=20, min_fraction=0.1)
                desktop.screenshot("remote-2-unreachable")

                machine.open_again()
                menu_line(desktop, "RE Manager idle")
                desktop.wait_for_tray_colour(GREEN, timeout=20, min_fraction=0.3)
                err = app.quit()
                assert "Logging error" not in err
            finally:
                if app.proc.poll() is None:
                    app.proc.kill()
                    app.proc.communicate()
            kinds = [(e["event"], e.get("host")) for e in app.events()]
            assert ("started", target) in kinds and ("stopped", target) in kinds
            for name in ("data/events.jsonl", "log/portwatch.log"):
                assert API_KEY not in (home / name).read_text()
