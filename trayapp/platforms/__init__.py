"""Everything that differs per operating system lives in this package.

Each concern sits behind a small interface with a fallback that works anywhere, and platform
modules are imported lazily so that importing one never fails on another OS.
"""

from __future__ import annotations

import sys
from typing import Literal

OSName = Literal["linux", "macos", "windows", "other"]


def current_os() -> OSName:
    # Through a plain str: mypy would otherwise judge the other OSes' branches unreachable.
    platform: str = sys.platform
    if platform.startswith("linux"):
        return "linux"
    if platform == "darwin":
        return "macos"
    if platform == "win32":
        return "windows"
    return "other"
