"""Working-day calendar: deadlines in 工作日 and 自然日 (rule A22.2 and friends)."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.platform.calendar import (
    CALENDAR_FILE_SETTING,
    SHIPPED_CALENDAR_FILE,
    CalendarFileError,
    WorkingDayCalendar,
    install_years,
)

SHIPPED = Path(__file__).resolve().parents[3] / "deploy/calendar/cn-workdays.json"
CAL = WorkingDayCalendar.from_file(SHIPPED)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "sscard.calendar" and r.levelno == logging.WARNING
    ]


def _write(tmp_path: Path, years: dict[str, object]) -> Path:
    path = tmp_path / "cn-workdays.json"
    path.write_text(json.dumps({"source": "test", "years": years}), encoding="utf-8")
    return path


# --- rule A22.2: reissue produced within 4 working days -------------------------------------


def test_A22_2_reissue_on_eve_of_national_day_is_due_after_the_holiday() -> None:
    # Wed 30 Sep; 1-7 Oct off; Thu 8 (1), Fri 9 (2), Sat 10 make-up (3), Mon 12 (4).
    assert CAL.add_working_days(date(2026, 9, 30), 4) == date(2026, 10, 12)


def test_A22_2_make_up_sunday_before_national_day_counts() -> None:
    # Fri 18 Sep; Sat 19 off; Sun 20 make-up (1); Mon 21 (2); Tue 22 (3); Wed 23 (4).
    assert CAL.add_working_days(date(2026, 9, 18), 4) == date(2026, 9, 23)


def test_A22_2_reissue_before_spring_festival_spans_the_break() -> None:
    # Fri 13 Feb; Sat 14 make-up (1); 15-23 Feb off; Tue 24 (2); Wed 25 (3); Thu 26 (4).
    assert CAL.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 14)
    assert CAL.add_working_days(date(2026, 2, 13), 4) == date(2026, 2, 26)


def test_A22_2_make_up_saturday_after_spring_festival_counts() -> None:
    # Wed 25 Feb; Thu 26 (1); Fri 27 (2); Sat 28 make-up (3); Sun 1 Mar off; Mon 2 Mar (4).
    assert CAL.add_working_days(date(2026, 2, 25), 4) == date(2026, 3, 2)


def test_A22_2_ordinary_weekend_is_skipped() -> None:
    # Thu 12 Mar; Fri 13 (1); 14-15 weekend; Mon 16 (2); Tue 17 (3); Wed 18 (4).
    assert CAL.add_working_days(date(2026, 3, 12), 4) == date(2026, 3, 18)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (date(2026, 10, 10), date(2026, 10, 12)),  # make-up Saturday
        (date(2026, 10, 1), date(2026, 10, 8)),  # holiday
        (date(2026, 3, 14), date(2026, 3, 16)),  # ordinary Saturday
    ],
)
def test_A22_2_application_day_itself_never_counts(start: date, expected: date) -> None:
    assert CAL.add_working_days(start, 1) == expected


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 1, 2), False),  # New Year, Friday
        (date(2026, 1, 4), True),  # make-up Sunday
        (date(2026, 2, 23), False),  # Spring Festival, Monday
        (date(2026, 4, 6), False),  # Qingming, Monday
        (date(2026, 5, 5), False),  # Labour Day, Tuesday
        (date(2026, 5, 9), True),  # make-up Saturday
        (date(2026, 6, 19), False),  # Dragon Boat, Friday
        (date(2026, 9, 25), False),  # Mid-Autumn, Friday
        (date(2026, 10, 7), False),  # National Day, Wednesday
        (date(2026, 10, 10), True),  # make-up Saturday
        (date(2026, 3, 14), False),  # ordinary Saturday
        (date(2026, 3, 16), True),  # ordinary Monday
    ],
)
def test_is_working_day_2026(day: date, working: bool) -> None:
    assert CAL.is_working_day(day) is working


def test_natural_days_ignore_holidays() -> None:
    assert CAL.add_natural_days(date(2026, 9, 30), 15) == date(2026, 10, 15)
    assert CAL.add_natural_days(date(2026, 12, 31), 1) == date(2027, 1, 1)


def test_working_days_between_counts_half_open_interval() -> None:
    assert CAL.working_days_between(date(2026, 9, 30), date(2026, 10, 12)) == 4
    assert CAL.working_days_between(date(2026, 9, 30), date(2026, 10, 11)) == 3
    assert CAL.working_days_between(date(2026, 9, 30), date(2026, 9, 30)) == 0
    with pytest.raises(ValueError):
        CAL.working_days_between(date(2026, 10, 12), date(2026, 9, 30))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        CAL.add_working_days(date(2026, 3, 2), 0)
    with pytest.raises(TypeError):
        CAL.is_working_day(datetime(2026, 3, 2, 9, 0))


@given(
    start=st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
    n=st.integers(min_value=1, max_value=30),
)
def test_working_days_between_inverts_add_working_days(start: date, n: int) -> None:
    end = CAL.add_working_days(start, n)
    assert CAL.working_days_between(start, end) == n
    assert CAL.is_working_day(end)
    assert CAL.working_days_between(start, end - timedelta(days=1)) == n - 1


# --- the shipped override file ----------------------------------------------------------------


def test_shipped_file_confirms_2026_only() -> None:
    assert SHIPPED_CALENDAR_FILE.resolve() == SHIPPED
    assert CAL.is_confirmed(2026)
    assert not CAL.is_confirmed(2027)
    assert not CAL.is_confirmed(2025)


def test_shipped_2026_schedule_agrees_with_holidays_package(
    caplog: pytest.LogCaptureFixture,
) -> None:
    estimate = WorkingDayCalendar()  # package rules only
    day = date(2026, 1, 1)
    while day.year == 2026:
        assert CAL.is_working_day(day) == estimate.is_working_day(day), day
        day += timedelta(days=1)
    assert len(_warnings(caplog)) == 1


def test_from_env_reads_the_setting(tmp_path: Path) -> None:
    path = _write(tmp_path, {"2027": {"confirmed": True, "holidays": [], "workdays": []}})
    assert WorkingDayCalendar.from_env({CALENDAR_FILE_SETTING: str(path)}).is_confirmed(2027)
    assert not WorkingDayCalendar.from_env({}).is_confirmed(2027)


# --- unconfirmed years and operations' overrides ------------------------------------------------


def test_unconfirmed_year_warns_once_per_calendar(caplog: pytest.LogCaptureFixture) -> None:
    cal = WorkingDayCalendar.from_file(SHIPPED)
    with caplog.at_level(logging.WARNING, logger="sscard.calendar"):
        cal.is_working_day(date(2026, 3, 2))
        assert _warnings(caplog) == []
        for _ in range(100):
            cal.is_working_day(date(2027, 3, 2))
            cal.add_working_days(date(2027, 9, 30), 4)
            cal.working_days_between(date(2027, 1, 1), date(2027, 12, 31))
        (record,) = _warnings(caplog)
        message = record.getMessage()
        assert "2027" in message and "ESTIMATED" in message
        assert CALENDAR_FILE_SETTING in message and str(SHIPPED) in message

        cal.is_working_day(date(2024, 3, 2))  # past years are not exempt
        assert len(_warnings(caplog)) == 2
        WorkingDayCalendar.from_file(SHIPPED).is_working_day(date(2027, 3, 2))
        assert len(_warnings(caplog)) == 3  # once per year *per instance*


def test_deadline_crossing_into_unconfirmed_year_warns(caplog: pytest.LogCaptureFixture) -> None:
    cal = WorkingDayCalendar.from_file(SHIPPED)
    with caplog.at_level(logging.WARNING, logger="sscard.calendar"):
        # Thu 31 Dec 2026 -> Fri 1 Jan 2027 is a holiday by the package's rules.
        assert cal.add_working_days(date(2026, 12, 31), 1) == date(2027, 1, 4)
    assert len(_warnings(caplog)) == 1


def test_override_file_confirming_2027_changes_answers_and_silences_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(
        tmp_path,
        {
            "2027": {
                "confirmed": True,
                "notice": "made up for the test",
                "holidays": ["2027-03-03"],  # a Wednesday
                "workdays": ["2027-03-06"],  # a Saturday
            }
        },
    )
    estimate = WorkingDayCalendar.from_file(SHIPPED)
    cal = WorkingDayCalendar.from_file(path)
    assert cal.is_confirmed(2027)
    assert estimate.is_working_day(date(2027, 3, 3)) and not cal.is_working_day(date(2027, 3, 3))
    assert not estimate.is_working_day(date(2027, 3, 6)) and cal.is_working_day(date(2027, 3, 6))
    # A confirmed year uses only its lists: the package's 1 Jan 2027 holiday is not consulted.
    assert cal.is_working_day(date(2027, 1, 1))
    # Tue 2 Mar; Thu 4 (1), Fri 5 (2), Sat 6 (3), Mon 8 (4).
    assert cal.add_working_days(date(2027, 3, 2), 4) == date(2027, 3, 8)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sscard.calendar"):
        cal.add_working_days(date(2027, 3, 2), 30)
        cal.is_working_day(date(2027, 12, 31))
    assert _warnings(caplog) == []


def test_unconfirmed_entry_overrides_single_days_but_still_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(
        tmp_path, {"2027": {"confirmed": False, "holidays": [], "workdays": ["2027-01-01"]}}
    )
    cal = WorkingDayCalendar.from_file(path)
    with caplog.at_level(logging.WARNING, logger="sscard.calendar"):
        assert cal.is_working_day(date(2027, 1, 1))  # override beats the package
        assert not cal.is_working_day(date(2027, 10, 1))  # package still used
    assert not cal.is_confirmed(2027)
    assert len(_warnings(caplog)) == 1


@pytest.mark.parametrize(
    "years",
    [
        {"2027": {"holidays": [], "workdays": []}},  # 'confirmed' missing
        {"2027": {"confirmed": True, "holidays": ["2026-12-31"], "workdays": []}},  # wrong year
        {"2027": {"confirmed": True, "holidays": ["2027-03-06"], "workdays": ["2027-03-06"]}},
        {"2027": {"confirmed": True, "holidays": ["6 March 2027"], "workdays": []}},
        {"2027": {"confirmed": True, "workday": ["2027-03-06"]}},  # typo'd key
        {"27": {"confirmed": True}},
    ],
)
def test_malformed_override_file_is_refused(tmp_path: Path, years: dict[str, object]) -> None:
    with pytest.raises(CalendarFileError):
        WorkingDayCalendar.from_file(_write(tmp_path, years))


def test_a_calendar_reads_its_file_again_once_a_year_is_installed(tmp_path: Path) -> None:
    """Operations load a year while the services run: a calendar answers on the new file after
    ``refresh``, and an estimated count becomes a confirmed one."""
    target = tmp_path / "calendar.json"
    target.write_bytes(SHIPPED.read_bytes())
    calendar = WorkingDayCalendar.from_file(target)
    start = date(2026, 12, 29)
    assert calendar.estimated_between(start, date(2027, 1, 5))
    assert not calendar.refresh()  # nothing changed yet
    year = {"confirmed": True, "holidays": ["2027-01-01", "2027-01-04"], "workdays": []}
    source = tmp_path / "2027.json"
    source.write_text(json.dumps({"years": {"2027": year}}), encoding="utf-8")
    assert install_years(source, target) == [2027]
    assert calendar.refresh()
    assert not calendar.estimated_between(start, date(2027, 1, 5))
    assert not calendar.is_working_day(date(2027, 1, 4))
    assert calendar.is_confirmed(2026)  # the years already there stay


def test_a_malformed_year_is_not_installed_and_a_broken_file_is_not_taken(tmp_path: Path) -> None:
    target = tmp_path / "calendar.json"
    target.write_bytes(SHIPPED.read_bytes())
    calendar = WorkingDayCalendar.from_file(target)
    source = tmp_path / "bad.json"
    source.write_text(
        json.dumps({"years": {"2027": {"confirmed": True, "holidays": ["2028-01-01"]}}}),
        encoding="utf-8",
    )
    with pytest.raises(CalendarFileError):
        install_years(source, target)
    assert target.read_bytes() == SHIPPED.read_bytes()
    target.write_text("{not json", encoding="utf-8")  # written by hand, wrongly
    assert not calendar.refresh()
    assert calendar.is_confirmed(2026)  # the calendar in force stays
