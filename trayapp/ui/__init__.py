"""The Qt widgets: tray, windows, dialogs. They present what trayapp.core decides."""

from __future__ import annotations

import sys

import PySide6.QtCore  # noqa: F401  (loads the hook patched below)


def _skip_pyside_source_scan() -> None:
    """PySide6 reads the source of every module imported after it, looking for
    `from __feature__ import ...` opt-ins, and linecache keeps every file it read: 3.6 MiB
    for the tray app's day (measured; napari#8584 saw the same as start-up time). Port Watch
    selects no __feature__ anywhere, so the answer for each module is known without reading
    it: "no feature" (-1, ignored in switching). A PySide6 without this hook is left alone."""
    feature = sys.modules.get("PySide6.support.feature")
    if feature is not None and callable(getattr(feature, "_mod_uses_pyside", None)):
        feature._mod_uses_pyside = _uses_no_feature  # type: ignore[attr-defined]


def _uses_no_feature(_module: object) -> bool:
    return False


_skip_pyside_source_scan()
