"""Noticing that files changed: the one helper behind everything a process re-reads without a
restart (the trust directory, the client registry, certificates, keys and trust bundles)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path


def _stamp(paths: Iterable[Path]) -> tuple[object, ...]:
    """Name, modification time, size and inode of each file (a folder: of each of its entries);
    a file that is missing for now counts as absent, not as an error."""
    stamps: list[object] = []
    for path in paths:
        entries = sorted(path.iterdir()) if path.is_dir() else [path]
        for entry in entries:
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            stamps += [entry.name, st.st_mtime_ns, st.st_size, st.st_ino]
    return tuple(stamps)


class FileWatch:
    """Whether ``paths`` changed since the last time they were found changed, looking at the
    files at most every ``every`` seconds (0: on every question) so that a hot path pays for a
    clock read, not for system calls."""

    def __init__(self, paths: Iterable[Path], every: float) -> None:
        self._paths = tuple(paths)
        self._every = every
        self._lock = threading.Lock()
        self._stamp = _stamp(self._paths)
        self._checked = time.monotonic()

    def changed(self) -> bool:
        now = time.monotonic()
        if now - self._checked < self._every:
            return False
        with self._lock:
            self._checked = now
            stamp = _stamp(self._paths)
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            return True
