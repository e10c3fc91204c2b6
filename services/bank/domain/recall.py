"""Cards taken back by the bank and destroyed: the old card of a replacement or reissue (A16.6),
a card with a financial function not handed out within 6 months (A21.1), a deceased holder's
card (A21.2), a card an employer returned (A7.4).

One record per card. It is recalled once: recalling it again, for the same reason or another,
keeps the first recall (the same object is returned). It is destroyed only once recalled
(NOT_RECALLED, A16.6) and only once: destroying it again keeps the first destruction. A
destroyed card can do nothing: it is not made, and its financial function is neither suspended
nor restored (CARD_DESTROYED, A16.6). Who recorded each step is the credential's caller, plus
``/`` and its operator when it names one.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace

from services.platform.errors import DomainError, Kind

DESTRUCTION_RULE = "A16.6"
MAX_ACTOR = 200  # the width of recalled_by / destroyed_by


class RecallReason(enum.Enum):
    """Why a card is taken back; the names of sscard.bank.v1.RecallReason."""

    REPLACED = "REPLACED"  # the old card of a replacement or reissue (A16.6)
    NOT_HANDED_OUT = "NOT_HANDED_OUT"  # not handed to its holder within 6 months (A21.1)
    HOLDER_DECEASED = "HOLDER_DECEASED"  # the holder died (A21.2)
    RETURNED_BY_EMPLOYER = "RETURNED_BY_EMPLOYER"  # an employer could not hand it out (A7.4)


RECALL_RULES = {
    RecallReason.REPLACED: "A16.6",
    RecallReason.NOT_HANDED_OUT: "A21.1",
    RecallReason.HOLDER_DECEASED: "A21.2",
    RecallReason.RETURNED_BY_EMPLOYER: "A7.4",
}


@dataclass(frozen=True)
class CardRecall:
    card_id: str
    reason: RecallReason
    recalled_at: dt.datetime
    recalled_by: str
    destroyed_at: dt.datetime | None = None  # None: not destroyed yet
    destroyed_by: str = ""

    @property
    def destroyed(self) -> bool:
        return self.destroyed_at is not None


def actor(caller: str, operator_id: str = "") -> str:
    """Who did it: the credential's caller, and ``/<operator_id>`` when it names an operator."""
    who = f"{caller}/{operator_id}" if operator_id else caller
    return who[:MAX_ACTOR]


def card_not_found() -> DomainError:
    return DomainError(
        "CARD_NOT_FOUND",
        "no card of this bank has that id: it has no production order",
        kind=Kind.NOT_FOUND,
    )


def recall_not_found() -> DomainError:
    return DomainError(
        "RECALL_NOT_FOUND", "the bank has not taken this card back", kind=Kind.NOT_FOUND
    )


def recall(
    existing: CardRecall | None,
    card_id: str,
    reason: RecallReason,
    by: str,
    now: dt.datetime,
) -> CardRecall:
    """Record the card taken back; a card recalled already keeps its first recall."""
    if existing is not None:
        return existing
    return CardRecall(card_id, reason, now, by)


def destroy(existing: CardRecall | None, by: str, now: dt.datetime) -> CardRecall:
    """Record the card destroyed (A16.6): it must have been taken back first; a card destroyed
    already keeps its first destruction."""
    if existing is None:
        raise DomainError(
            "NOT_RECALLED",
            "the card must be taken back before it is destroyed",
            rule=DESTRUCTION_RULE,
        )
    if existing.destroyed:
        return existing
    return replace(existing, destroyed_at=now, destroyed_by=by)


def check_not_destroyed(existing: CardRecall | None) -> None:
    """A destroyed card can do nothing (A16.6)."""
    if existing is not None and existing.destroyed:
        raise DomainError("CARD_DESTROYED", "the card has been destroyed", rule=DESTRUCTION_RULE)
