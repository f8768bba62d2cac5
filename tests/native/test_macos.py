"""macOS's own parts, live, on macOS (the CI workflow's macos-14 job): the LaunchAgent behind
start at login checked by plutil and loaded by launchd, sysctl's output, the .app bundle.
Elsewhere these skip: see tests/conftest.py."""

from __future__ import annotations

import importlib.util
import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.native.live import DIST, REPO, bundle_cli, check_json, child_listener
from trayapp import __version__
from trayapp.platforms.autostart import LAUNCH_AGENT_LABEL, LaunchAgentAutostart
from trayapp.platforms.ephemeral import read_ephemeral

pytestmark = pytest.mark.macos("launchd, plutil, sysctl and the .app bundle")
MAKE_ICONS = REPO / "packaging" / "make_icons.py"

APP = DIST / "Port Watch.app"


def tray_states() -> tuple[str, ...]:
    """The icon states the build makes template images for (packaging/make_icons.py)."""
    spec = importlib.util.spec_from_file_location("portwatch_make_icons", MAKE_ICONS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look the module up there
    spec.loader.exec_module(module)
    return tuple(module.TRAY_STATES)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


def test_launch_agent_passes_plutil_and_loads_into_launchd(tmp_path: Path) -> None:
    """The plist start at login writes, loaded for real into the user's GUI domain and taken
    out again. Its program is a harmless sleep, not the app: RunAtLoad starts it at once."""
    agent = LaunchAgentAutostart(home=tmp_path)
    agent.enable(["/bin/sleep", "30"])
    lint = run("plutil", "-lint", str(agent.path))
    assert lint.returncode == 0 and lint.stdout.strip().endswith(": OK"), lint
    domain = f"gui/{os.getuid()}"
    service = f"{domain}/{LAUNCH_AGENT_LABEL}"
    run("launchctl", "bootout", service)  # left over from an earlier, interrupted run
    loaded = run("launchctl", "bootstrap", domain, str(agent.path))
    try:
        assert loaded.returncode == 0, loaded
        shown = run("launchctl", "print", service)
        assert shown.returncode == 0, shown
        assert "/bin/sleep" in shown.stdout
    finally:
        unloaded = run("launchctl", "bootout", service)
    assert unloaded.returncode == 0, unloaded
    assert run("launchctl", "print", service).returncode != 0
    agent.disable()
    assert not agent.path.exists()


def test_sysctl_live_output_is_parsed() -> None:
    info = read_ephemeral("macos", max_age=0)
    assert info is not None, "sysctl net.inet.ip.portrange.first/last could not be read"
    first = run("sysctl", "-n", "net.inet.ip.portrange.first").stdout.strip()
    last = run("sysctl", "-n", "net.inet.ip.portrange.last").stdout.strip()
    assert (info.first, info.last) == (int(first), int(last))


def test_app_bundle_is_a_menu_bar_app_with_template_icons() -> None:
    bundle_cli()  # fails under CI=true when the app was not built
    info_path = APP / "Contents" / "Info.plist"
    assert run("plutil", "-lint", str(info_path)).returncode == 0
    with info_path.open("rb") as handle:
        info = plistlib.load(handle)
    assert info["LSUIElement"] is True
    assert info["CFBundleShortVersionString"] == __version__
    found = {p.name for p in APP.rglob("*Template*.png")}
    wanted = {f"{s}Template{x}.png" for s in tray_states() for x in ("", "@2x")}
    assert wanted <= found, sorted(wanted - found)


def test_the_built_app_runs_version_and_check(tmp_path: Path) -> None:
    exe = bundle_cli()
    done = run(str(exe), "--version")
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout
    with child_listener() as (port, pid):
        record = check_json([str(exe)], port, tmp_path / "home")
    assert [listener["pid"] for listener in record["listeners"]] == [pid]
