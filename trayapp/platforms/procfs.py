"""Linux: socket inode -> the processes holding it, from /proc/<pid>/fd.

Walking every process's fds is the dear part of finding an owner (tens of ms with thousands of
open sockets), so it is done once per new inode and its answer cached. Later polls only check
that each cached holder still has the socket (one readlink each). A socket the kernel no longer
reports is dropped from the cache.

Only processes we may read are looked into: our own, or all of them as root. A socket of another
user's process is then "denied": still listening, owner unknown, never free.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

# What can happen to one process while we look at it: it exits (FileNotFound, ProcessLookup),
# its /proc entry turns into something else, or it changes credentials (Permission).
_GONE = (FileNotFoundError, ProcessLookupError, NotADirectoryError)


@dataclass(frozen=True)
class Holder:
    """One open file descriptor of one process that refers to the socket."""

    pid: int
    fd: int


@dataclass(frozen=True)
class Resolution:
    holders: tuple[Holder, ...]
    # True when some process we were not allowed to look into may hold the socket.
    denied: bool = False

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(h.pid for h in self.holders))


@dataclass
class _Entry:
    resolution: Resolution
    retry_at: float  # for entries without holders: when to search again


class SocketOwners:
    """Cache of socket inode -> holders. Not thread-safe (one per scanner)."""

    def __init__(
        self, proc_root: str = "/proc", *, retry_after: float = 10.0, euid: int | None = None
    ) -> None:
        self._root = proc_root
        # An unresolved socket (hidden, or its process just exited) is searched again only
        # this often: a full walk of /proc per poll would cost more than the poll itself.
        self._retry_after = retry_after
        self._euid = os.geteuid() if euid is None else euid
        self._cache: dict[int, _Entry] = {}

    @property
    def privileged(self) -> bool:
        return self._euid == 0

    def resolve(self, sockets: Mapping[int, int]) -> dict[int, Resolution]:
        """Holders of each socket, given as {inode: uid of the socket}.

        Cache entries for inodes not in ``sockets`` are evicted: pass every live inode.
        """
        self._evict(sockets.keys())
        now = time.monotonic()
        result: dict[int, Resolution] = {}
        todo: dict[int, int] = {}
        for inode, uid in sockets.items():
            entry = self._cache.get(inode)
            if entry is not None and self._still_valid(inode, entry, now):
                result[inode] = entry.resolution
            else:
                todo[inode] = uid
        if todo:
            for inode, resolution in self._search(todo).items():
                self._cache[inode] = _Entry(resolution, now + self._retry_after)
                result[inode] = resolution
        return result

    def clear(self) -> None:
        self._cache.clear()

    def _evict(self, live: Collection[int]) -> None:
        for inode in [i for i in self._cache if i not in live]:
            del self._cache[inode]

    def _still_valid(self, inode: int, entry: _Entry, now: float) -> bool:
        holders = entry.resolution.holders
        if not holders:
            return now < entry.retry_at
        # Any holder gone (a worker restarted, the parent exited) -> search again for all,
        # since the socket is still alive and so someone else holds it.
        target = _socket_link(inode)
        return all(self._readlink(f"{h.pid}/fd/{h.fd}") == target for h in holders)

    def _readlink(self, relative: str) -> str | None:
        try:
            return os.readlink(f"{self._root}/{relative}")
        except OSError:
            return None

    def _search(self, todo: Mapping[int, int]) -> dict[int, Resolution]:
        wanted = {_socket_link(inode): inode for inode in todo}
        found: dict[int, list[Holder]] = {inode: [] for inode in todo}
        first, rest = self._candidates(set(todo.values()))
        denied = self._scan(first, wanted, found)
        if any(not holders for holders in found.values()):
            # A socket may outlive its creator's uid (root binds, then drops privileges).
            denied |= self._scan(rest, wanted, found)
        return {
            inode: Resolution(
                tuple(holders),
                denied=not holders and (denied or not self._may_read_user(todo[inode])),
            )
            for inode, holders in found.items()
        }

    def _may_read_user(self, uid: int) -> bool:
        return self.privileged or uid == self._euid

    def _candidates(self, uids: Collection[int]) -> tuple[list[int], list[int]]:
        """Readable pids: owned by a socket's uid first (the likely holders), then the rest."""
        first: list[int] = []
        rest: list[int] = []
        for pid, owner_uid in self._processes():
            if not self._may_read_user(owner_uid):
                continue
            (first if owner_uid in uids else rest).append(pid)
        return first, rest

    def _processes(self) -> Iterator[tuple[int, int]]:
        try:
            names = os.listdir(self._root)
        except OSError:
            return
        for name in names:
            if not name.isdigit():
                continue
            try:
                # /proc/<pid> belongs to the process's effective uid (root when not dumpable).
                yield int(name), os.stat(f"{self._root}/{name}").st_uid
            except (*_GONE, PermissionError):
                continue

    def _scan(
        self, pids: list[int], wanted: Mapping[str, int], found: dict[int, list[Holder]]
    ) -> bool:
        """Add every (pid, fd) whose fd is a wanted socket; True if some pid refused access."""
        denied = False
        for pid in pids:
            try:
                for fd, inode in self._sockets_of(pid, wanted):
                    found[inode].append(Holder(pid, fd))
            except PermissionError:
                denied = True
            except _GONE:
                continue
        return denied

    def _sockets_of(self, pid: int, wanted: Mapping[str, int]) -> list[tuple[int, int]]:
        hits: list[tuple[int, int]] = []
        dir_fd = os.open(f"{self._root}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in os.listdir(dir_fd):
                try:
                    # dir_fd spares the kernel a path walk per fd: thousands per process.
                    inode = wanted.get(os.readlink(name, dir_fd=dir_fd))
                except _GONE:
                    continue  # that fd was closed meanwhile
                if inode is not None:
                    hits.append((int(name), inode))
        finally:
            os.close(dir_fd)
        return hits


def _socket_link(inode: int) -> str:
    return f"socket:[{inode}]"
