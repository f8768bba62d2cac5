"""What a desktop does to a tray app over weeks, on the real harness (Xvfb + D-Bus + dunst +
xfce4-panel): the panel restarted ten times and gone for a while, the notification server killed
and not activatable, the session bus pointing at nothing, the data and log folders full,
read-only and unwritable, the app stopped for 90 s.

Throughout, the app's GUI thread must answer within 1 s: a thread pings it through the
single-instance socket (the GUI thread replies). Asserted is what a user sees: the menu and the
tooltip the app exports, Notify calls on the bus and what dunst showed, icon pixels,
events.jsonl and the log after recovery, and stderr without a traceback.

PORTWATCH_TEST_TRAY_ABSENCE sets how long the tray stays away (default 15 s; the issue's minute:
PORTWATCH_TEST_TRAY_ABSENCE=60).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, require_tools
from tests.tmpfs import Tmpfs
from trayapp.platforms.instance_socket import socket_path

from .app_support import GREEN, RING, start_server
from .harness import Desktop, wait_until

REPO = Path(__file__).resolve().parents[2]
GUI_ANSWER_S = 1.0
TRAY_ABSENCE_S = float(os.environ.get("PORTWATCH_TEST_TRAY_ABSENCE", "15"))
SUSPEND_S = 90.0


class Pinger:
    """Asks the app's GUI thread for an answer every 0.2 s, and remembers the slowest one."""

    def __init__(self, app: App) -> None:
        # The app's single-instance socket, found as the app finds it: from its environment.
        self.path = socket_path(str(app.home / "config"), app.env)
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def ping(self) -> float:
        started = time.monotonic()
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.path))
            sock.sendall(b'{"version": 1, "command": "ping"}\n')
            answer = sock.recv(64)
        if not answer.endswith(b"\n"):
            raise OSError(f"no answer line: {answer!r}")
        return time.monotonic() - started

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if self._paused.is_set():
                continue
            try:
                self.latencies.append(self.ping())
            except OSError as exc:
                self.failures.append(f"{time.strftime('%T')} {exc}")

    def __enter__(self) -> Pinger:
        wait_until(lambda: self.path.exists(), 30, message="the single-instance socket")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # A scenario can be over in under a second (the XEmbed icon comes at once): keep
        # asking until there are enough answers to judge, rather than judge on two or three.
        deadline = time.monotonic() + 10
        while len(self.latencies) < 5 and not self.failures and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        self._thread.join(15)

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def check(self) -> None:
        assert len(self.latencies) >= 5, f"too few answers to judge; failed: {self.failures}"
        assert not self.failures, self.failures
        slowest = max(self.latencies)
        assert slowest < GUI_ANSWER_S, f"GUI thread took {slowest:.2f} s to answer"
        print(f"GUI answered {len(self.latencies)} pings, slowest {slowest * 1000:.0f} ms")


