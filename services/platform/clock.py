"""The one clock every service reads time from.

Business dates are Beijing dates (UTC+8, no daylight saving). ``SystemClock`` is the default.
``SharedTestClock`` is the test clock: it adds an offset kept in a small JSON file, so one
``sscard clock advance`` moves every process of the running suite forward together. It exists
only when configuration names that file (``SSCARD_TEST_CLOCK_FILE``) and the environment is not
production. ``ManualClock`` is for unit tests in one process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Protocol

BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")


class Clock(Protocol):
    """Source of the current time."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware (UTC)."""
        ...


def beijing_date(moment: dt.datetime) -> dt.date:
    """The calendar date in Beijing at ``moment``: the date the regulation's days count in."""
    return moment.astimezone(BEIJING).date()


def today(clock: Clock) -> dt.date:
    """Today's Beijing date by ``clock``."""
    return beijing_date(clock.now())


def day_after(day: dt.date) -> dt.datetime:
    """Midnight in Beijing at the end of ``day`` (24:00, Civil Code art. 203): a period whose
    last day is ``day`` has run out from then, and a deadline of ``day`` is missed."""
    following = day + dt.timedelta(days=1)
    midnight = dt.datetime(following.year, following.month, following.day, tzinfo=BEIJING)
    return midnight.astimezone(dt.UTC)


class SystemClock:
    """Wall-clock time."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class ManualClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta

    def set(self, moment: dt.datetime) -> None:
        self._now = moment


class SharedTestClock:
    """Wall-clock time plus an offset read from a file that every process of the suite shares.

    The file holds ``{"offset_seconds": <float>}``. It is written atomically (temporary file,
    then rename) and re-read whenever its modification time changes, so a move is seen by the
    next call of every process.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._offset = dt.timedelta(0)

    def offset(self) -> dt.timedelta:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return dt.timedelta(0)
        stamp = (st.st_mtime_ns, st.st_ino)
        with self._lock:
            if stamp != self._stamp:
                data = json.loads(self.path.read_text() or "{}")
                self._offset = dt.timedelta(seconds=float(data.get("offset_seconds", 0)))
                self._stamp = stamp
            return self._offset

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset()

    def set_offset(self, offset: dt.timedelta) -> None:
        """Move the whole suite to real time plus ``offset``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"offset_seconds": offset.total_seconds()}))
        os.replace(tmp, self.path)

    def set(self, moment: dt.datetime) -> None:
        """Move the whole suite to ``moment``; time runs on from there."""
        self.set_offset(moment - dt.datetime.now(dt.UTC))

    def advance(self, delta: dt.timedelta) -> None:
        self.set_offset(self.offset() + delta)
