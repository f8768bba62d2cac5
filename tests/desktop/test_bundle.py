"""The built Linux bundle (dist/portwatch, `make bundle`), run as a user would run it.

The bundle is built once per session, and only when it is missing or older than its sources
(packaging/build_bundle.py keeps a hash of them), so a second run costs seconds, not minutes.
It runs from a folder outside the repository with no PYTHONPATH: everything it needs, the icons
and services.json included, must come from inside the bundle.

Screenshots: test-artifacts/desktop/bundle-*.png.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import IN_CI, free_port, missing_part, require_tools
from tests.ui_support import start_server
from trayapp import __version__

from .app_support import GREEN
from .harness import Desktop, wait_until

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "packaging" / "build_bundle.py"
RING = "#d1d5db"  # resources/icons/none.svg: nothing listens
CATALOGUED_PORT, CATALOGUED_LABEL = 60610, "Bluesky Queue Server (HTTP API)"  # services.json

# Building takes a minute or two (more on a busy machine); the first test pays for it.
pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.linux("the Linux bundle"),
]


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("portwatch_build_bundle", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The bundle's executable, built first if missing or stale."""
    if importlib.util.find_spec("PyInstaller") is None:
        missing_part("PyInstaller is not installed (pip install -e '.[test]')")
    require_tools("objdump")  # PyInstaller's dependency analysis on Linux (binutils)
    if IN_CI:
        require_tools("appstreamcli", "desktop-file-validate")  # the build validates with them
    builder = load_builder()
    try:
        builder.ensure_built()
    except builder.BuildError as exc:
        pytest.fail(f"make bundle failed: {exc}")
    exe = builder.executable()
    assert exe.is_file() and os.access(exe, os.X_OK), exe
    return Path(exe)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder that is not the repository, and a clean environment for the bundle."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def bundle_env(home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name in ("PYTHONPATH", "PYTHONHOME", "PORTWATCH_RESOURCES", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["PORTWATCH_HOME"] = str(home)
    return env


def write_config(home: Path) -> None:
    """No saved ports (by default 60610 is watched): only the one from the command line, so
    its server turns the icon all green. Polls twice a second."""
    (home / "config").mkdir(parents=True)
    config = {"ports": [], "interval": 0.5}
    (home / "config" / "config.json").write_text(json.dumps(config), encoding="utf-8")


def run(exe: Path, *args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *args],
        cwd=cwd,
        env=bundle_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bundle_has_its_resources_and_desktop_files(bundle: Path) -> None:
    folder = bundle.parent
    internal = folder / "_internal"
    assert (internal / "resources" / "services.json").is_file()
    assert sorted(p.name for p in (internal / "resources" / "icons").glob("*.svg")) == [
        "all.svg",
        "app.svg",
        "none.svg",
        "some.svg",
        "trouble.svg",
        "unhealthy.svg",
    ]
    share = folder / "share"
    assert (share / "applications" / "org.portwatch.PortWatch.desktop").is_file()
    assert (share / "metainfo" / "org.portwatch.PortWatch.metainfo.xml").is_file()
    assert (share / "icons" / "hicolor" / "256x256" / "apps" / "portwatch.png").is_file()
    assert (share / "icons" / "hicolor" / "scalable" / "apps" / "portwatch.svg").is_file()
    # Trimmed: no GTK theme plugin (and so no GTK), no Qt translations.
    assert not list(internal.rglob("libgtk-3*")), "GTK came back into the bundle"
    assert not list(internal.rglob("*.qm")), "Qt translations came back into the bundle"