class App:
    def __init__(
        self, desktop: Desktop, home: Path, *, prefix: list[str] | None = None, **env: str
    ) -> None:
        self.home = home
        self.stderr_path = home.parent / f"{home.name}-stderr.txt"
        self._stderr = self.stderr_path.open("w")
        self.env = {**desktop.env, "PORTWATCH_HOME": str(home), "PYTHONPATH": str(REPO), **env}
        self.proc = desktop.spawn(
            [*(prefix or []), sys.executable, "-m", "trayapp"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def log(self) -> str:
        path = self.home / "log" / "portwatch.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def quit(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._stderr.close()

    def assert_clean_stderr(self) -> None:
        err = self.stderr()
        assert "Traceback" not in err and "Logging error" not in err, err


def write_config(home: Path, ports: dict[int, str], **settings: Any) -> None:
    folder = home / "config"
    folder.mkdir(parents=True, exist_ok=True)
    config = {"ports": [{"port": p, "label": label} for p, label in ports.items()]}
    config.update({"interval": 0.5, **settings})
    (folder / "config.json").write_text(json.dumps(config))


class Servers(list[subprocess.Popen[bytes]]):
    """The http.servers a test started; whatever still runs is stopped at its end."""

    def start(self, port: int) -> subprocess.Popen[bytes]:
        self.append(start_server(port))
        return self[-1]

    def stop_all(self) -> None:
        for server in self:
            if server.poll() is None:
                server.terminate()
                server.wait(10)


@contextlib.contextmanager
def app_watching(
    desktop: Desktop,
    home: Path,
    ports: dict[int, str],
    *,
    prefix: list[str] | None = None,
    **env: str,
) -> Iterator[tuple[App, Servers]]:
    """The app watching `ports` (number: label), and the servers the test starts for them. At
    the end the servers stop and the app quits; after a test that passed, it must have exited
    with 0 and written no traceback."""
    write_config(home, ports)
    app = App(desktop, home, prefix=prefix, **env)
    servers = Servers()
    try:
        yield app, servers
    finally:
        servers.stop_all()
        app.quit()
    app.assert_clean_stderr()
    assert app.proc.returncode == 0


def the_item(desktop: Desktop) -> str:
    [item] = wait_until(desktop.tray_items, 20, message="the app's tray item")
    return item


def menu_has(desktop: Desktop, *texts: str, timeout: float = 20) -> list[str]:
    """Wait until the exported menu has a label starting with each text; the labels."""

    def check() -> list[str] | None:
        labels = desktop.tray_menu_labels(the_item(desktop))
        ok = all(any(label.startswith(t) for label in labels) for t in texts)
        return labels if ok else None

    return wait_until(check, timeout, message=f"menu lines {texts}", ignore=(Exception,))


def notes(desktop: Desktop, since: float, words: str) -> list[dict[str, Any]]:
    """Notify calls after `since` (time.time()) whose summary or body has `words`."""
    return [
        n
        for n in desktop.notifications()
        if n["time"] >= since and (words in n["summary"] or words in n["body"])
    ]


@pytest.fixture
def server_ports() -> Iterator[list[int]]:
    yield [free_port(), free_port()]


# -- the tray host comes and goes ----------------------------------------------------------------


@pytest.mark.timeout(300)
def test_panel_restarted_ten_times_and_gone_for_a_while(
    desktop: Desktop, portwatch_home: Path, server_ports: list[int]
) -> None:
    port = server_ports[0]
    with app_watching(desktop, portwatch_home, {port: "Panel Test"}) as (app, servers):
        desktop.wait_for_tray_colour(RING, timeout=30, min_fraction=0.2)
        with Pinger(app) as pinger:
            for round_ in range(10):
                old = desktop.kill_part("xfce4-panel")
                new = desktop.start_part("xfce4-panel")
                assert new != old
                # The icon is back, registered with the new watcher, its menu live.
                desktop.wait_for_tray_colour(RING, timeout=20, min_fraction=0.2)
                menu_has(desktop, f"{port} Panel Test: free")
                assert app.alive(), f"the app died in round {round_ + 1}"
            # Gone for a while; meanwhile a service starts: the notification still comes.
            desktop.kill_part("xfce4-panel")
            gone_at = time.monotonic()
            since = time.time()
            assert not desktop.bus_has("org.kde.StatusNotifierWatcher")
            server = servers.start(port)
            desktop.wait_for_notification(
                lambda n: n["time"] >= since and "now listening" in n["body"], timeout=15
            )
            time.sleep(max(0.0, TRAY_ABSENCE_S - (time.monotonic() - gone_at)))
            assert not desktop.bus_has("org.kde.StatusNotifierWatcher")
            print(f"tray host away for {time.monotonic() - gone_at:.0f} s")
            desktop.start_part("xfce4-panel")
            desktop.wait_for_tray_colour(GREEN, timeout=20, min_fraction=0.3)
            labels = menu_has(desktop, f"{port} Panel Test: listening, python (pid {server.pid}")
            tooltip = desktop.tray_tooltip(the_item(desktop))
            assert f"{port} Panel Test: listening, python (pid {server.pid}" in tooltip
            assert labels[-1] == "Quit"
        pinger.check()
        assert app.alive()


# -- the notification server goes away -----------------------------------------------------------


@pytest.mark.timeout(240)
def test_notification_server_gone_and_not_activatable(
    portwatch_home: Path, server_ports: list[int]
) -> None:
    """dunst killed on a bus that cannot start another: the changes still show in the menu and
    tooltip, the fault is logged once, and notifications come again once dunst is back."""
    from .conftest import require_desktop_programs

    require_desktop_programs("xfce")
    first, second = server_ports
    desktop = Desktop()
    try:
        desktop.start("xfce", notify_activation=False)
        ports = {first: "First", second: "Second"}
        with app_watching(desktop, portwatch_home, ports) as (app, servers):
            desktop.wait_for_tray_colour(RING, timeout=30, min_fraction=0.2)
            with Pinger(app) as pinger:
                desktop.kill_part("dunst")
                # Not activatable: asking for the service does not bring one back.
                assert not desktop.bus_has("org.freedesktop.Notifications")
                service = "org.freedesktop.Notifications"
                path = "/org/freedesktop/Notifications"
                desktop.run(
                    ["dbus-send", "--session", f"--dest={service}", path,
                     f"{service}.GetServerInformation"],
                    check=False,
                )  # fmt: skip
                time.sleep(1)
                assert not desktop.bus_has("org.freedesktop.Notifications")

                # Two changes while nothing can show them: the menu and tooltip say them.
                servers.start(first)
                menu_has(desktop, f"{first} First: listening, python (pid {servers[0].pid}")
                servers[0].terminate()
                servers[0].wait(10)
                menu_has(desktop, f"{first} First: free")
                servers.start(second)
                menu_has(desktop, f"{second} Second: listening, python (pid {servers[1].pid}")
                tooltip = desktop.tray_tooltip(the_item(desktop))
                assert f"{second} Second: listening, python (pid {servers[1].pid}" in tooltip
                assert app.alive()
                wait_until(
                    lambda: app.log().count("notify: ") >= 3, 10, message="3 notify attempts"
                )
                failures = [line for line in app.log().splitlines() if "notifications fail" in line]
                assert len(failures) == 1, failures  # one line for the fault, not one per change

                # dunst back (started by hand, as a user would): the next change is shown.
                desktop.start_part("dunst")
                since = time.time()
                servers[1].terminate()
                servers[1].wait(10)
                note = desktop.wait_for_notification(
                    lambda n: n["time"] >= since and n["summary"] == f"{second} Second", timeout=20
                )
                assert note["body"].startswith("stopped")
                wait_until(lambda: "notifications work again" in app.log(), 10, message="recovery")
                wait_until(
                    lambda: (
                        any(h.get("summary") == f"{second} Second" for h in desktop.dunst_history())
                        or desktop.dunst_displayed() > 0
                    ),
                    10,
                    message="dunst showing it",
                )
            pinger.check()
    finally:
        desktop.stop()


@pytest.mark.timeout(180)
def test_notification_server_hung(
    desktop: Desktop, portwatch_home: Path, server_ports: list[int]
) -> None:
    """dunst stopped (SIGSTOP) for 12 s, as a hung server: Notify calls get no answer. The GUI
    must not wait for them (before: about 2 s per notification); once dunst runs again the
    next change is shown."""
    first, second = server_ports
    dunst = desktop.part_pid("dunst")
    assert dunst is not None
    ports = {first: "Hung A", second: "Hung B"}
    with app_watching(desktop, portwatch_home, ports) as (app, servers):
        desktop.wait_for_tray_colour(RING, timeout=30, min_fraction=0.2)
        with Pinger(app) as pinger:
            os.kill(dunst, signal.SIGSTOP)
            try:
                for port in (first, second):
                    servers.start(port)
                    menu_has(desktop, f"{port} Hung {'A' if port == first else 'B'}: listening")
                wait_until(lambda: app.log().count("notify: ") >= 2, 10, message="2 attempts")
                time.sleep(12)
            finally:
                os.kill(dunst, signal.SIGCONT)
            since = time.time()
            servers[0].terminate()
            servers[0].wait(10)
            desktop.wait_for_notification(
                lambda n: n["time"] >= since and n["summary"] == f"{first} Hung A", timeout=20
            )
            wait_until(lambda: "notifications work again" in app.log(), 10, message="recovery")
        pinger.check()
        failures = [line for line in app.log().splitlines() if "notifications fail" in line]
        assert len(failures) == 1, failures


# -- no session bus at all ----------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_session_bus_address_pointing_at_nothing(
    desktop: Desktop, portwatch_home: Path, tmp_path: Path, server_ports: list[int]
) -> None:
    """DBUS_SESSION_BUS_ADDRESS names a socket nobody listens on: the app starts at once, puts
    its icon in the panel the old (XEmbed) way, shows changes there, and says once why it has
    no D-Bus notifications."""
    port = server_ports[0]
    nothing = tmp_path / "no-bus-here"
    no_bus = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={nothing}"}
    with app_watching(desktop, portwatch_home, {port: "No Bus"}, **no_bus) as (app, servers):
        with Pinger(app) as pinger:
            desktop.wait_for_tray_colour(RING, timeout=30, min_fraction=0.2)
            assert desktop.tray_items() == []  # not over D-Bus: an XEmbed icon
            server = servers.start(port)
            desktop.wait_for_tray_colour(GREEN, timeout=20, min_fraction=0.3)
            wait_until(lambda: "notify: " in app.log(), 10, message="the change notified")
            server.terminate()
            server.wait(10)
            desktop.wait_for_tray_colour(RING, timeout=20, min_fraction=0.2)
        pinger.check()
        assert app.alive()
        lines = [line for line in app.log().splitlines() if "D-Bus" in line]
        assert len(lines) == 1 and "no D-Bus notifications" in lines[0], lines


# -- full, read-only and unwritable folders -----------------------------------------------------


@pytest.mark.timeout(240)
def test_full_read_only_and_unwritable_folders(
    desktop: Desktop, portwatch_home: Path, server_ports: list[int]
) -> None:
    """History on a full 16 KiB tmpfs, the log on a read-only one, then the history folder
    `chmod a-w`: told once per episode (menu, tooltip, one notification), no traceback, and
    every change in events.jsonl, in order, after recovery."""
    require_tools("setpriv")
    port = server_ports[0]
    label = "Disk Test"
    data_disk = Tmpfs(portwatch_home / "data", size_kib=16)
    log_disk = Tmpfs(portwatch_home / "log", size_kib=16)
    # As root the app could write a chmod a-w folder anyway: run it without that power.
    no_override = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    history_line = f"History cannot be written: no space left on {data_disk.path}"
    log_line = f"Log file cannot be written: {log_disk.path} is read-only"
    try:
        with app_watching(desktop, portwatch_home, {port: label}, prefix=no_override) as (
            app,
            servers,
        ):
            desktop.wait_for_tray_colour(RING, timeout=30, min_fraction=0.2)
            with Pinger(app) as pinger:
                since = time.time()
                # The start's "watch-began" line sits in a tmpfs page with room to spare, where
                # the next lines would still fit: remove it, so the next line needs a block, and
                # none is.
                started_log = portwatch_home / "data" / "events.jsonl"
                wait_until(started_log.exists, 10, message="the watch-began record")
                started_log.unlink()
                data_disk.fill()
                log_disk.read_only()
                for _ in range(2):  # start, stop, start, stop while nothing can be written
                    servers.start(port)
                    menu_has(desktop, f"{port} {label}: listening")
                    servers[-1].terminate()
                    servers[-1].wait(10)
                    menu_has(desktop, f"{port} {label}: free")
                menu_has(desktop, history_line, log_line)
                tooltip = desktop.tray_tooltip(the_item(desktop))
                assert history_line in tooltip and log_line in tooltip, tooltip
                wait_until(lambda: notes(desktop, since, "cannot write its"), 10, message="told")
                time.sleep(3)  # would a second one come?
                told = notes(desktop, since, "cannot write its")
                assert len(told) == 1, told
                assert told[0]["summary"] in (
                    "Port Watch cannot write its history",
                    "Port Watch cannot write its log file",
                )
                assert app.alive()

                data_disk.free()
                log_disk.read_only(False)
                wait_until(
                    lambda: not any("cannot be written" in x for x in menu_has(desktop, "Quit")),
                    20,
                    message="the menu lines gone",
                )
                events = portwatch_home / "data" / "events.jsonl"
                wait_until(events.exists, 10, message="events.jsonl written")
                kinds = [json.loads(x)["event"] for x in events.read_text().splitlines()]
                assert kinds == ["started", "stopped", "started", "stopped"]
                wait_until(lambda: app.log().count("notify: ") >= 2, 15, message="log lines back")
                log_text = app.log()
                assert (
                    "cannot write the history" in log_text and "history written again" in log_text
                )

                # The history folder made unwritable: a new episode, told once again.
                since = time.time()
                events.chmod(0o444)
                (portwatch_home / "data").chmod(0o555)
                servers.start(port)
                no_write = f"History cannot be written: no permission to write {events}"
                menu_has(desktop, no_write, f"{port} {label}: listening")
                wait_until(lambda: notes(desktop, since, "cannot write its"), 10, message="told")
                (portwatch_home / "data").chmod(0o755)
                events.chmod(0o644)
                wait_until(
                    lambda: not any("cannot be written" in x for x in menu_has(desktop, "Quit")),
                    20,
                    message="the menu line gone",
                )
                kinds = [json.loads(x)["event"] for x in events.read_text().splitlines()]
                assert kinds == ["started", "stopped", "started", "stopped", "started"]
                assert len(notes(desktop, since, "cannot write its")) == 1
            pinger.check()
    finally:
        (portwatch_home / "data").chmod(0o755)
        data_disk.unmount()
        log_disk.unmount()
    err = app.stderr()
    assert err.count("cannot write the log file") == 1, err


# -- suspend and resume ------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_stopped_for_90_seconds_catches_up_once(
    desktop: Desktop, portwatch_home: Path, server_ports: list[int]
) -> None:
    """SIGSTOP for 90 s while a service starts, stops and starts again (a new pid); after
    SIGCONT: one catch-up poll, the right state, one notification, not a burst."""
    port = server_ports[0]
    with app_watching(desktop, portwatch_home, {port: "Sleeper"}) as (app, servers):
        desktop.wait_for_tray_colour(RING, timeout=30, min_fraction=0.2)
        with Pinger(app) as pinger:
            pinger.pause()
            time.sleep(0.5)  # no ping in flight when it stops
            since = time.time()
            app.proc.send_signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            servers.start(port)
            servers[0].terminate()
            servers[0].wait(10)
            servers.start(port)
            time.sleep(max(0.0, SUSPEND_S - (time.monotonic() - stopped_at)))
            app.proc.send_signal(signal.SIGCONT)
            resumed = time.monotonic()
            note = desktop.wait_for_notification(
                lambda n: n["time"] >= since and n["summary"] == f"{port} Sleeper", timeout=15
            )
            shown_after = time.monotonic() - resumed
            pinger.resume()
            assert note["body"].startswith(f"now listening: python (pid {servers[1].pid}")
            desktop.wait_for_tray_colour(GREEN, timeout=20, min_fraction=0.3)
            menu_has(desktop, f"{port} Sleeper: listening, python (pid {servers[1].pid}")
            time.sleep(5)  # anything stale still to come?
        pinger.check()
        mine = [n for n in desktop.notifications() if n["time"] >= since and not n["replaces_id"]]
        assert [n["body"].split(" (")[0] for n in mine] == ["now listening: python"], mine
        catch_up = [line for line in app.log().splitlines() if "catch-up poll" in line]
        assert len(catch_up) == 1, catch_up
        print(f"after {SUSPEND_S:.0f} s stopped: notified {shown_after:.2f} s after SIGCONT")
