"""The financial function at the issuing bank's counter (services/bank/domain/financial.py):
only the issuing bank's counter with the holder's document and card activates it (A9.1), the
activation request ends DONE only with the SS function (A9.2), the financial password follows
the bank's rules (A12.3) and locks after 5 wrong tries."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from services.bank.domain import financial
from services.bank.domain.account import Account, IdentityFacts, close, open_account
from services.bank.domain.financial import (
    ActivationState,
    PasswordState,
    Presented,
    after_try,
    password_problem,
)
from services.platform.auth import Caller, Channel, Role
from services.platform.errors import DomainError, Kind

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)
NUMBER = "11010519900307002X"
HOLDER = IdentityFacts("张三", "RESIDENT_ID", NUMBER, dt.date(2036, 1, 1))
BIRTH = financial.birth_digits("RESIDENT_ID", NUMBER)


def _account() -> Account:
    return open_account("a1", "c1", "ICBC", HOLDER, HOLDER, NOW)


def _counter(channel: Channel = Channel.BANK_BRANCH, bank: str = "ICBC") -> Caller:
    return Caller("clerk", channel, frozenset({Role.COUNTER}), bank_code=bank)


class TestCounter:
    def test_A9_1_the_document_must_be_the_holders(self) -> None:
        financial.check_holder(_account(), Presented("RESIDENT_ID", NUMBER), "A9.1")
        with pytest.raises(DomainError) as excinfo:
            financial.check_holder(_account(), Presented("PASSPORT", NUMBER), "A9.1")
        assert (excinfo.value.reason, excinfo.value.rule) == ("IDENTITY_MISMATCH", "A9.1")
        assert [v.field for v in excinfo.value.violations] == ["document.type"]
        assert NUMBER not in str(excinfo.value)

    def test_A9_1_the_card_must_be_the_accounts_card(self) -> None:
        financial.check_card(
            "9001000000000001", Presented("RESIDENT_ID", NUMBER, "9001000000000001")
        )
        for presented_number in ("9001000000000002", ""):
            with pytest.raises(DomainError) as excinfo:
                financial.check_card(
                    "9001000000000001", Presented("RESIDENT_ID", NUMBER, presented_number)
                )
            assert (excinfo.value.reason, excinfo.value.rule) == ("CARD_MISMATCH", "A9.1")


class TestActivation:
    def test_A9_2_a_request_is_done_only_with_the_ss_function(self) -> None:
        account = _account()
        request = financial.request_activation(None, "act-1", account, "clerk", NOW)
        assert request.state is ActivationState.REQUESTED
        assert not financial.is_active(account)
        done, active = financial.activation_done(request, account, LATER)
        assert done.state is ActivationState.DONE and done.finished_at == LATER
        assert active.financial_activated_at == LATER and financial.is_active(active)

    def test_A9_2_a_refusal_keeps_the_financial_function_inactive(self) -> None:
        account = _account()
        request = financial.request_activation(None, "act-1", account, "clerk", NOW)
        refusal = DomainError("NOT_COLLECTED", "not collected", rule="A8.1")
        refused = financial.activation_refused(request, refusal, LATER)
        assert refused.state is ActivationState.REFUSED
        assert refused.refusal == "NOT_COLLECTED A8.1"
        assert not financial.is_active(account)

    def test_a_retry_keeps_the_first_request_and_activation_time(self) -> None:
        account = _account()
        first = financial.request_activation(None, "act-1", account, "clerk", NOW)
        assert financial.request_activation(first, "act-1", account, "clerk", LATER) is first
        done, active = financial.activation_done(first, account, NOW)
        again_request, again = financial.activation_done(done, active, LATER)
        assert again_request is done and again is active
        assert again.financial_activated_at == NOW

    def test_a_closed_account_is_not_activated(self) -> None:
        closed = close(_account(), NOW)
        with pytest.raises(DomainError) as excinfo:
            financial.request_activation(None, "act-1", closed, "clerk", NOW)
        assert (excinfo.value.reason, excinfo.value.rule) == ("ACCOUNT_CLOSED", "A9.1")


class TestPasswordRules:
    def test_the_birth_date_is_read_from_a_resident_id(self) -> None:
        assert BIRTH == "19900307"
        assert financial.birth_digits("PASSPORT", "E12345678") == ""

    @pytest.mark.parametrize(
        ("password", "problem"),
        [
            ("12345", "BAD_FORMAT"),
            ("1234567", "BAD_FORMAT"),
            ("12a456", "BAD_FORMAT"),
            ("１２３４５６", "BAD_FORMAT"),
            ("000000", "TOO_WEAK"),
            ("777777", "TOO_WEAK"),
            ("123456", "TOO_WEAK"),
            ("654321", "TOO_WEAK"),
            ("890123", "TOO_WEAK"),
            ("900307", "BIRTH_DATE"),
            ("199003", "BIRTH_DATE"),
            ("990030", "BIRTH_DATE"),
            ("583920", ""),
            ("135790", ""),
        ],
    )
    def test_A12_3_the_financial_password_follows_the_banks_rules(
        self, password: str, problem: str
    ) -> None:
        assert password_problem(password, BIRTH) == problem

    def test_A12_3_a_weak_password_is_refused_with_its_field(self) -> None:
        with pytest.raises(DomainError) as excinfo:
            financial.check_new_password("900307", BIRTH)
        error = excinfo.value
        assert (error.reason, error.rule, error.kind) == (
            "WEAK_FINANCIAL_PASSWORD",
            "A12.3",
            Kind.INVALID,
        )
        assert [(v.field, v.reason) for v in error.violations] == [("new_password", "BIRTH_DATE")]


class TestLockout:
    def test_A12_3_five_wrong_tries_in_a_row_lock_until_reset(self) -> None:
        state = PasswordState("a1", "hash")
        for left in (4, 3, 2, 1):
            state = after_try(state, correct=False)
            assert not state.locked and state.tries_left == left
        state = after_try(state, correct=False)
        assert state.locked and state.tries_left == 0
        assert after_try(state, correct=True) is state  # a locked password stays locked
        reset = financial.set_new(state, "new-hash", LATER)
        assert not reset.locked and reset.failures == 0 and reset.hash == "new-hash"

    def test_a_right_try_clears_the_count(self) -> None:
        state = after_try(after_try(PasswordState("a1", "hash"), False), False)
        assert state.failures == 2
        assert after_try(state, correct=True).failures == 0

    def test_A12_3_the_first_password_is_set_once(self) -> None:
        first = financial.set_first(PasswordState("a1"), "hash", NOW)
        assert first.hash == "hash" and first.changed_at == NOW
        with pytest.raises(DomainError) as excinfo:
            financial.set_first(first, "other", LATER)
        assert (excinfo.value.reason, excinfo.value.rule) == (
            "FINANCIAL_PASSWORD_ALREADY_SET",
            "A12.3",
        )

    def test_a_change_clears_a_count_of_wrong_tries(self) -> None:
        state = replace(PasswordState("a1", "hash"), failures=3)
        assert financial.set_new(state, "new", NOW).failures == 0


class TestReservedPhone:
    def test_A20_1_the_reserved_phone_is_a_mobile_number(self) -> None:
        from services.platform.errors import Violations

        for phone, ok in (("13812345678", True), ("23812345678", False), ("1381234567", False)):
            v = Violations()
            financial.check_phone(phone, "phone", v)
            assert (not v.items) is ok
