"""Home service (A25.1) over real gRPC against real identity, bank and card services, on SQLite
and PostgreSQL: an elderly or disabled holder books a visit from the issuing bank's branch,
someone else is refused, and the branch's staff take the booking from REQUESTED through
SCHEDULED to DONE."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc

from services.platform.auth import Channel, Role
from services.platform.clock import SharedTestClock, beijing_date
from sscard.bank.v1 import counter_pb2 as cpb
from sscard.identity.v1 import identity_pb2
from tests.cardsuite import BANK, BRANCH, INSTANT, OTHER_INSTANT
from tests.scenarios.test_bank_counter import Counter, counter, refused
from tests.support import PersonSpec, date_pb

__all__ = ["counter"]  # the fixture


def _book(
    counter: Counter,
    card_id: str,
    day: dt.date,
    metadata: Any = None,
    request_id: str = "",
    branch_id: str = BRANCH,
) -> cpb.HomeService:
    return counter.stub.BookHomeService(
        cpb.BookHomeServiceRequest(
            request_id=request_id or counter.suite.rid("home"),
            card_id=card_id,
            branch_id=branch_id,
            address="Room 301, 5 Dongsi Street, Dongcheng",
            date=date_pb(day),
            slot=cpb.HOME_SLOT_HOME_MORNING,
            business=cpb.HOME_BUSINESS_HOME_ACTIVATION,
            contact_name="李四",
            contact_phone="13812345678",
        ),
        metadata=metadata or counter.suite.at(Channel.BANK_HOTLINE),
    )


def _update(
    counter: Counter, home_id: str, status: int, staff_id: str = "", metadata: Any = None
) -> cpb.HomeService:
    return counter.stub.UpdateHomeService(
        cpb.UpdateHomeServiceRequest(
            request_id=counter.suite.rid("upd"),
            home_service_id=home_id,
            status=status,  # type: ignore[arg-type]
            staff_id=staff_id,
        ),
        metadata=metadata or counter.suite.branch(BANK, BRANCH),
    )


def _elderly(counter: Counter) -> tuple[str, PersonSpec]:
    return counter.collected_card(
        counter.suite.person(preferential=(identity_pb2.PREFERENTIAL_TREATMENT_ELDERLY,))
    )


def test_A25_1_an_elderly_holder_books_a_visit_tracked_until_done(
    counter: Counter, test_clock: SharedTestClock
) -> None:
    card_id, _ = _elderly(counter)
    tomorrow = beijing_date(test_clock.now()) + dt.timedelta(days=1)
    booked = _book(counter, card_id, tomorrow, request_id="home-once")
    assert booked.status == cpb.HOME_SERVICE_STATUS_HOME_REQUESTED
    assert (booked.bank_code, booked.branch_id, booked.contact_phone_masked) == (
        BANK,
        BRANCH,
        "138****5678",
    )
    assert "13812345678" not in str(booked)
    assert _book(counter, card_id, tomorrow, request_id="home-once") == booked

    staff = counter.suite.branch(BANK, BRANCH)
    listed = counter.stub.ListHomeServices(
        cpb.ListHomeServicesRequest(
            branch_id=BRANCH, status=cpb.HOME_SERVICE_STATUS_HOME_REQUESTED
        ),
        metadata=staff,
    )
    assert [h.home_service_id for h in listed.home_services] == [booked.home_service_id]

    scheduled = _update(
        counter, booked.home_service_id, cpb.HOME_SERVICE_STATUS_HOME_SCHEDULED, "staff-7"
    )
    assert (scheduled.status, scheduled.staff_id) == (
        cpb.HOME_SERVICE_STATUS_HOME_SCHEDULED,
        "staff-7",
    )
    done = _update(counter, booked.home_service_id, cpb.HOME_SERVICE_STATUS_HOME_DONE)
    assert done.status == cpb.HOME_SERVICE_STATUS_HOME_DONE
    seen = counter.stub.GetHomeService(
        cpb.GetHomeServiceRequest(home_service_id=booked.home_service_id), metadata=staff
    )
    assert (seen.status, seen.staff_id) == (cpb.HOME_SERVICE_STATUS_HOME_DONE, "staff-7")
    assert refused(
        lambda: _update(counter, booked.home_service_id, cpb.HOME_SERVICE_STATUS_HOME_CANCELLED)
    )[1:] == (
        "HOME_SERVICE_WRONG_STATE",
        "A25.1",
    )
    # Only the visiting branch's staff work the booking.
    other_branch = counter.suite.branch(BANK, INSTANT)
    code, reason, rule = refused(
        lambda: counter.stub.ListHomeServices(
            cpb.ListHomeServicesRequest(branch_id=BRANCH), metadata=other_branch
        )
    )
    assert (code, reason, rule) == (grpc.StatusCode.PERMISSION_DENIED, "BRANCH_STAFF_ONLY", "A25.1")


def test_A25_1_a_branch_pages_through_its_bookings_earliest_visit_first(
    counter: Counter, test_clock: SharedTestClock
) -> None:
    card_id, _ = _elderly(counter)
    today = beijing_date(test_clock.now())
    later = _book(counter, card_id, today + dt.timedelta(days=5))
    sooner = _book(counter, card_id, today + dt.timedelta(days=2))
    staff = counter.suite.branch(BANK, BRANCH)
    seen: list[str] = []
    token = ""
    while True:
        page = counter.stub.ListHomeServices(
            cpb.ListHomeServicesRequest(branch_id=BRANCH, page_size=1, page_token=token),
            metadata=staff,
        )
        seen.extend(h.home_service_id for h in page.home_services)
        token = page.next_page_token
        if not token:
            break
    assert seen == [sooner.home_service_id, later.home_service_id]


def test_A25_1_a_disabled_holder_may_book_and_cancel(
    counter: Counter, test_clock: SharedTestClock
) -> None:
    card_id, _ = counter.collected_card(
        counter.suite.person(preferential=(identity_pb2.PREFERENTIAL_TREATMENT_DISABLED,))
    )
    today = beijing_date(test_clock.now())
    booked = _book(counter, card_id, today, metadata=counter.suite.branch(BANK, INSTANT))
    assert booked.status == cpb.HOME_SERVICE_STATUS_HOME_REQUESTED
    assert _update(
        counter, booked.home_service_id, cpb.HOME_SERVICE_STATUS_HOME_CANCELLED
    ).status == (cpb.HOME_SERVICE_STATUS_HOME_CANCELLED)


def test_A25_1_a_holder_neither_elderly_nor_disabled_is_refused(
    counter: Counter, test_clock: SharedTestClock
) -> None:
    card_id, _ = counter.collected_card(
        counter.suite.person(preferential=(identity_pb2.PREFERENTIAL_TREATMENT_PARK_PASS,))
    )
    tomorrow = beijing_date(test_clock.now()) + dt.timedelta(days=1)
    assert refused(lambda: _book(counter, card_id, tomorrow, request_id="home-no")) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_ELIGIBLE_FOR_HOME_SERVICE",
        "A25.1",
    )
    assert refused(lambda: _book(counter, card_id, tomorrow, request_id="home-no"))[1] == (
        "NOT_ELIGIBLE_FOR_HOME_SERVICE"
    )


def test_A25_1_the_visit_is_not_in_the_past_and_comes_from_the_issuing_bank(
    counter: Counter, test_clock: SharedTestClock
) -> None:
    card_id, _ = _elderly(counter)
    today = beijing_date(test_clock.now())
    assert refused(lambda: _book(counter, card_id, today - dt.timedelta(days=1)))[1:] == (
        "SLOT_IN_THE_PAST",
        "A25.1",
    )
    assert refused(lambda: _book(counter, card_id, today, branch_id=OTHER_INSTANT))[1:] == (
        "BRANCH_OF_ANOTHER_BANK",
        "A25.1",
    )
    district = counter.suite.at(Channel.DISTRICT_OUTLET, outlet_id="dongcheng-01")
    assert refused(lambda: _book(counter, card_id, today, metadata=district)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "CHANNEL_NOT_ALLOWED",
        "A3.1",
    )
    ops = counter.suite.token(roles=(Role.OPS,), caller="ops")
    listed = counter.stub.ListHomeServices(
        cpb.ListHomeServicesRequest(branch_id=BRANCH), metadata=ops
    )
    assert list(listed.home_services) == []
