"""pid -> Owner (name, exe, command line, user, start time), via psutil.

Cached by (pid, create_time): a pid that was reused by a new process has another start time, so
it never gets the old process's description, and a poll that asks again costs one lookup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import psutil

from trayapp.core.model import Owner

_T = TypeVar("_T")

# psutil.Error covers NoSuchProcess, ZombieProcess and AccessDenied; OSError because some
# platforms let a raw errno through for processes that vanish mid-call.
_UNREADABLE = (psutil.Error, OSError)
_CACHE_LIMIT = 1024

_cache: OrderedDict[tuple[int, float], Owner] = OrderedDict()
# Scanners live on different threads (GUI worker, CLI) but share this cache.
_lock = threading.Lock()


def describe(pid: int) -> Owner:
    """Everything we may read about ``pid``; a field that cannot be read is None (or ())."""
    try:
        proc = psutil.Process(pid)
    except _UNREADABLE:
        return Owner(pid)
    create_time = _field(proc.create_time)
    if create_time is None:
        # Without a start time a reused pid could not be told apart: don't cache.
        return _read_owner(proc, None)
    key = (pid, float(create_time))
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    owner = _read_owner(proc, float(create_time))
    with _lock:
        _cache[key] = owner
        while len(_cache) > _CACHE_LIMIT:
            _cache.popitem(last=False)
    return owner


def _read_owner(proc: psutil.Process, create_time: float | None) -> Owner:
    with proc.oneshot():
        name = _field(proc.name)
        exe = _field(proc.exe)
        cmdline = _field(proc.cmdline)
        username = _field(proc.username)
    return Owner(
        pid=int(proc.pid),
        name=str(name) if name else None,
        exe=str(exe) if exe else None,  # psutil gives "" when the OS does not say
        cmdline=tuple(str(arg) for arg in cmdline or ()),
        username=str(username) if username else None,
        create_time=create_time,
    )


def _field(getter: Callable[[], _T]) -> _T | None:
    try:
        return getter()
    except _UNREADABLE:
        return None
