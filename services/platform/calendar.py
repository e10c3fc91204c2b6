"""Working-day calendar for deadlines counted under the regulation (e.g. rule A22.2).

Some deadlines are counted in natural days (自然日: every calendar day counts), others in
working days (工作日: weekends and PRC public holidays are skipped, but the make-up working
weekends the State Council announces, 调休, do count). ``WorkingDayCalendar`` answers both.

Where a day's status comes from, first match wins:

1. the override file lists it under ``workdays`` for its year -> working day;
2. the override file lists it under ``holidays`` for its year -> not a working day;
3. the year is *confirmed* in the override file -> Monday to Friday are working days;
4. otherwise (unconfirmed year) the ``holidays`` package's rules are an estimate: its
   ``holidays.China`` days are off, its ``weekend_workdays`` of that year are worked, and
   Monday to Friday otherwise. A WARNING is logged once per year per calendar instance.

The override file is JSON; its path is the setting ``SSCARD_CALENDAR_FILE`` (the shipped
file is ``deploy/calendar/cn-workdays.json``). Operations add a year as soon as the State
Council publishes its notice, without a code change::

    {
      "source": "free text: where the data came from",
      "years": {
        "2026": {
          "confirmed": true,
          "notice": "国办发明电〔2025〕7号",
          "holidays": ["2026-01-01", "2026-01-02", "2026-01-03", "..."],
          "workdays": ["2026-01-04", "..."]
        }
      }
    }

Operations load a year with ``sscard calendar load FILE`` (``install_years``): the years of
FILE replace those of the override file in force. A running service reads the file again when
it changed (``refresh``, from its maintenance loop), and the card service then counts its
pending working-day deadlines again (``services/card/deadlines.py``).

``confirmed: true`` means the lists are the complete notice for that year and the package is
not consulted. ``confirmed: false`` keeps the year an estimate but still applies the listed
days over the package's. Every date must be ISO ``YYYY-MM-DD``, fall in its year, and appear
in at most one list. ``holidays`` may include weekend days of a break; that is harmless.
"""

from __future__ import annotations

import bisect
import datetime
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from holidays.countries.china import China

__all__ = [
    "CALENDAR_FILE_SETTING",
    "SHIPPED_CALENDAR_FILE",
    "CalendarFileError",
    "CalendarOverrides",
    "WorkingDayCalendar",
    "YearSchedule",
    "install_years",
]

CALENDAR_FILE_SETTING = "SSCARD_CALENDAR_FILE"
# deploy/calendar/cn-workdays.json, linked beside this module so that the wheel carries it.
SHIPPED_CALENDAR_FILE = Path(__file__).with_name("cn-workdays.json")

_log = logging.getLogger("sscard.calendar")
_YEAR_KEYS = frozenset({"confirmed", "notice", "holidays", "workdays"})


class CalendarFileError(ValueError):
    """The override file is malformed; the service must not start on a wrong calendar."""


@dataclass(frozen=True)
class YearSchedule:
    """One year's entry of the override file."""

    year: int
    confirmed: bool
    notice: str = ""
    holidays: frozenset[datetime.date] = frozenset()
    workdays: frozenset[datetime.date] = frozenset()


