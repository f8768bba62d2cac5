"""Reads an application's accessibility tree through AT-SPI, as a screen reader does, and prints
it as JSON. Runs under Debian's /usr/bin/python3 (pyatspi is a Debian package, python3-pyatspi,
not on PyPI), in the desktop session's environment; the tests call it as a child process.

    atspi_reader.py tree PID     every window of that process: one object per accessible
    atspi_reader.py focused PID  the accessible that has the keyboard focus, or null
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pyatspi

MAX_CHILDREN = 80  # a table with a thousand rows need not be read whole
MAX_DEPTH = 40
PARTS = ("frame", "table cell", "list item")


def application(pid: int) -> Any:
    desktop = pyatspi.Registry.getDesktop(0)
    for index in range(desktop.childCount):
        app = desktop.getChildAtIndex(index)
        try:
            if app is not None and app.get_process_id() == pid:
                return app
        except Exception:  # an application that went away while we looked
            continue
    return None


def describe(node: Any, path: str) -> dict[str, Any]:
    states = node.getState()
    return {
        "path": path,
        "role": node.getRoleName(),
        "name": node.name or "",
        "description": node.description or "",
        "focused": states.contains(pyatspi.STATE_FOCUSED),
        "focusable": states.contains(pyatspi.STATE_FOCUSABLE),
        "showing": states.contains(pyatspi.STATE_SHOWING),
        "enabled": states.contains(pyatspi.STATE_ENABLED),
    }


def walk(node: Any, path: str, depth: int, out: list[dict[str, Any]]) -> None:
    try:
        out.append(describe(node, path))
        count = min(node.childCount, MAX_CHILDREN) if depth < MAX_DEPTH else 0
    except Exception:  # GLib.GError: gone while we looked (a table's rows made anew): skip it
        return
    for index in range(count):
        try:
            child = node.getChildAtIndex(index)
        except Exception:  # likewise
            continue
        if child is not None:
            walk(child, f"{path}/{index}", depth + 1, out)


def main() -> int:
    command, pid = sys.argv[1], int(sys.argv[2])
    app = application(pid)
    if app is None:
        print(json.dumps(None))
        return 0
    nodes: list[dict[str, Any]] = []
    for index in range(app.childCount):
        window = app.getChildAtIndex(index)
        if window is not None:
            walk(window, str(index), 0, nodes)
    if command == "tree":
        print(json.dumps(nodes))
    elif command == "focused":
        # Qt leaves the focused state on a table's current cell and a combo box's current
        # item when the focus moves on: the widget that has the focus is the one to report.
        focused = [node for node in nodes if node["focused"] and node["role"] not in PARTS]
        print(json.dumps(focused[-1] if focused else None))
    else:
        print(f"unknown command {command}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
