"""The ends of a card's life, pure: cancellation (A19.1), a holder's death (A21.2), a card never
handed out (A21.1) and the end of the bank-change lock (A16.7)."""

from __future__ import annotations

import pytest

from services.card.domain import card as rules
from services.card.domain.card import Status
from services.platform.errors import DomainError
from tests.unit.card.test_card_states import NOW, WHO, card


class TestCancel:
    @pytest.mark.parametrize(
        "status",
        [Status.COLLECTED, Status.ACTIVE, Status.TEMPORARILY_LOST, Status.CANCELLATION_DUE],
    )
    def test_A19_1_a_card_in_hand_lost_or_awaiting_the_estate_can_be_cancelled(
        self, status: Status
    ) -> None:
        change = rules.cancel(card(status), False, WHO, NOW)
        assert change.card.status is Status.SS_CANCELLED
        assert change.card.status_before_loss is None
        assert change.transitions[0].rule == "A19.1"

    def test_A19_2_cancelling_the_SS_function_alone_tells_the_holder_about_the_account(
        self,
    ) -> None:
        only_ss = rules.cancel(card(), False, WHO, NOW)
        assert [n.rule for n in only_ss.notices] == ["A19.2"]
        everything = rules.cancel(card(), True, WHO, NOW)
        assert everything.notices == []

    @pytest.mark.parametrize("status", [Status.IN_PRODUCTION, Status.READY, Status.REPLACED])
    def test_A19_1_a_card_never_handed_out_or_replaced_cannot_be_cancelled(
        self, status: Status
    ) -> None:
        with pytest.raises(DomainError) as excinfo:
            rules.cancel(card(status), False, WHO, NOW)
        assert (excinfo.value.reason, excinfo.value.rule) == ("NOT_CANCELLABLE", "A19.1")

    def test_A19_1_cancelling_again_changes_nothing(self) -> None:
        cancelled = rules.cancel(card(), True, WHO, NOW).card
        again = rules.cancel(cancelled, True, WHO, NOW)
        assert again.card is cancelled and again.transitions == []


class TestDeath:
    @pytest.mark.parametrize(
        "status", [Status.APPLIED, Status.IN_PRODUCTION, Status.READY, Status.WITH_EMPLOYER]
    )
    def test_A21_2_issuing_stops_for_a_card_not_handed_out(self, status: Status) -> None:
        change = rules.holder_died(card(status), WHO, NOW)
        assert change.card.status is Status.WITHDRAWN
        assert [(n.recipient, n.rule) for n in change.notices] == [("operations", "A21.2")]

    @pytest.mark.parametrize("status", [Status.ACTIVE, Status.FORMALLY_LOST])
    def test_A21_2_a_card_in_use_awaits_cancellation(self, status: Status) -> None:
        change = rules.holder_died(card(status), WHO, NOW)
        assert change.card.status is Status.CANCELLATION_DUE
        assert [n.rule for n in change.notices] == ["A19.1"]

    @pytest.mark.parametrize("status", [Status.REPLACED, Status.REFUSED, Status.SS_CANCELLED])
    def test_A21_2_a_card_already_ended_stays_as_it_is(self, status: Status) -> None:
        ended = card(status)
        assert rules.holder_died(ended, WHO, NOW).card is ended


class TestNotHandedOut:
    @pytest.mark.parametrize("status", [Status.READY, Status.MAILED, Status.RETURN_DUE])
    def test_A21_1_a_card_with_an_account_still_awaiting_its_holder_is_withdrawn(
        self, status: Status
    ) -> None:
        change = rules.withdraw_not_handed_out(card(status, account_id="acc-1"), WHO, NOW)
        assert change.card.status is Status.WITHDRAWN
        assert change.transitions[0].rule == "A21.1"

    def test_A21_1_a_card_in_its_holders_hands_or_without_an_account_is_left_alone(self) -> None:
        collected = card(Status.COLLECTED, account_id="acc-1")
        assert rules.withdraw_not_handed_out(collected, WHO, NOW).card is collected
        no_account = card(Status.READY)
        assert rules.withdraw_not_handed_out(no_account, WHO, NOW).card is no_account


def test_A16_7_the_lock_ending_is_told_to_a_card_still_in_use_only() -> None:
    assert [n.rule for n in rules.bank_change_lock_ended(card(), NOW).notices] == ["A16.7"]
    assert rules.bank_change_lock_ended(card(Status.REPLACED), NOW).notices == []
