"""The suspension of the financial function while the card is reported lost
(services/bank/domain/account.py): a temporary loss suspends it at once (A13.2), a formal loss
at the issuing bank covers it (A13.4) and is never downgraded, unlocking lifts it (A14.1)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.bank.domain.account import (
    Account,
    AccountStatus,
    IdentityFacts,
    LossKind,
    close,
    lift,
    open_account,
    suspend,
)
from services.platform.errors import DomainError, Kind

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=3)
HOLDER = IdentityFacts("张三", "RESIDENT_ID", "11010519900307002X", dt.date(2036, 1, 1))
TEMPORARY, FORMAL = LossKind.TEMPORARY_LOSS, LossKind.FORMAL_LOSS


def _account() -> Account:
    return open_account("a1", "c1", "ICBC", HOLDER, HOLDER, NOW)


def _state(account: Account) -> tuple[LossKind | None, dt.datetime | None]:
    return account.loss, account.suspended_at


def test_a_new_account_is_not_suspended() -> None:
    account = _account()
    assert _state(account) == (None, None) and not account.suspended


def test_A13_2_a_temporary_loss_suspends_the_financial_function_at_once() -> None:
    suspended = suspend(_account(), TEMPORARY, NOW)
    assert _state(suspended) == (TEMPORARY, NOW) and suspended.suspended
    assert suspended.status is AccountStatus.OPENED


def test_A13_4_a_formal_loss_suspends_an_account_not_yet_suspended() -> None:
    assert _state(suspend(_account(), FORMAL, NOW)) == (FORMAL, NOW)


def test_A13_4_a_formal_loss_upgrades_a_temporary_one_suspended_since_the_first_report() -> None:
    upgraded = suspend(suspend(_account(), TEMPORARY, NOW), FORMAL, LATER)
    assert _state(upgraded) == (FORMAL, NOW)


def test_A13_4_a_formal_loss_is_never_downgraded_by_a_later_temporary_one() -> None:
    formal = suspend(_account(), FORMAL, NOW)
    assert suspend(formal, TEMPORARY, LATER) is formal


@pytest.mark.parametrize("kind", [TEMPORARY, FORMAL])
def test_the_same_loss_reported_again_changes_nothing(kind: LossKind) -> None:
    suspended = suspend(_account(), kind, NOW)
    assert suspend(suspended, kind, LATER) is suspended


@pytest.mark.parametrize("kind", [TEMPORARY, FORMAL])
def test_A14_1_unlocking_lifts_the_suspension(kind: LossKind) -> None:
    lifted = lift(suspend(_account(), kind, NOW))
    assert _state(lifted) == (None, None) and not lifted.suspended
    assert lifted.status is AccountStatus.OPENED


def test_A14_1_lifting_a_suspension_that_is_not_there_changes_nothing() -> None:
    account = _account()
    assert lift(account) is account


def test_after_a_lift_a_new_loss_suspends_again_from_its_own_time() -> None:
    again = suspend(lift(suspend(_account(), FORMAL, NOW)), TEMPORARY, LATER)
    assert _state(again) == (TEMPORARY, LATER)


@pytest.mark.parametrize(
    ("kind", "rule"), [(TEMPORARY, "A13.2"), (FORMAL, "A13.4")], ids=["temporary", "formal"]
)
def test_a_closed_account_refuses_a_suspension(kind: LossKind, rule: str) -> None:
    closed = close(_account(), NOW)
    with pytest.raises(DomainError) as excinfo:
        suspend(closed, kind, LATER)
    error = excinfo.value
    assert (error.reason, error.kind, error.rule) == ("ACCOUNT_CLOSED", Kind.PRECONDITION, rule)


def test_A14_1_a_closed_account_refuses_a_lift() -> None:
    closed = close(suspend(_account(), TEMPORARY, NOW), LATER)
    with pytest.raises(DomainError) as excinfo:
        lift(closed)
    error = excinfo.value
    assert (error.reason, error.kind, error.rule) == ("ACCOUNT_CLOSED", Kind.PRECONDITION, "A14.1")
