"""Pick the best scanner this machine offers.

Backend modules are imported here, lazily, so that importing this module never fails on an OS
whose backend could not load (netlink is Linux-only).
"""

from __future__ import annotations

import logging
import os

from trayapp.core.scanning import ScanError, Scanner
from trayapp.platforms import current_os

__all__ = ["BACKENDS", "ScanError", "create_scanner", "make_scanner"]

log = logging.getLogger(__name__)

BACKENDS = ("netlink", "psutil", "psutil-own+probe")


def make_scanner(name: str) -> Scanner:
    """The scanner called ``name`` (one of BACKENDS); ScanError if it cannot work here."""
    if name == "netlink":
        from trayapp.platforms.netlink import NetlinkScanner

        scanner = NetlinkScanner()
        try:
            scanner.check()
        except ScanError:
            scanner.close()
            raise
        return scanner
    if name in ("psutil", "psutil-own+probe"):
        from trayapp.platforms.psutil_scan import PsutilScanner

        return PsutilScanner(own_processes_only=name == "psutil-own+probe")
    raise ValueError(f"unknown scanner backend {name!r}; known: {', '.join(BACKENDS)}")


def create_scanner() -> Scanner:
    """Linux: netlink if sock_diag works, else psutil. macOS: psutil, in the mode that works
    without root when not root. Elsewhere psutil. Never raises."""
    if current_os() == "linux":
        try:
            return make_scanner("netlink")
        except Exception as exc:
            log.info("netlink scanner unavailable, using psutil: %s", exc)
    if current_os() == "macos" and not _is_root():
        return make_scanner("psutil-own+probe")
    return make_scanner("psutil")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
