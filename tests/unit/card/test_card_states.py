"""The card's state machine, pure: loss (A13), unlock (A14), activation (A8.1), and a property
test that no sequence of operations reaches a state the rules forbid."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.card.domain import card as rules
from services.card.domain.card import Card, Delivery, Status
from services.platform.auth import Caller, Channel
from services.platform.errors import DomainError

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
WHO = Caller("counter", Channel.DISTRICT_OUTLET)


def card(status: Status = Status.ACTIVE, **changes: object) -> Card:
    base = Card(
        card_id="card-1",
        status=status,
        bank_code="ICBC",
        delivery=Delivery.BRANCH_PICKUP,
        pickup_branch_id="ICBC-1",
        applied_at=NOW,
        holder_name="张三",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


class TestLoss:
    def test_A13_2_a_temporary_loss_suspends_and_remembers_the_state_to_return_to(self) -> None:
        change = rules.report_temporary_loss(card(Status.COLLECTED), WHO, NOW)
        assert change.card.status is Status.TEMPORARILY_LOST
        assert change.card.status_before_loss is Status.COLLECTED
        assert change.transitions[0].rule == "A13.2"

    def test_A13_1_a_card_not_yet_in_the_holders_hands_cannot_be_reported_lost(self) -> None:
        with pytest.raises(DomainError) as excinfo:
            rules.report_temporary_loss(card(Status.IN_PRODUCTION), WHO, NOW)
        assert (excinfo.value.reason, excinfo.value.rule) == ("NOT_IN_HOLDERS_HANDS", "A13.1")

    def test_A13_3_expiry_restores_only_a_temporary_loss(self) -> None:
        lost = rules.report_temporary_loss(card(), WHO, NOW).card
        assert rules.expire_temporary_loss(lost, WHO, NOW).card.status is Status.ACTIVE
        formal = rules.report_formal_loss(lost, False, WHO, NOW).card
        assert rules.expire_temporary_loss(formal, WHO, NOW).card is formal

    def test_A13_4_a_formal_loss_keeps_the_state_before_the_first_loss(self) -> None:
        lost = rules.report_temporary_loss(card(Status.COLLECTED), WHO, NOW).card
        formal = rules.report_formal_loss(lost, True, WHO, NOW)
        assert formal.card.status_before_loss is Status.COLLECTED
        assert "financial" in formal.transitions[0].reason


class TestUnlock:
    def test_A14_3_unlock_needs_a_formal_loss(self) -> None:
        with pytest.raises(DomainError) as excinfo:
            rules.unlock(card(Status.TEMPORARILY_LOST), WHO, NOW)
        assert (excinfo.value.reason, excinfo.value.rule) == ("NOT_FORMALLY_LOST", "A14.3")

    def test_A14_2_a_reissued_card_is_never_unlocked(self) -> None:
        reissued = card(Status.FORMALLY_LOST, replaced_by="card-2")
        with pytest.raises(DomainError) as excinfo:
            rules.unlock(reissued, WHO, NOW)
        assert (excinfo.value.reason, excinfo.value.rule) == ("CARD_REISSUED", "A14.2")

    def test_A14_1_unlock_restores_at_once(self) -> None:
        formal = rules.report_formal_loss(card(), False, WHO, NOW).card
        assert rules.unlock(formal, WHO, NOW).card.status is Status.ACTIVE


OPERATIONS = ["temporary", "formal", "expire", "unlock", "activate", "reissued"]


@given(
    st.lists(st.sampled_from(OPERATIONS), max_size=25),
    st.sampled_from([Status.COLLECTED, Status.ACTIVE]),
)
def test_A13_A14_no_sequence_of_operations_reaches_a_forbidden_state(
    operations: list[str], start: Status
) -> None:
    current = card(start)
    for operation in operations:
        before = current
        try:
            if operation == "temporary":
                current = rules.report_temporary_loss(current, WHO, NOW).card
            elif operation == "formal":
                current = rules.report_formal_loss(current, True, WHO, NOW).card
            elif operation == "expire":
                current = rules.expire_temporary_loss(current, WHO, NOW).card
            elif operation == "unlock":
                current = rules.unlock(current, WHO, NOW).card
                assert before.status is Status.FORMALLY_LOST and not before.replaced_by
            elif operation == "activate":
                current = rules.activate(current, WHO, NOW).card
            else:
                current = replace(current, replaced_by="card-2")
        except DomainError as refusal:
            assert current is before
            assert refusal.rule
        # Invariants the rules demand after every step:
        assert current.status in {Status.COLLECTED, Status.ACTIVE, *rules.LOST}
        assert (current.status in rules.LOST) == (current.status_before_loss is not None)
        if current.status_before_loss is not None:
            assert current.status_before_loss in rules.IN_HAND
        if before.status is Status.FORMALLY_LOST and current.status is not Status.FORMALLY_LOST:
            assert operation == "unlock" and not before.replaced_by  # A14.1–A14.3
        if before.status is Status.TEMPORARILY_LOST and current.status in rules.IN_HAND:
            assert operation in ("expire",)  # A13.3: only the expiry ends a temporary loss


@pytest.mark.parametrize(
    ("reported", "lapses"),
    [
        # 00:00 and 23:59 of 1 March are the same first day, which does not count: the 15th
        # day is 16 March and the loss lapses at its 24:00, Beijing time (16:00 UTC).
        (dt.datetime(2026, 2, 28, 16, 0, tzinfo=dt.UTC), dt.datetime(2026, 3, 16, 16, 0)),
        (dt.datetime(2026, 3, 1, 15, 59, tzinfo=dt.UTC), dt.datetime(2026, 3, 16, 16, 0)),
        (dt.datetime(2026, 3, 1, 16, 0, tzinfo=dt.UTC), dt.datetime(2026, 3, 17, 16, 0)),
    ],
)
def test_A13_3_a_temporary_loss_lapses_at_24_00_of_the_fifteenth_day_after_the_report(
    reported: dt.datetime, lapses: dt.datetime
) -> None:
    """社会保障功能临时挂失的有效期为 15 个自然日。"""
    assert rules.temporary_loss_lapses(reported) == lapses.replace(tzinfo=dt.UTC)


def test_A22_4_a_production_deadline_is_missed_from_midnight_in_beijing() -> None:
    from services.card.deadlines import day_after

    assert day_after(dt.date(2026, 12, 3)) == dt.datetime(2026, 12, 3, 16, 0, tzinfo=dt.UTC)
