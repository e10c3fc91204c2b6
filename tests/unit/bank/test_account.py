"""The financial account (services/bank/domain/account.py): the identity compare before opening
(A4.4) and closing as the compensation of an opening."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from services.bank.domain.account import (
    AccountStatus,
    IdentityFacts,
    close,
    compare_identity,
    open_account,
    open_again,
)
from services.platform.errors import DomainError, Kind

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
NUMBER = "11010519900307002X"
VERIFIED = IdentityFacts("张三", "RESIDENT_ID", NUMBER, dt.date(2036, 1, 1))


def _mismatch(presented: IdentityFacts) -> DomainError:
    with pytest.raises(DomainError) as excinfo:
        compare_identity(presented, VERIFIED)
    return excinfo.value


class TestIdentityCompare:
    def test_A4_4_the_same_identity_passes(self) -> None:
        compare_identity(VERIFIED, VERIFIED)

    @pytest.mark.parametrize(
        ("verified_name", "presented_name"),
        [
            ("张三", "张三 "),
            ("Zhang San", " Zhang   San "),
            ("Zhang San", "ＺＨＡＮＧ San"),
            ("Zhang San", "zhang san"),
        ],
        ids=["trailing-space", "inner-spaces", "full-width", "case"],
    )
    def test_A4_4_names_compare_after_unicode_case_and_space_folding(
        self, verified_name: str, presented_name: str
    ) -> None:
        verified = replace(VERIFIED, name=verified_name)
        compare_identity(replace(verified, name=presented_name), verified)

    @pytest.mark.parametrize(
        ("change", "fact", "field"),
        [
            ({"name": "李四"}, "name", "presented.name"),
            ({"document_type": "PASSPORT"}, "document_type", "presented.document.type"),
            (
                {"document_number": "110105199003070038"},
                "document_number",
                "presented.document.number",
            ),
            (
                {"valid_until": dt.date(2035, 12, 31)},
                "valid_until",
                "presented.document_valid_until",
            ),
            ({"valid_until": None}, "valid_until", "presented.document_valid_until"),
        ],
        ids=["name", "document-type", "document-number", "validity", "long-term-vs-dated"],
    )
    def test_A4_4_each_differing_fact_refuses_with_identity_mismatch(
        self, change: dict[str, object], fact: str, field: str
    ) -> None:
        error = _mismatch(replace(VERIFIED, **change))  # type: ignore[arg-type]
        assert (error.reason, error.rule, error.kind) == (
            "IDENTITY_MISMATCH",
            "A4.4",
            Kind.PRECONDITION,
        )
        assert error.metadata["facts"] == fact
        assert [v.field for v in error.violations] == [field]

    def test_A4_4_document_number_compares_exactly(self) -> None:
        error = _mismatch(replace(VERIFIED, document_number=NUMBER.lower()))
        assert error.metadata["facts"] == "document_number"

    def test_A4_4_refusal_names_every_differing_fact_without_echoing_numbers(self) -> None:
        other = "110105199003070038"
        error = _mismatch(IdentityFacts("李四", "RESIDENT_ID", other, None))
        assert error.metadata["facts"] == "name,document_number,valid_until"
        assert "name" in error.message and "document number" in error.message
        texts = [error.message, *(v.description for v in error.violations)]
        assert not any(NUMBER in t or other in t for t in texts)


class TestOpenAndClose:
    def test_A4_4_mismatch_opens_no_account(self) -> None:
        with pytest.raises(DomainError):
            open_account("a1", "c1", "ICBC", replace(VERIFIED, name="李四"), VERIFIED, NOW)

    def test_opened_account_holds_the_verified_identity(self) -> None:
        account = open_account("a1", "c1", "ICBC", replace(VERIFIED, name="张三 "), VERIFIED, NOW)
        assert (account.status, account.holder, account.opened_at) == (
            AccountStatus.OPENED,
            VERIFIED,
            NOW,
        )

    def test_opening_again_for_the_card_returns_its_account(self) -> None:
        account = open_account("a1", "c1", "ICBC", VERIFIED, VERIFIED, NOW)
        assert open_again(account, "ICBC", VERIFIED, VERIFIED) is account

    def test_opening_again_for_another_person_or_bank_is_refused(self) -> None:
        account = open_account("a1", "c1", "ICBC", VERIFIED, VERIFIED, NOW)
        someone_else = replace(VERIFIED, document_number="110105199003070038")
        for bank, facts in (("ABC", VERIFIED), ("ICBC", someone_else)):
            with pytest.raises(DomainError) as excinfo:
                open_again(account, bank, facts, facts)
            assert (excinfo.value.reason, excinfo.value.kind) == (
                "CARD_HAS_ACCOUNT",
                Kind.ALREADY_EXISTS,
            )

    def test_opening_again_a_closed_account_is_refused(self) -> None:
        account = close(open_account("a1", "c1", "ICBC", VERIFIED, VERIFIED, NOW), NOW)
        with pytest.raises(DomainError) as excinfo:
            open_again(account, "ICBC", VERIFIED, VERIFIED)
        assert excinfo.value.reason == "ACCOUNT_CLOSED"

    def test_closing_a_closed_account_changes_nothing(self) -> None:
        closed = close(open_account("a1", "c1", "ICBC", VERIFIED, VERIFIED, NOW), NOW)
        assert (closed.status, closed.closed_at) == (AccountStatus.CLOSED, NOW)
        assert close(closed, NOW + dt.timedelta(days=1)) is closed
