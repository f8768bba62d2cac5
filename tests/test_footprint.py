"""What the idle tray app keeps in memory: only what a tray needs (issue 12's RSS goal).

Checked in a fresh interpreter each, as the app starts: which modules the tray app's start
imports, and that PySide6's per-import source scan no longer fills linecache.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import child_env

WINDOWS_AND_EXTRAS = {
    "trayapp.ui.overview",
    "trayapp.ui.port_window",
    "trayapp.ui.remote_window",
    "trayapp.ui.settings_dialog",
    "trayapp.ui.history_window",
    "PySide6.QtNetwork",
}


def run_python(code: str) -> object:
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(QT_QPA_PLATFORM="offscreen"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows' instance channel is QtNetwork's")
def test_the_tray_start_loads_no_window_and_no_qtnetwork() -> None:
    loaded = run_python("import json, sys, trayapp.ui.app; print(json.dumps(sorted(sys.modules)))")
    assert isinstance(loaded, list)
    assert "trayapp.ui.tray" in loaded  # the check sees the app's modules at all
    assert WINDOWS_AND_EXTRAS.isdisjoint(loaded), sorted(WINDOWS_AND_EXTRAS & set(loaded))


def test_modules_imported_after_pyside_are_not_kept_as_source() -> None:
    kept = run_python(
        "import json, linecache, trayapp.ui, trayapp.ui.app, trayapp.core.timeline;"
        "print(json.dumps(sorted(linecache.cache)))"
    )
    assert isinstance(kept, list)
    assert not [path for path in kept if "trayapp" in path], kept
