"""Everything that differs per operating system lives in this package.

Each concern sits behind a small interface with a fallback that works anywhere, and platform
modules are imported lazily so that importing one never fails on another OS.
"""

from __future__ import annotations

import functools
import sys

from trayapp.core.host import HostFacts, OSName


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


def host_facts() -> HostFacts:
    """This machine's facts for core; the ephemeral range is read when first asked for."""
    # Imported here: ephemeral.py imports this package for current_os().
    from trayapp.platforms.ephemeral import read_ephemeral

    os_name = current_os()
    return HostFacts(os_name, functools.partial(read_ephemeral, os_name))
