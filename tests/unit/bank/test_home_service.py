"""Home service bookings (services/bank/domain/home_service.py): only elderly or disabled
holders (A25.1), a visit day not in the past, a branch of the issuing bank, and the status
REQUESTED -> SCHEDULED -> DONE or CANCELLED."""

from __future__ import annotations

import datetime as dt

import pytest

from services.bank.domain import home_service
from services.bank.domain.home_service import Booking, Business, Slot, Status, move
from services.platform.errors import DomainError, Kind

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=2)
TODAY = dt.date(2026, 3, 2)


def _booking(status: Status = Status.HOME_REQUESTED) -> Booking:
    return Booking(
        home_service_id="h1",
        card_id="c1",
        bank_code="ICBC",
        branch_id="ICBC-0101",
        address="1 Chang'an Avenue",
        date=TODAY,
        slot=Slot.HOME_MORNING,
        business=Business.HOME_ACTIVATION,
        contact_name="李四",
        contact_phone="13812345678",
        note="",
        status=status,
        staff_id="",
        booked_by="clerk",
        booked_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize("flags", [{"ELDERLY"}, {"DISABLED"}, {"PARK_PASS", "ELDERLY"}])
def test_A25_1_elderly_or_disabled_holders_may_book(flags: set[str]) -> None:
    home_service.check_eligible(frozenset(flags))


@pytest.mark.parametrize("flags", [set(), {"PARK_PASS"}])
def test_A25_1_other_holders_may_not_book(flags: set[str]) -> None:
    with pytest.raises(DomainError) as excinfo:
        home_service.check_eligible(frozenset(flags))
    error = excinfo.value
    assert (error.reason, error.rule, error.kind) == (
        "NOT_ELIGIBLE_FOR_HOME_SERVICE",
        "A25.1",
        Kind.PRECONDITION,
    )


def test_A25_1_the_visit_is_today_or_later() -> None:
    home_service.check_slot(TODAY, TODAY)
    home_service.check_slot(TODAY + dt.timedelta(days=3), TODAY)
    with pytest.raises(DomainError) as excinfo:
        home_service.check_slot(TODAY - dt.timedelta(days=1), TODAY)
    assert (excinfo.value.reason, excinfo.value.rule) == ("SLOT_IN_THE_PAST", "A25.1")


def test_A25_1_the_visiting_branch_is_of_the_issuing_bank() -> None:
    home_service.check_branch_bank("ICBC", "ICBC")
    with pytest.raises(DomainError) as excinfo:
        home_service.check_branch_bank("BOC", "ICBC")
    assert excinfo.value.reason == "BRANCH_OF_ANOTHER_BANK"
    with pytest.raises(DomainError) as excinfo:
        home_service.check_branch_bank(None, "ICBC")
    assert excinfo.value.kind is Kind.NOT_FOUND


def test_A25_1_a_booking_is_scheduled_then_done() -> None:
    scheduled = move(_booking(), Status.HOME_SCHEDULED, "staff-7", "", LATER)
    assert (scheduled.status, scheduled.staff_id, scheduled.updated_at) == (
        Status.HOME_SCHEDULED,
        "staff-7",
        LATER,
    )
    done = move(scheduled, Status.HOME_DONE, "", "finished", LATER)
    assert (done.status, done.staff_id, done.note) == (Status.HOME_DONE, "staff-7", "finished")
    assert move(done, Status.HOME_DONE, "", "", LATER) is done


def test_scheduling_names_the_staff() -> None:
    with pytest.raises(DomainError) as excinfo:
        move(_booking(), Status.HOME_SCHEDULED, "", "", LATER)
    assert excinfo.value.reason == "STAFF_REQUIRED"


@pytest.mark.parametrize("start", [Status.HOME_REQUESTED, Status.HOME_SCHEDULED])
def test_a_booking_not_done_may_be_cancelled(start: Status) -> None:
    assert move(_booking(start), Status.HOME_CANCELLED, "", "", LATER).status is (
        Status.HOME_CANCELLED
    )


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (Status.HOME_REQUESTED, Status.HOME_DONE),
        (Status.HOME_DONE, Status.HOME_CANCELLED),
        (Status.HOME_CANCELLED, Status.HOME_SCHEDULED),
        (Status.HOME_DONE, Status.HOME_SCHEDULED),
    ],
)
def test_A25_1_no_other_moves(start: Status, to: Status) -> None:
    with pytest.raises(DomainError) as excinfo:
        move(_booking(start), to, "staff-7", "", LATER)
    assert (excinfo.value.reason, excinfo.value.rule) == ("HOME_SERVICE_WRONG_STATE", "A25.1")
