"""Process hygiene shared by the service supervisor (``server.serve``) and ``make run``."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """In a child: ask the kernel for ``sig`` when the parent dies, and exit at once if the
    parent (pid ``parent``) is already gone, so no child outlives its supervisor."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:
        os._exit(1)


class Backoff:
    """Restarts of a crashing child: delays doubling up to ``cap``; more than ``limit`` crashes
    within ``window`` seconds means the child cannot stay up, and the supervisor gives up."""

    def __init__(self, base: float = 0.5, cap: float = 10.0, limit: int = 5, window: float = 60.0):
        self.base, self.cap, self.limit, self.window = base, cap, limit, window
        self.restarts = 0
        self._crashes: list[float] = []

    def crashed(self, now: float) -> float | None:
        """Record a crash at ``now``; the delay before restarting, or None to give up."""
        self._crashes = [t for t in self._crashes if now - t < self.window] + [now]
        if len(self._crashes) > self.limit:
            return None
        self.restarts += 1
        return float(min(self.cap, self.base * 2 ** (len(self._crashes) - 1)))

    @property
    def recent(self) -> int:
        return len(self._crashes)
