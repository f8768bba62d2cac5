"""Fixtures for tests that need a real desktop (see harness.py and session.sh, and their
Wayland twins wayland_harness.py and wayland.sh).

`desktop` starts one X11 session per test module (starting costs about a second; xfce is the
default tray host). Ask for the XEmbed host with
`@pytest.mark.parametrize("desktop", ["trayer"], indirect=True)`. `wayland` starts a Wayland
session (waybar's tray by default; "none" for a desktop without a tray).

When the desktop programs are missing the tests are skipped, except under CI=true, where CI was
supposed to install them: there they fail, naming what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import DEBIAN_PACKAGES, DEFAULT_ARTIFACTS, Desktop, missing_programs
from .wayland_harness import WAYLAND_DEBIAN_PACKAGES, WaylandDesktop, missing_wayland_programs

HERE = Path(__file__).resolve().parent
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in this directory carries the `desktop` marker (select with -m desktop), and
    runs on Linux only: the harnesses are X11 and Wayland desktops."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.desktop)
            item.add_marker(pytest.mark.linux("the desktop harnesses run X11 and Wayland"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report  # type: ignore[union-attr]
    return report


def require_desktop_programs(tray_host: str, wayland: bool = False) -> None:
    """Skip (or, under CI=true, fail) unless the harness's programs are installed."""
    missing = missing_wayland_programs(tray_host) if wayland else missing_programs(tray_host)
    if not missing:
        return
    names = WAYLAND_DEBIAN_PACKAGES if wayland else DEBIAN_PACKAGES
    packages = sorted({names.get(p, p) for p in missing})
    reason = (
        f"desktop harness ({tray_host}) needs missing programs: {', '.join(missing)} "
        f"(Debian packages: {' '.join(packages)})"
    )
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI should have installed them: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def desktop(request: pytest.FixtureRequest) -> Iterator[Desktop]:
    """A running headless desktop (Xvfb + D-Bus + dunst + tray host), stopped after the module."""
    tray_host = getattr(request, "param", "xfce")
    require_desktop_programs(tray_host)
    session = Desktop(artifacts_dir=DEFAULT_ARTIFACTS)
    session.start(tray_host)
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def wayland(request: pytest.FixtureRequest) -> Iterator[WaylandDesktop]:
    """A running headless Wayland desktop (sway + mako + waybar's tray, or tray host 'none'),
    stopped after the module. Pick the host with parametrize(..., indirect=True)."""
    tray_host = getattr(request, "param", "waybar")
    require_desktop_programs(tray_host, wayland=True)
    session = WaylandDesktop(artifacts_dir=DEFAULT_ARTIFACTS)
    session.start(tray_host)
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture
def app_home(tmp_path: Path) -> Path:
    """PORTWATCH_HOME for the app under test (App, in app_support.py)."""
    return tmp_path / "home"


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test that uses `desktop` fails, keep a screenshot of the moment."""
    yield
    report = request.node.stash.get(_REPORTS, {}).get("call")
    name = next((n for n in ("desktop", "wayland") if n in request.fixturenames), None)
    if report is None or not report.failed or name is None:
        return
    session = request.getfixturevalue(name)
    if isinstance(session, Desktop) and session.running:
        try:
            session.screenshot(f"FAILED-{request.node.name}")
        except Exception as exc:  # a failed screenshot must not hide the test's failure
            request.node.add_report_section("teardown", "screenshot", f"failed: {exc}")
