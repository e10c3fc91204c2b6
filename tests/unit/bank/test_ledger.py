"""The ledger's rules (services/bank/domain/ledger.py): entries never leave a balance below
zero; who may pay out (A9.2, A13.2, A13.4, A16.6, A19.2, A4.5); non-counter suspension by
reason (A19.2); alerts assigned and resolved (A4.5). Pure: no database, no clock."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from services.bank.domain import ledger as rules
from services.bank.domain.account import (
    Account,
    AccountStatus,
    IdentityFacts,
    LossKind,
    open_account,
)
from services.bank.domain.ledger import (
    AccountLedger,
    Alert,
    AlertStatus,
    EntrySource,
    NonCounterReason,
    PaymentChannel,
)
from services.bank.domain.tiers import Tier
from services.platform.errors import DomainError, Kind

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=3)
HOLDER = IdentityFacts("张三", "RESIDENT_ID", "11010519900307002X", dt.date(2036, 1, 1))
ONLINE, COUNTER = PaymentChannel.ONLINE_BANKING, PaymentChannel.COUNTER


def _account(**changes: object) -> Account:
    account = open_account("a1", "c1", "ICBC", HOLDER, HOLDER, NOW)
    return replace(account, **{"financial_activated_at": NOW, **changes})  # type: ignore[arg-type]


def _ledger(balance: int = 0, **changes: object) -> AccountLedger:
    return replace(rules.new_ledger(_account(), Tier.I), balance_fen=balance, **changes)  # type: ignore[arg-type]


def _refusal(call: object) -> tuple[str, str, Kind]:
    with pytest.raises(DomainError) as excinfo:
        call()  # type: ignore[operator]
    return excinfo.value.reason, excinfo.value.rule, excinfo.value.kind


class TestBooking:
    def test_a_credit_raises_the_balance_and_the_entry_records_it(self) -> None:
        ledger, entry = rules.book(
            _ledger(100), "e1", 250, EntrySource.TRANSIT_REFUND, NOW, counterparty="transit"
        )
        assert ledger.balance_fen == entry.balance_after_fen == 350
        assert (entry.amount_fen, entry.card_id, entry.account_id) == (250, "c1", "a1")
        assert not entry.non_counter

    def test_a_debit_may_empty_the_account_but_never_overdraw_it(self) -> None:
        ledger, entry = rules.book(_ledger(100), "e1", -100, EntrySource.COUNTER, NOW)
        assert ledger.balance_fen == entry.balance_after_fen == 0
        reason, _, kind = _refusal(
            lambda: rules.book(_ledger(100), "e2", -101, EntrySource.NON_COUNTER, NOW)
        )
        assert (reason, kind) == ("INSUFFICIENT_FUNDS", Kind.PRECONDITION)

    def test_an_entry_through_a_successor_card_names_that_card(self) -> None:
        _, entry = rules.book(_ledger(0), "e1", 5, EntrySource.TRANSIT_REFUND, NOW, card_id="c2")
        assert (entry.card_id, entry.account_id) == ("c2", "a1")

    def test_a_non_counter_entry_is_one_paid_through_a_non_counter_channel(self) -> None:
        for channel in PaymentChannel:
            _, entry = rules.book(_ledger(9), "e", -1, channel.source, NOW, channel=channel)
            assert entry.non_counter is (channel is not COUNTER)
            assert entry.source is (
                EntrySource.COUNTER if channel is COUNTER else EntrySource.NON_COUNTER
            )

    def test_A23_1_there_is_no_fee_source(self) -> None:
        """A23.1: nothing the ledger books is a fee."""
        assert not [s for s in EntrySource if "FEE" in s.value or "CHARGE" in s.value]


class TestWhoMayPay:
    def test_an_active_open_account_pays_through_any_channel(self) -> None:
        for channel in PaymentChannel:
            rules.check_can_pay(_account(), False, _ledger(), channel)

    def test_A9_2_nothing_leaves_before_the_financial_function_is_activated(self) -> None:
        account = _account(financial_activated_at=None)
        assert _refusal(lambda: rules.check_can_pay(account, False, _ledger(), COUNTER))[:2] == (
            "FINANCIAL_NOT_ACTIVE",
            "A9.2",
        )
        rules.check_can_receive(account, False)  # a credit is accepted

    @pytest.mark.parametrize(
        ("loss", "rule"), [(LossKind.TEMPORARY_LOSS, "A13.2"), (LossKind.FORMAL_LOSS, "A13.4")]
    )
    def test_A13_2_A13_4_nothing_leaves_while_the_card_is_reported_lost(
        self, loss: LossKind, rule: str
    ) -> None:
        account = _account(loss=loss, suspended_at=NOW)
        for channel in (COUNTER, ONLINE):
            assert _refusal(lambda c=channel: rules.check_can_pay(account, False, _ledger(), c))[
                :2
            ] == ("ACCOUNT_SUSPENDED", rule)
        rules.check_can_receive(account, False)

    def test_A16_6_a_destroyed_card_can_do_nothing(self) -> None:
        for call in (
            lambda: rules.check_can_pay(_account(), True, _ledger(), COUNTER),
            lambda: rules.check_can_receive(_account(), True),
            lambda: rules.check_closable(_account(), True),
        ):
            assert _refusal(call)[:2] == ("CARD_DESTROYED", "A16.6")

    def test_a_closed_account_takes_and_gives_nothing(self) -> None:
        account = _account(status=AccountStatus.CLOSED, closed_at=NOW)
        assert _refusal(lambda: rules.check_can_receive(account, False))[0] == "ACCOUNT_CLOSED"
        assert _refusal(lambda: rules.check_can_pay(account, False, _ledger(), COUNTER))[0] == (
            "ACCOUNT_CLOSED"
        )

    @pytest.mark.parametrize(
        ("reason", "rule"),
        [
            (NonCounterReason.SS_CANCELLED, "A19.2"),
            (NonCounterReason.MONITORING_REVIEW, "A4.5"),
            (NonCounterReason.OPERATIONS, "A20.1"),
        ],
    )
    def test_A19_2_a_non_counter_suspension_blocks_non_counter_payments_only(
        self, reason: NonCounterReason, rule: str
    ) -> None:
        ledger = rules.suspend_non_counter(_ledger(), reason, NOW)
        for channel in (
            PaymentChannel.ONLINE_BANKING,
            PaymentChannel.ATM,
            PaymentChannel.THIRD_PARTY,
        ):
            assert _refusal(lambda c=channel: rules.check_can_pay(_account(), False, ledger, c))[
                :2
            ] == ("NON_COUNTER_SUSPENDED", rule)
        rules.check_can_pay(_account(), False, ledger, COUNTER)


class TestNonCounterSuspension:
    def test_A19_2_reasons_add_up_and_lift_one_by_one(self) -> None:
        first = rules.suspend_non_counter(_ledger(), NonCounterReason.SS_CANCELLED, NOW)
        assert rules.suspend_non_counter(first, NonCounterReason.SS_CANCELLED, LATER) is first
        both = rules.suspend_non_counter(first, NonCounterReason.MONITORING_REVIEW, LATER)
        assert both.non_counter_since == NOW  # suspended since the first reason
        one = rules.resume_non_counter(both, NonCounterReason.MONITORING_REVIEW)
        assert one.non_counter == {NonCounterReason.SS_CANCELLED} and one.non_counter_suspended
        assert rules.resume_non_counter(one, NonCounterReason.OPERATIONS) is one
        none = rules.resume_non_counter(one, NonCounterReason.SS_CANCELLED)
        assert not none.non_counter_suspended and none.non_counter_since is None


def _alert(**changes: object) -> Alert:
    alert = Alert(
        "al1", "a1", "c1", "MANY_COUNTERPARTIES", "s", ("e1",), True, "k", AlertStatus.OPEN, NOW
    )
    return replace(alert, **changes)  # type: ignore[arg-type]


class TestAlerts:
    def test_A4_5_an_alert_is_assigned_then_resolved(self) -> None:
        assigned = rules.assign(_alert(), "wang", NOW)
        assert (assigned.status, assigned.assignee, assigned.assigned_at) == (
            AlertStatus.ASSIGNED,
            "wang",
            NOW,
        )
        assert rules.assign(assigned, "wang", LATER) is assigned
        resolved = rules.resolve(assigned, "checked", "ops-li", LATER)
        assert (resolved.status, resolved.resolution, resolved.resolved_by) == (
            AlertStatus.RESOLVED,
            "checked",
            "ops-li",
        )
        assert rules.resolve(resolved, "again", "x", LATER) is resolved
        assert _refusal(lambda: rules.assign(resolved, "zhao", LATER))[:2] == (
            "ALERT_RESOLVED",
            "A4.5",
        )

    def test_A4_5_the_last_open_freezing_alert_lifts_the_review(self) -> None:
        resolved = rules.resolve(_alert(), "ok", "ops", NOW)
        assert rules.lifts_review(resolved, open_freezing=0)
        assert not rules.lifts_review(resolved, open_freezing=1)
        assert not rules.lifts_review(replace(resolved, freeze=False), open_freezing=0)
