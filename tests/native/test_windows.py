"""Windows' own parts, live, on Windows (the CI workflow's windows-2022 job): the real winreg
behind start at login, netsh's output, the tray app on the native platform, the built app.
Elsewhere these skip: see tests/conftest.py."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.native.live import REPO, bundle_cli, check_json, child_listener
from tests.support import child_env, free_port, wait_for_log
from trayapp import __version__
from trayapp.platforms import autostart as autostart_module
from trayapp.platforms import ephemeral
from trayapp.platforms.autostart import WindowsRunAutostart, WinregRegistry
from trayapp.platforms.ephemeral import parse_netsh_excluded, read_ephemeral

pytestmark = pytest.mark.windows("the real registry, netsh and the Windows app")

TEST_ROOT = r"Software\PortWatchTests"


@pytest.fixture
def scratch_key() -> Iterator[str]:
    """A fresh key under HKCU\\Software\\PortWatchTests, removed (with the root) afterwards."""
    import winreg

    key = rf"{TEST_ROOT}\{uuid.uuid4().hex}"
    yield key
    for path in (rf"{key}\Run", rf"{key}\Approved", key, TEST_ROOT):
        with contextlib.suppress(OSError):  # absent, or the root holds another run's key
            winreg.DeleteKey(winreg.HKEY_CURRENT_USER, path)


def test_winreg_writes_reads_and_removes_a_value(scratch_key: str) -> None:
    registry = WinregRegistry()
    assert registry.read(scratch_key, "PortWatch") is None
    registry.write(scratch_key, "PortWatch", r'"C:\a b\pw.exe" tray')
    assert registry.read(scratch_key, "PortWatch") == r'"C:\a b\pw.exe" tray'
    import winreg

    with winreg.OpenKey(winreg.HKEY_CURRENT_USER, scratch_key) as key:
        assert winreg.QueryValueEx(key, "PortWatch")[1] == winreg.REG_SZ
    registry.delete(scratch_key, "PortWatch")
    assert registry.read(scratch_key, "PortWatch") is None
    registry.delete(scratch_key, "PortWatch")  # twice: still fine


def test_start_at_login_round_trip_through_the_real_registry(
    scratch_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WindowsRunAutostart as the app uses it, pointed at test keys instead of the real Run key
    (a runner is disposable, a developer's machine is not)."""
    monkeypatch.setattr(autostart_module, "RUN_KEY", rf"{scratch_key}\Run")
    monkeypatch.setattr(autostart_module, "STARTUP_APPROVED_KEY", rf"{scratch_key}\Approved")
    autostart = WindowsRunAutostart()
    command = [r"C:\Program Files\Port Watch\portwatch-tray.exe", "tray"]
    assert not autostart.is_enabled()
    autostart.enable(command)
    assert autostart.is_enabled()
    import winreg

    with winreg.OpenKey(winreg.HKEY_CURRENT_USER, rf"{scratch_key}\Run") as key:
        data, kind = winreg.QueryValueEx(key, "PortWatch")
    assert kind == winreg.REG_SZ
    assert data == subprocess.list2cmdline(command)
    autostart.disable()
    assert not autostart.is_enabled()


def test_netsh_live_output_is_parsed() -> None:
    info = read_ephemeral("windows", max_age=0)
    assert info is not None, "netsh int ipv4 show dynamicport tcp could not be read"
    assert 1025 <= info.first < info.last <= 65535
    assert info.source == "netsh int ipv4 show dynamicport tcp"
    # The exclusions too, parsed on their own: read_ephemeral() treats an unreadable table as
    # empty, which would hide a parser that no longer understands this Windows.
    text = ephemeral._run(
        [ephemeral._netsh(), "int", "ipv4", "show", "excludedportrange", "protocol=tcp"], 30
    )
    assert text is not None, "netsh int ipv4 show excludedportrange protocol=tcp failed"
    rows = parse_netsh_excluded(text)
    assert rows is not None, text  # a table, possibly empty: never "could not read"
    assert all(1 <= r.first <= r.last <= 65535 for r in rows)


def test_the_tray_app_shows_its_icon_notifies_and_quits_on_request(tmp_path: Path) -> None:
    """On the native platform (a real notification area): the icon shows, a listener starting
    on a watched port is announced through QSystemTrayIcon.showMessage, and
    `portwatch tray --quit` ends the app cleanly."""
    home = tmp_path / "home"
    port = free_port()
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.json").write_text(
        f'{{"ports": [{{"port": {port}, "label": "CI"}}], "interval": 0.5}}'
    )
    env = child_env(PORTWATCH_HOME=str(home), PYTHONPATH=str(REPO), PORTWATCH_TRAY_WAIT="20")
    app: subprocess.Popen[Any] = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--debug"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log_file = home / "log" / "portwatch.log"
    try:
        wait_for_log(app, log_file, "started, watching", 60)
        log = wait_for_log(app, log_file, "system tray", 30)
        assert "system tray available: showing the icon" in log, log
        with subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as server:
            try:
                wait_for_log(app, log_file, f"notify: {port} CI / now listening", 30)
            finally:
                server.terminate()
        asked = subprocess.run(
            [sys.executable, "-m", "trayapp", "tray", "--quit"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert asked.returncode == 0, asked.stderr
        _out, err = app.communicate(timeout=30)
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()
    assert app.returncode == 0, err
    assert "Traceback" not in err
    assert "Port Watch stopped" in log_file.read_text()


def test_the_built_app_runs_version_and_check(tmp_path: Path) -> None:
    exe = bundle_cli()
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout
    with child_listener() as (port, pid):
        record = check_json([str(exe)], port, tmp_path / "home")
    assert [listener["pid"] for listener in record["listeners"]] == [pid]
    tray = exe.with_name("portwatch-tray.exe")
    assert tray.is_file(), f"no {tray.name} beside {exe.name}"