@dataclass(frozen=True)
class CalendarOverrides:
    """The parsed override file: per-year State Council schedules."""

    years: Mapping[int, YearSchedule] = field(default_factory=dict)
    source: str = ""
    path: str | None = None

    @classmethod
    def from_mapping(cls, data: Any, *, path: str | None = None) -> CalendarOverrides:
        where = path or "calendar overrides"
        if not isinstance(data, dict) or not isinstance(data.get("years"), dict):
            raise CalendarFileError(f"{where}: expected an object with a 'years' object")
        source = data.get("source", "")
        if not isinstance(source, str):
            raise CalendarFileError(f"{where}: 'source' must be a string")
        years: dict[int, YearSchedule] = {}
        for key, entry in data["years"].items():
            if not (isinstance(key, str) and len(key) == 4 and key.isdigit()):
                raise CalendarFileError(f"{where}: year key {key!r} is not YYYY")
            years[int(key)] = _parse_year(int(key), entry, f"{where}: year {key}")
        return cls(years=years, source=source, path=path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalendarOverrides:
        with open(path, encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise CalendarFileError(f"{os.fspath(path)}: not valid JSON: {exc}") from exc
        return cls.from_mapping(data, path=os.fspath(path))


def _parse_year(year: int, entry: Any, where: str) -> YearSchedule:
    if not isinstance(entry, dict):
        raise CalendarFileError(f"{where}: expected an object")
    unknown = set(entry) - _YEAR_KEYS
    if unknown:
        raise CalendarFileError(f"{where}: unknown keys {sorted(unknown)}")
    confirmed = entry.get("confirmed")
    if not isinstance(confirmed, bool):
        raise CalendarFileError(f"{where}: 'confirmed' must be true or false")
    notice = entry.get("notice", "")
    if not isinstance(notice, str):
        raise CalendarFileError(f"{where}: 'notice' must be a string")
    lists = {
        name: _parse_dates(year, entry.get(name, []), f"{where}.{name}")
        for name in ("holidays", "workdays")
    }
    both = lists["holidays"] & lists["workdays"]
    if both:
        raise CalendarFileError(f"{where}: {sorted(map(str, both))} both holiday and workday")
    return YearSchedule(year, confirmed, notice, lists["holidays"], lists["workdays"])


def _parse_dates(year: int, raw: Any, where: str) -> frozenset[datetime.date]:
    if not isinstance(raw, list):
        raise CalendarFileError(f"{where}: expected a list of YYYY-MM-DD strings")
    days: set[datetime.date] = set()
    for item in raw:
        try:
            day = datetime.date.fromisoformat(item)
        except (TypeError, ValueError) as exc:
            raise CalendarFileError(f"{where}: {item!r} is not a YYYY-MM-DD date") from exc
        if day.year != year:
            raise CalendarFileError(f"{where}: {item} is not in {year}")
        days.add(day)
    return frozenset(days)


class WorkingDayCalendar:
    """Natural-day and working-day arithmetic; thread-safe, per-year results cached."""

    def __init__(self, overrides: CalendarOverrides | None = None) -> None:
        self._overrides = overrides or CalendarOverrides()
        # year -> sorted ordinals of its working days
        self._working: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self._stamp = _stamp(self._overrides.path)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> WorkingDayCalendar:
        return cls(CalendarOverrides.load(path))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkingDayCalendar:
        """Load the file named by ``SSCARD_CALENDAR_FILE``, else the shipped file."""
        env = os.environ if environ is None else environ
        return cls.from_file(env.get(CALENDAR_FILE_SETTING) or SHIPPED_CALENDAR_FILE)

    def refresh(self) -> bool:
        """Read the override file again if it changed since it was read; True if it did. A
        changed file that does not parse is logged and the calendar stays as it was."""
        path = self._overrides.path
        stamp = _stamp(path)
        if path is None or stamp is None or stamp == self._stamp:
            return False
        try:
            overrides = CalendarOverrides.load(path)
        except (OSError, CalendarFileError) as exc:
            _log.error("calendar override file not reloaded, keeping the one in force: %s", exc)
            self._stamp = stamp
            return False
        with self._lock:
            self._overrides = overrides
            self._working = {}
            self._stamp = stamp
        confirmed = sorted(y for y, s in overrides.years.items() if s.confirmed)
        _log.info("calendar override file %s reloaded; confirmed years %s", path, confirmed)
        return True

    def is_confirmed(self, year: int) -> bool:
        schedule = self._overrides.years.get(year)
        return schedule is not None and schedule.confirmed

    def estimated_between(self, start: datetime.date, end: datetime.date) -> bool:
        """Whether a count from ``start`` to ``end`` runs through a year not confirmed: a
        working-day deadline computed over it is an estimate until the year is loaded."""
        return not all(self.is_confirmed(y) for y in range(start.year, end.year + 1))

    def is_working_day(self, day: datetime.date) -> bool:
        _check_date(day)
        days = self._year(day.year)
        i = bisect.bisect_left(days, day.toordinal())
        return i < len(days) and days[i] == day.toordinal()

    def add_natural_days(self, start: datetime.date, n: int) -> datetime.date:
        """The n-th calendar day after ``start`` (自然日); n >= 1."""
        _check_date(start)
        _check_n(n)
        return start + datetime.timedelta(days=n)

    def add_working_days(self, start: datetime.date, n: int) -> datetime.date:
        """The n-th working day strictly after ``start`` (工作日); ``start`` never counts."""
        _check_date(start)
        _check_n(n)
        year = start.year
        days = self._year(year)
        i = bisect.bisect_right(days, start.toordinal()) + n - 1
        while i >= len(days):
            i -= len(days)
            year += 1
            days = self._year(year)
        return datetime.date.fromordinal(days[i])

    def working_days_between(self, start: datetime.date, end: datetime.date) -> int:
        """How many working days lie in (start, end]; ``end`` must not precede ``start``."""
        _check_date(start)
        _check_date(end)
        if end < start:
            raise ValueError(f"end {end} precedes start {start}")
        if end == start:
            return 0
        count = -bisect.bisect_right(self._year(start.year), start.toordinal())
        for year in range(start.year, end.year):
            count += len(self._year(year))
        return count + bisect.bisect_right(self._year(end.year), end.toordinal())

    def _year(self, year: int) -> list[int]:
        days = self._working.get(year)
        if days is None:
            with self._lock:
                days = self._working.get(year)
                if days is None:
                    days = self._working[year] = self._compute(year)
        return days

    def _compute(self, year: int) -> list[int]:
        schedule = self._overrides.years.get(year) or YearSchedule(year, confirmed=False)
        if schedule.confirmed:
            off: set[datetime.date] = set()
            on: set[datetime.date] = set()
        else:
            _log.warning(
                "WORKING DAYS FOR %d ARE ESTIMATED from the holidays package's rules, not from "
                "the State Council notice: make-up working weekends (调休) may be missing and "
                "working-day deadlines may be wrong. Operations must load the State Council "
                "notice for %d into the calendar override file named by %s (now: %s).",
                year,
                year,
                CALENDAR_FILE_SETTING,
                self._overrides.path or "none loaded",
            )
            package = China(years=year)  # type: ignore[no-untyped-call]
            off = {d for d in package if d.year == year}
            on = {d for d in package.weekend_workdays if d.year == year}
        off |= schedule.holidays
        on -= schedule.holidays
        on |= schedule.workdays
        first = datetime.date(year, 1, 1).toordinal()
        last = datetime.date(year, 12, 31).toordinal()
        return [
            o
            for o in range(first, last + 1)
            if (d := datetime.date.fromordinal(o)) in on or (d.weekday() < 5 and d not in off)
        ]


def install_years(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> list[int]:
    """Put the years of the override file ``source`` into the override file ``target`` (they
    replace the same years there), checked first, and written whole at once so a service
    reading ``target`` never sees half a file. The years installed, in order."""
    loaded = CalendarOverrides.load(source)
    if not loaded.years:
        raise CalendarFileError(f"{os.fspath(source)}: no year to load")
    with open(source, encoding="utf-8") as fh:
        years = json.load(fh)["years"]
    try:
        with open(target, encoding="utf-8") as fh:
            current = json.load(fh)
    except FileNotFoundError:
        current = {"source": "", "years": {}}
    current.setdefault("years", {}).update(years)
    CalendarOverrides.from_mapping(current, path=os.fspath(target))
    staged = Path(f"{os.fspath(target)}.loading")
    staged.write_text(json.dumps(current, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(staged, target)
    return sorted(loaded.years)


def _stamp(path: str | None) -> tuple[int, int] | None:
    """When and how big the file was last written; None without a file."""
    if path is None:
        return None
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


def _check_date(day: datetime.date) -> None:
    if isinstance(day, datetime.datetime) or not isinstance(day, datetime.date):
        raise TypeError(f"expected a datetime.date, got {type(day).__name__}")


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
