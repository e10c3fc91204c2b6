"""The wallet's rules without I/O: A10.1, A10.2, A13.2, A16.3, A19.1."""

from __future__ import annotations

import datetime as dt

import pytest

from services.platform.errors import DomainError, Kind
from services.transit.domain import rules
from services.transit.domain import wallet as w

NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
YUAN = 100


def card(status: str) -> w.CardFacts:
    return w.CardFacts("card-1", status, "ICBC", "person-1")


def holding(balance: int, status: w.WalletStatus = w.WalletStatus.OPEN) -> w.Wallet:
    return w.Wallet("card-1", balance, status)


def refusal(call: object) -> DomainError:
    with pytest.raises(DomainError) as excinfo:
        call()  # type: ignore[operator]
    return excinfo.value


@pytest.mark.parametrize("status", ["COLLECTED", "ACTIVE"])
def test_A10_1_a_card_in_its_holders_hands_may_be_topped_up(status: str) -> None:
    w.check_card_usable(card(status))


@pytest.mark.parametrize("status", sorted(rules.BEFORE_COLLECTION))
def test_A10_1_a_card_not_collected_yet_is_refused(status: str) -> None:
    error = refusal(lambda: w.check_card_usable(card(status)))
    assert (error.reason, error.rule, error.kind) == (
        "CARD_NOT_COLLECTED",
        "A10.1",
        Kind.PRECONDITION,
    )


@pytest.mark.parametrize("status", ["TEMPORARILY_LOST", "FORMALLY_LOST"])
def test_A13_2_a_lost_card_is_refused(status: str) -> None:
    error = refusal(lambda: w.check_card_usable(card(status)))
    assert (error.reason, error.rule) == ("CARD_LOST", "A13.2")


@pytest.mark.parametrize(
    "status", ["REPLACED", "REFUSED", "SS_CANCELLED", "CANCELLATION_DUE", "WITHDRAWN", "UNKNOWN"]
)
def test_A10_2_a_replaced_cancelled_or_unknown_card_is_refused(status: str) -> None:
    error = refusal(lambda: w.check_card_usable(card(status)))
    assert (error.reason, error.rule) == ("CARD_NOT_USABLE", "A10.2")


@pytest.mark.parametrize("amount", [1, 99, 150, 0, -100])
def test_A10_2_top_ups_are_positive_whole_yuan(amount: int) -> None:
    error = refusal(lambda: w.top_up(holding(0), amount, "r", "TRANSIT_APP", "", NOW))
    assert (error.reason, error.rule, error.kind) == (
        "TOP_UP_NOT_WHOLE_YUAN",
        "A10.2",
        Kind.INVALID,
    )
    assert error.violations[0].field == "amount_fen"


def test_A10_2_one_top_up_is_at_most_the_maximum() -> None:
    error = refusal(
        lambda: w.top_up(holding(0), rules.MAX_TOP_UP_FEN + YUAN, "r", "TRANSIT_APP", "", NOW)
    )
    assert (error.reason, error.rule) == ("TOP_UP_OVER_MAXIMUM", "A10.2")


def test_A10_2_the_balance_cap_is_1000_yuan_and_never_passed() -> None:
    assert rules.BALANCE_CAP_FEN == 1_000 * YUAN
    moved = w.top_up(holding(900 * YUAN), 100 * YUAN, "r", "TRANSIT_APP", "K", NOW)
    assert moved.wallet.balance_fen == rules.BALANCE_CAP_FEN
    assert (moved.entry.amount_fen, moved.entry.balance_after_fen) == (100 * YUAN, 1000 * YUAN)
    error = refusal(lambda: w.top_up(moved.wallet, YUAN, "r2", "TRANSIT_APP", "", NOW))
    assert (error.reason, error.rule, error.metadata["room_fen"]) == (
        "BALANCE_CAP_EXCEEDED",
        "A10.2",
        "0",
    )


def test_A10_2_a_closed_wallet_takes_no_top_up() -> None:
    closed = w.Wallet("card-1", 0, w.WalletStatus.CLOSED, w.RefundReason.REPLACEMENT)
    error = refusal(lambda: w.top_up(closed, YUAN, "r", "TRANSIT_APP", "", NOW))
    assert (error.reason, error.rule) == ("WALLET_CLOSED", "A10.2")


def test_a_branch_refund_pays_part_or_all_of_the_balance_and_never_more() -> None:
    assert w.refund_amount(holding(500), 0) == 500
    assert w.refund_amount(holding(500), 200) == 200
    assert refusal(lambda: w.refund_amount(holding(500), 501)).reason == "INSUFFICIENT_BALANCE"
    movement, refund, after = w.pay_out(
        holding(500), 200, "refund-1", "card-1", w.RefundReason.AT_BRANCH, "BANK_BRANCH", "B", NOW
    )
    assert movement is not None
    assert (movement.entry.kind, movement.entry.amount_fen, after.balance_fen) == (
        w.EntryKind.REFUND,
        -200,
        300,
    )
    assert (refund.state, after.status) == (w.RefundState.SENDING, w.WalletStatus.OPEN)


def test_A16_3_a_replacement_moves_the_whole_balance_out_and_closes_the_wallet() -> None:
    movement, refund, after = w.pay_out(
        holding(300), 300, "refund-2", "card-2", w.RefundReason.REPLACEMENT, "INTERNAL", "", NOW
    )
    assert movement is not None and movement.entry.kind is w.EntryKind.TRANSFER_OUT
    assert (after.balance_fen, after.status, after.closed_reason) == (
        0,
        w.WalletStatus.CLOSED,
        w.RefundReason.REPLACEMENT,
    )
    assert (refund.to_card_id, refund.amount_fen) == ("card-2", 300)


def test_A19_1_a_zero_balance_closes_the_wallet_and_moves_nothing() -> None:
    movement, refund, after = w.pay_out(
        holding(0), 0, "refund-3", "card-1", w.RefundReason.CANCELLATION, "INTERNAL", "", NOW
    )
    assert movement is None
    assert refund.state is w.RefundState.NOTHING_TO_REFUND
    assert after.status is w.WalletStatus.CLOSED


def test_a_refund_the_bank_refuses_for_good_returns_to_the_wallet() -> None:
    _, refund, after = w.pay_out(
        holding(300), 300, "refund-4", "card-2", w.RefundReason.REPLACEMENT, "INTERNAL", "", NOW
    )
    back, returned = w.reverse(after, refund, NOW)
    assert (back.entry.kind, back.entry.amount_fen, back.wallet.balance_fen) == (
        w.EntryKind.REVERSAL,
        300,
        300,
    )
    assert returned.state is w.RefundState.RETURNED_TO_WALLET
    assert back.wallet.status is w.WalletStatus.CLOSED  # still takes no top-up


def test_the_relay_backs_off_up_to_ten_minutes() -> None:
    assert w.retry_delay(1) == dt.timedelta(seconds=1)
    assert w.retry_delay(3) == dt.timedelta(seconds=4)
    assert w.retry_delay(50) == dt.timedelta(minutes=10)
