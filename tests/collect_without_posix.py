"""Collect the test suite as Windows would: the project's code cannot import pwd, grp, fcntl,
termios or resource. Run by tests/test_collection.py: `python tests/collect_without_posix.py
[pytest args]`; prints pytest's --collect-only -q output and exits with pytest's status.

Only imports made by the project's own files fail (under tests/ and trayapp/ of this checkout,
and the folders listed in $COLLECT_BLOCK_ALSO, separated by os.pathsep): Linux's own libraries
(psutil's Linux backend needs resource) have their Windows branches on Windows.
"""

from __future__ import annotations

import builtins
import os
import sys
from pathlib import Path
from typing import Any

POSIX_ONLY = frozenset({"pwd", "grp", "fcntl", "termios", "resource"})
REPO = Path(__file__).resolve().parents[1]
ROOTS = (
    str(REPO / "tests") + os.sep,
    str(REPO / "trayapp") + os.sep,
    *(
        str(Path(p).resolve()) + os.sep
        for p in os.environ.get("COLLECT_BLOCK_ALSO", "").split(os.pathsep)
        if p
    ),
)
_real_import = builtins.__import__


def _import(
    name: str,
    globals: dict[str, Any] | None = None,
    locals: dict[str, Any] | None = None,
    fromlist: tuple[str, ...] = (),
    level: int = 0,
) -> Any:
    importer = str((globals or {}).get("__file__") or "")
    if level == 0 and name.partition(".")[0] in POSIX_ONLY and importer.startswith(ROOTS):
        raise ModuleNotFoundError(f"No module named {name!r} (as on Windows)", name=name)
    return _real_import(name, globals, locals, fromlist, level)


def main(args: list[str]) -> int:
    builtins.__import__ = _import
    import pytest

    return int(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *args]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
