"""Working-day deadlines counted through a year whose State Council holiday schedule is not
published yet (the calendar only estimates it): operations see them flagged in ListDeadlines and
in the `sscard_card_deadlines_estimated_calendar` gauge, and when they load the year with
`sscard calendar load`, the running services count the pending deadlines again on it. Real
gRPC, SQLite and PostgreSQL (A21.2, A22.2)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from services.platform import cli
from services.platform.auth import Channel
from services.platform.calendar import (
    SHIPPED_CALENDAR_FILE,
    CalendarOverrides,
    WorkingDayCalendar,
)
from services.platform.clock import BEIJING, SharedTestClock, day_after
from sscard.card.v1 import card_pb2 as pb
from tests.cardsuite import Suite, active_card, wait_until
from tests.conftest import free_port
from tests.scenarios.test_card_deadlines import deadlines
from tests.scenarios.test_card_endings import due, record_death
from tests.scenarios.test_card_replacement import formal_loss
from tests.scenarios.test_operations import samples, scrape

# A schedule for 2027 as operations would load it once the State Council publishes it. The
# test's own: Monday 4 January 2027 is off as well, which no estimate has, so a deadline that
# counts through it moves by one working day.
SCHEDULE_2027 = {
    "source": "test schedule",
    "years": {
        "2027": {
            "confirmed": True,
            "notice": "test notice",
            "holidays": ["2027-01-01", "2027-01-02", "2027-01-03", "2027-01-04"],
            "workdays": [],
        }
    },
}


@pytest.fixture
def calendar_file(tmp_path: Path) -> Path:
    """The override file in force for the services under test: the shipped one (2027 not
    confirmed), copied so that loading a year changes nothing outside the test."""
    path = tmp_path / "calendar.json"
    shutil.copyfile(SHIPPED_CALENDAR_FILE, path)
    return path


@pytest.fixture
def service_env(service_env: dict[str, str], calendar_file: Path) -> dict[str, str]:
    service_env["SSCARD_CALENDAR_FILE"] = str(calendar_file)
    service_env["SSCARD_CARD_METRICS_PORT"] = str(free_port())
    return service_env


def estimated_gauge(suite: Suite) -> dict[str, float]:
    found = samples(scrape(suite.card_server.server.metrics.port))
    return {
        dict(labels)["rule"]: count
        for (name, labels), count in found.items()
        if name == "sscard_card_deadlines_estimated_calendar" and count
    }


def reissue_by_mail(suite: Suite, test_clock: SharedTestClock, at: dt.datetime) -> str:
    test_clock.set(at)
    card_id, person = active_card(suite)
    formal_loss(suite, card_id, person)
    started = suite.card.ReissueCard(
        pb.ReissueCardRequest(
            request_id=suite.rid("reissue"),
            card_id=card_id,
            document=person.document(),
            delivery=pb.DELIVERY_MAIL,
        ),
        metadata=suite.at(Channel.ONLINE, person),
    )
    suite.settle(started.card_id)
    return str(started.card_id)


def test_A21_2_A22_2_deadlines_counted_into_an_unconfirmed_year_are_recounted_when_it_is_loaded(
    suite: Suite, test_clock: SharedTestClock, calendar_file: Path, tmp_path: Path
) -> None:
    """自申请之日起4个工作日内完成制作 (A22.2); 并于10个工作日内完成回收工作 (A21.2).

    A reissue applied for on Tuesday 29 December 2026 and a death recorded that day: both
    counts run into 2027, which the calendar only estimates. Operations see both flagged;
    once 2027's schedule is loaded, both are counted on it, the flag goes, and the holder of
    the reissued card is told the day their card is now due."""
    estimate = WorkingDayCalendar.from_file(calendar_file)
    assert not estimate.is_confirmed(2027)
    tuesday = dt.datetime(2026, 12, 29, 10, 0, tzinfo=BEIJING)
    reissued = reissue_by_mail(suite, test_clock, tuesday)
    person = suite.person()
    started = suite.apply(person)
    suite.settle(started.card_id)
    record_death(suite, person, "death-estimated")
    wait_until(lambda: deadlines(suite, rule="A21.2") != [])

    [production] = deadlines(suite, rule="A22.2")
    [recall] = deadlines(suite, rule="A21.2")
    first_due = estimate.add_working_days(tuesday.date(), 4)
    assert (production.target, due(production)) == (reissued, day_after(first_due))
    assert (recall.target, recall.estimated_calendar) == (started.card_id, True)
    assert production.estimated_calendar
    assert estimated_gauge(suite) == {"A22.2": 1, "A21.2": 1}

    schedule = tmp_path / "2027.json"
    schedule.write_text(json.dumps(SCHEDULE_2027), encoding="utf-8")
    assert cli.main(["calendar", "load", str(schedule), "--into", str(calendar_file)]) == 0

    published = WorkingDayCalendar.from_file(calendar_file)
    assert published.is_confirmed(2027) and published.is_confirmed(2026)
    wait_until(lambda: not any(d.estimated_calendar for d in deadlines(suite)), timeout=30)
    [production] = deadlines(suite, rule="A22.2")
    [recall] = deadlines(suite, rule="A21.2")
    new_due = published.add_working_days(tuesday.date(), 4)
    assert new_due == first_due + dt.timedelta(days=1)  # Monday 4 January is off after all
    assert due(production) == day_after(new_due)
    assert due(recall) == day_after(published.add_working_days(tuesday.date(), 10))
    card = suite.get(reissued, history=True)
    assert (card.due_date.year, card.due_date.month, card.due_date.day) == (
        new_due.year,
        new_due.month,
        new_due.day,
    )
    assert ("person", "A22.2") in [(n.recipient, n.rule) for n in card.notices]
    assert estimated_gauge(suite) == {}


def test_A22_2_a_reissue_counted_within_a_confirmed_year_is_not_flagged(
    suite: Suite, test_clock: SharedTestClock
) -> None:
    """自申请之日起4个工作日内完成制作: counted within 2026, whose schedule is the State
    Council's, the due date is not an estimate."""
    reissued = reissue_by_mail(suite, test_clock, dt.datetime(2026, 12, 1, 10, 0, tzinfo=BEIJING))
    [production] = deadlines(suite, rule="A22.2")
    assert (production.target, production.estimated_calendar) == (reissued, False)


def test_loading_a_malformed_schedule_changes_nothing(
    calendar_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A schedule with a date outside its year is refused whole: the file in force stays."""
    before = calendar_file.read_bytes()
    bad = json.loads(json.dumps(SCHEDULE_2027))
    bad["years"]["2027"]["workdays"] = ["2028-01-08"]
    schedule = tmp_path / "bad.json"
    schedule.write_text(json.dumps(bad), encoding="utf-8")
    assert cli.main(["calendar", "load", str(schedule), "--into", str(calendar_file)]) == 1
    assert "calendar not loaded" in capsys.readouterr().err
    assert calendar_file.read_bytes() == before
    assert CalendarOverrides.load(calendar_file).years.keys() == {2026}
