"""Cards taken back and destroyed (services/bank/domain/recall.py): the old card of a replacement
(A16.6), a card not handed out (A21.1), a deceased holder's card (A21.2), a card an employer
returned (A7.4); destruction only after a recall, once (A16.6); a destroyed card can do nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from services.bank.domain.recall import (
    MAX_ACTOR,
    RECALL_RULES,
    CardRecall,
    RecallReason,
    actor,
    check_not_destroyed,
    destroy,
    recall,
)
from services.platform.errors import DomainError, Kind
from services.platform.protoconv import enum_name
from sscard.bank.v1 import bank_pb2 as pb

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=3)


def _recalled(reason: RecallReason = RecallReason.REPLACED) -> CardRecall:
    return recall(None, "c1", reason, "card-service", NOW)


def test_reasons_are_the_proto_s_names_each_with_its_rule() -> None:
    assert {r.value for r in RecallReason} == {
        enum_name(pb.RecallReason, v) for v in pb.RecallReason.values() if v
    }
    assert RECALL_RULES == {
        RecallReason.REPLACED: "A16.6",
        RecallReason.NOT_HANDED_OUT: "A21.1",
        RecallReason.HOLDER_DECEASED: "A21.2",
        RecallReason.RETURNED_BY_EMPLOYER: "A7.4",
    }


@pytest.mark.parametrize("reason", list(RecallReason))
def test_a_recall_records_why_when_and_who(reason: RecallReason) -> None:
    recalled = _recalled(reason)
    assert (recalled.card_id, recalled.reason, recalled.recalled_at, recalled.recalled_by) == (
        "c1",
        reason,
        NOW,
        "card-service",
    )
    assert (recalled.destroyed_at, recalled.destroyed_by, recalled.destroyed) == (None, "", False)


def test_recalling_again_with_the_same_reason_changes_nothing() -> None:
    first = _recalled()
    assert recall(first, "c1", RecallReason.REPLACED, "bank-ops/op-2", LATER) is first


def test_recalling_again_with_another_reason_keeps_the_first() -> None:
    first = _recalled(RecallReason.NOT_HANDED_OUT)
    assert recall(first, "c1", RecallReason.HOLDER_DECEASED, "bank-ops", LATER) is first


def test_A16_6_destruction_records_who_and_when() -> None:
    destroyed = destroy(_recalled(), "bank-ops/op-7", LATER)
    assert (destroyed.destroyed_at, destroyed.destroyed_by, destroyed.destroyed) == (
        LATER,
        "bank-ops/op-7",
        True,
    )
    assert (destroyed.reason, destroyed.recalled_at, destroyed.recalled_by) == (
        RecallReason.REPLACED,
        NOW,
        "card-service",
    )


def test_A16_6_a_card_not_recalled_cannot_be_destroyed() -> None:
    with pytest.raises(DomainError) as excinfo:
        destroy(None, "bank-ops", NOW)
    error = excinfo.value
    assert (error.reason, error.kind, error.rule) == ("NOT_RECALLED", Kind.PRECONDITION, "A16.6")


def test_A16_6_destroying_again_changes_nothing() -> None:
    destroyed = destroy(_recalled(), "bank-ops/op-7", NOW)
    assert destroy(destroyed, "bank-ops/op-8", LATER) is destroyed


def test_recalling_a_destroyed_card_changes_nothing() -> None:
    destroyed = destroy(_recalled(), "bank-ops", NOW)
    assert recall(destroyed, "c1", RecallReason.HOLDER_DECEASED, "bank-ops", LATER) is destroyed


def test_A16_6_a_destroyed_card_can_do_nothing() -> None:
    check_not_destroyed(None)
    check_not_destroyed(_recalled())  # taken back, not destroyed yet
    with pytest.raises(DomainError) as excinfo:
        check_not_destroyed(destroy(_recalled(), "bank-ops", NOW))
    error = excinfo.value
    assert (error.reason, error.kind, error.rule) == ("CARD_DESTROYED", Kind.PRECONDITION, "A16.6")


@pytest.mark.parametrize(
    ("caller", "operator", "expected"),
    [
        ("card-service", "", "card-service"),
        ("bank-ops", "op-7", "bank-ops/op-7"),
        ("x" * 300, "op-7", "x" * MAX_ACTOR),
    ],
)
def test_who_is_the_caller_and_its_operator(caller: str, operator: str, expected: str) -> None:
    assert actor(caller, operator) == expected