def test_bundle_version(bundle: Path, outside: Path, tmp_path: Path) -> None:
    result = run(bundle, "--version", cwd=outside, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"portwatch {__version__}"


def test_bundle_check_json_against_a_real_listener(
    bundle: Path, outside: Path, tmp_path: Path, http_listener: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, server = http_listener
    result = run(bundle, "check", str(port), "--json", cwd=outside, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    [state] = json.loads(result.stdout)
    assert (state["port"], state["protocol"], state["state"]) == (port, "tcp", "listening")
    assert server.pid in [entry["pid"] for entry in state["listeners"]], state["listeners"]
    # The probe (HTTP on loopback) works from the bundle too: http.server answers it.
    assert state["probe"] is not None, state


def test_bundle_finds_services_json_inside_itself(
    bundle: Path, outside: Path, tmp_path: Path
) -> None:
    """The resource lookup from a bundle: services.json from sys._MEIPASS/resources names a
    catalogued port (listening or not: the label does not depend on it)."""
    result = run(
        bundle,
        "check",
        str(CATALOGUED_PORT),
        "--json",
        "--no-probe",
        cwd=outside,
        home=tmp_path / "home",
    )
    assert result.returncode in (0, 1), result.stderr  # 1: nothing listens there
    [state] = json.loads(result.stdout)
    assert state["label"] == CATALOGUED_LABEL
    assert "not found" not in result.stderr


def test_bundle_installs_for_one_user(bundle: Path, tmp_path: Path) -> None:
    """install.sh copies the folder to ~/.local/opt, links the command, adds the menu entry."""
    require_tools("sh")
    prefix = tmp_path / "prefix with space"
    env = {**bundle_env(tmp_path / "home"), "PREFIX": str(prefix)}
    script = bundle.parent / "install.sh"
    done = subprocess.run(
        [str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    installed = prefix / "opt" / "portwatch" / "portwatch"
    command = prefix / "bin" / "portwatch"
    assert command.is_symlink() and command.resolve() == installed.resolve()
    version = subprocess.run(
        [str(command), "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert version.stdout.strip() == f"portwatch {__version__}", version.stderr
    entry = prefix / "share" / "applications" / "org.portwatch.PortWatch.desktop"
    text = entry.read_text()
    assert f'Exec="{installed}" tray' in text.splitlines()
    assert (prefix / "share" / "icons" / "hicolor" / "48x48" / "apps" / "portwatch.png").is_file()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(
            ["desktop-file-validate", str(entry)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0 and not check.stdout.strip(), check.stdout

    gone = subprocess.run(
        [str(installed.parent / "install.sh"), "--uninstall"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert gone.returncode == 0, gone.stderr
    assert not command.exists() and not command.is_symlink()
    assert not entry.exists() and not installed.exists()


def test_bundled_tray_app_on_the_desktop(
    bundle: Path, desktop: Desktop, outside: Path, tmp_path: Path
) -> None:
    """The bundled tray app: its icon in xfce's panel (drawn from the bundled SVGs), then a
    notification on the bus when a server starts on the watched port; SIGTERM ends it with 0."""
    home = tmp_path / "home"
    write_config(home)
    port = free_port()
    log = (tmp_path / "tray.out").open("w")
    app = desktop.spawn(
        [str(bundle), "tray", str(port), "--debug"],
        env=bundle_env(home, desktop.env),
        cwd=outside,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        desktop.wait_for_tray_icon(timeout=45)
        # Nothing listens yet: the "none" ring, rendered from the bundle's none.svg.
        area = desktop.wait_for_tray_colour(RING, timeout=20, min_fraction=0.2)
        assert desktop.capture(*area).fraction(GREEN) < 0.05
        desktop.screenshot("bundle-01-icon")

        server = start_server(port)
        assert server is not None, f"http.server could not listen on {port}"
        note = desktop.wait_for_notification(lambda n: str(port) in n["summary"], timeout=20)
        assert note["body"].startswith("now listening"), note
        assert f"(pid {server.pid}" in note["body"], note
        desktop.wait_for_tray_colour(GREEN, timeout=30, min_fraction=0.3)
        desktop.screenshot("bundle-02-notified")

        app.send_signal(signal.SIGTERM)
        assert app.wait(20) == 0, (tmp_path / "tray.out").read_text()
        wait_until(lambda: not desktop.stray_processes(), 10, message="no app process left")
        desktop.wait_until(lambda: desktop.tray_icon_area() is None, 10, message="empty panel")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        if app.poll() is None:
            app.kill()
            app.wait(10)
        log.close()
    output = (tmp_path / "tray.out").read_text()
    assert "Traceback" not in output, output
    assert "notify:" in (home / "log" / "portwatch.log").read_text()
