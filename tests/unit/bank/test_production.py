"""Production orders (services/bank/domain/production.py): due dates (A22.1 natural days, A22.2
working days), instant production (A22.3), the order's states and the notice backoff (A7.1)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.bank.domain.branch import Branch, issues_on_the_spot
from services.bank.domain.production import (
    Delivery,
    OrderRequest,
    OrderStatus,
    ProductionKind,
    ProductionOrder,
    cancel,
    due_date,
    is_set_aside_for_destruction,
    needs_production,
    new_order,
    produce,
    retry_delay,
    same_order,
)
from services.platform.calendar import WorkingDayCalendar
from services.platform.clock import BEIJING
from services.platform.errors import DomainError

CALENDAR = WorkingDayCalendar.from_file(
    Path(__file__).resolve().parents[3] / "deploy/calendar/cn-workdays.json"
)
NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)


def beijing(year: int, month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=BEIJING)


def order_request(
    kind: ProductionKind = ProductionKind.FIRST, applied_at: dt.datetime = NOW
) -> OrderRequest:
    return OrderRequest(
        card_id="card-1",
        bank_code="ICBC",
        account_id="acc-1",
        kind=kind,
        applied_at=applied_at,
        applied_at_branch_id="",
        delivery=Delivery.BRANCH_PICKUP,
        pickup_branch_id="icbc-1",
    )


def ordered(instant: bool = False) -> ProductionOrder:
    return new_order("order-1", order_request(), instant, CALENDAR, NOW)


class TestDueDates:
    @pytest.mark.parametrize(
        ("applied_at", "due"),
        [
            (beijing(2026, 3, 2), dt.date(2026, 4, 1)),
            (beijing(2026, 1, 31), dt.date(2026, 3, 2)),  # across a short February
            (beijing(2026, 12, 15), dt.date(2027, 1, 14)),  # across the year end
            (beijing(2026, 9, 30), dt.date(2026, 10, 30)),  # holidays count as natural days
        ],
    )
    def test_A22_1_first_card_is_due_30_natural_days_after_the_application(
        self, applied_at: dt.datetime, due: dt.date
    ) -> None:
        assert due_date(ProductionKind.FIRST, applied_at, CALENDAR) == due

    def test_A22_1_days_count_from_the_beijing_date_of_the_application(self) -> None:
        late_evening_utc = dt.datetime(2026, 1, 31, 17, 0, tzinfo=dt.UTC)  # 1 Feb 01:00 Beijing
        assert due_date(ProductionKind.FIRST, late_evening_utc, CALENDAR) == dt.date(2026, 3, 3)

    @pytest.mark.parametrize("kind", [ProductionKind.REISSUE, ProductionKind.REPLACEMENT])
    def test_A22_2_reissue_and_replacement_are_due_4_working_days_later(
        self, kind: ProductionKind
    ) -> None:
        # Wed 30 Sep; 1-7 Oct off; Thu 8, Fri 9, Sat 10 (make-up day), Mon 12.
        assert due_date(kind, beijing(2026, 9, 30), CALENDAR) == dt.date(2026, 10, 12)

    def test_A22_2_weekend_does_not_count(self) -> None:
        # Thu 5 Mar 2026: Fri 6, Mon 9, Tue 10, Wed 11.
        assert due_date(ProductionKind.REISSUE, beijing(2026, 3, 5), CALENDAR) == dt.date(
            2026, 3, 11
        )

    def test_A22_3_instant_order_is_due_the_day_of_the_application(self) -> None:
        order = new_order(
            "o", order_request(applied_at=beijing(2026, 3, 2, 9)), True, CALENDAR, NOW
        )
        assert (order.instant, order.due_date) == (True, dt.date(2026, 3, 2))

    def test_mailed_card_has_no_pickup_branch(self) -> None:
        request = order_request()
        mailed = OrderRequest(**{**request.__dict__, "delivery": Delivery.MAIL})
        assert new_order("o", mailed, False, CALENDAR, NOW).pickup_branch_id == ""


class TestInstantBranches:
    def test_A22_3_only_an_instant_branch_of_the_chosen_bank_makes_cards_on_the_spot(
        self,
    ) -> None:
        instant = Branch("ICBC", "icbc-1", "Xidan", True, "")
        plain = Branch("ICBC", "icbc-2", "Dongdan", False, "")
        assert issues_on_the_spot(instant, "ICBC")
        assert not issues_on_the_spot(plain, "ICBC")
        assert not issues_on_the_spot(instant, "ABC")  # another bank's instant branch
        assert not issues_on_the_spot(None, "ICBC")  # not at a registered branch


class TestOrderStates:
    def test_ordered_becomes_produced_with_its_number(self) -> None:
        made = produce(ordered(), "9001000000000000018", NOW)
        assert (made.status, made.card_number, made.produced_at) == (
            OrderStatus.PRODUCED,
            "9001000000000000018",
            NOW,
        )

    def test_producing_again_changes_nothing(self) -> None:
        made = produce(ordered(), "9001000000000000018", NOW)
        assert not needs_production(made)
        assert produce(made, "9001000000000000026", NOW) is made

    def test_cancelled_order_is_never_produced(self) -> None:
        with pytest.raises(DomainError) as excinfo:
            produce(cancel(ordered(), NOW), "9001000000000000018", NOW)
        assert (excinfo.value.reason, excinfo.value.rule) == ("ORDER_CANCELLED", "A7.1")

    def test_cancelling_an_order_not_yet_made(self) -> None:
        cancelled = cancel(ordered(), NOW)
        assert cancelled.status is OrderStatus.CANCELLED
        assert not is_set_aside_for_destruction(cancelled)

    def test_cancelling_a_made_card_sets_it_aside_for_destruction(self) -> None:
        cancelled = cancel(produce(ordered(), "9001000000000000018", NOW), NOW)
        assert cancelled.status is OrderStatus.CANCELLED
        assert cancelled.card_number == "9001000000000000018"
        assert is_set_aside_for_destruction(cancelled)

    def test_cancelling_again_changes_nothing(self) -> None:
        cancelled = cancel(ordered(), NOW)
        assert cancel(cancelled, NOW + dt.timedelta(hours=1)) is cancelled


class TestOrderingAgain:
    def test_ordering_the_same_card_again_returns_its_order(self) -> None:
        order = ordered()
        assert same_order(order, order_request()) is order

    def test_a_different_order_for_the_same_card_is_refused(self) -> None:
        with pytest.raises(DomainError) as excinfo:
            same_order(ordered(), order_request(kind=ProductionKind.REISSUE))
        assert excinfo.value.reason == "CARD_ALREADY_ORDERED"


class TestNoticeBackoff:
    def test_A7_1_retries_back_off_exponentially_up_to_a_minute(self) -> None:
        delays = [retry_delay(n).total_seconds() for n in range(1, 12)]
        assert delays[:5] == [0.5, 1, 2, 4, 8]
        assert delays[-1] == 60
        assert delays == sorted(delays)
