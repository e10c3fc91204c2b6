"""Log discipline under faults: a repeating failure is told once, then summarised.

A background loop whose dependency is down fails on every pass, and a flood of hostile requests
is refused call after call; a line (or a stack trace) per attempt buries everything else in the
log. A ``FailureLog`` remembers the state it last reported: it logs when the state changes (the
first failure, a different failure, the recovery), and while the same failure repeats, one
summary line with a count every ``every`` seconds. Time is monotonic and injectable (tests pass
a fake); thread-safe, so the request threads of a server may share one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

SUMMARY_SECONDS = 60.0


class FailureLog:
    """Logs ``activity`` failing on a change of state, then a periodic summary with a count."""

    def __init__(
        self,
        logger: logging.Logger,
        activity: str,
        every: float = SUMMARY_SECONDS,
        level: int = logging.WARNING,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._activity = activity
        self._every = every
        self._level = level
        self._now = now
        self._lock = threading.Lock()
        self._state: str | None = None
        self._total = 0  # failures since the state began
        self._unreported = 0  # failures since the last line
        self._reported_at = 0.0

    @property
    def failing(self) -> str | None:
        """The failure being reported, or None while the activity works."""
        return self._state

    def failure(self, state: str, exc: BaseException | None = None) -> None:
        """One failed attempt; ``state`` names the failure (e.g. a reason or exception type).
        A stack trace, when ``exc`` is given, is logged only with the line of a new state."""
        with self._lock:
            now = self._now()
            if state != self._state:
                previous, self._state = self._state, state
                self._total, self._unreported, self._reported_at = 1, 0, now
                change = f" (was {previous})" if previous is not None else ""
                self._log.log(
                    self._level, "%s failing: %s%s", self._activity, state, change, exc_info=exc
                )
                return
            self._total += 1
            self._unreported += 1
            if now - self._reported_at >= self._every:
                self._log.log(
                    self._level,
                    "%s still failing: %s, %d more times in the last %.0fs (%d in all)",
                    self._activity,
                    state,
                    self._unreported,
                    now - self._reported_at,
                    self._total,
                )
                self._unreported, self._reported_at = 0, now

    def success(self) -> None:
        """A successful attempt: logs the recovery if the activity was failing."""
        if self._state is None:
            return
        with self._lock:
            if self._state is None:
                return
            self._log.log(
                self._level,
                "%s recovered from %s after %d failed attempts",
                self._activity,
                self._state,
                self._total,
            )
            self._state = None
