"""A card's transit wallet as a ledger: the rules that decide each movement. No I/O.

A movement is an immutable ``Entry``; the wallet's balance after it is the balance before plus
its signed amount, so the balance kept with the wallet always equals the sum of its entries.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace

from services.platform.errors import DomainError, FieldViolation, Kind, invalid
from services.transit.domain import rules


class EntryKind(enum.Enum):
    TOP_UP = "TOP_UP"  # in, A10.1
    REFUND = "REFUND"  # out, to the card's own account (退资, A19.1)
    TRANSFER_OUT = "TRANSFER_OUT"  # out, to a new card's account (A16.3)
    REVERSAL = "REVERSAL"  # in: a refund the bank refused for good, put back


class WalletStatus(enum.Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class RefundReason(enum.Enum):
    AT_BRANCH = "AT_BRANCH"
    REPLACEMENT = "REPLACEMENT"  # A16.3
    CANCELLATION = "CANCELLATION"  # A19.1


class RefundState(enum.Enum):
    NOTHING_TO_REFUND = "NOTHING_TO_REFUND"
    SENDING = "SENDING"
    ARRIVED = "ARRIVED"
    RETURNED_TO_WALLET = "RETURNED_TO_WALLET"


@dataclass(frozen=True)
class CardFacts:
    """What the card service says about a card at the moment of the call."""

    card_id: str
    status: str  # the card service's CardStatus name
    bank_code: str
    person_id: str
    status_version: int = 0  # the status's version, where the card service gave it


@dataclass(frozen=True)
class CardView:
    """Transit's own record of a card's status, as the card service last reported it: a higher
    ``version`` is a newer status. ``person_id`` is the card's holder, which never changes ("":
    not known to transit yet)."""

    card_id: str
    status: str  # the card service's CardStatus name
    version: int
    person_id: str = ""

    @property
    def takes_top_ups(self) -> bool:
        """In its holder's hands and neither lost, replaced nor cancelled (A10.1, A13.2)."""
        return self.status in rules.COLLECTED_STATES


@dataclass(frozen=True)
class Wallet:
    card_id: str
    balance_fen: int
    status: WalletStatus
    closed_reason: RefundReason | None = None
    updated_at: dt.datetime | None = None


@dataclass(frozen=True)
class Entry:
    card_id: str
    kind: EntryKind
    amount_fen: int
    balance_after_fen: int
    reference: str
    channel: str
    outlet_id: str
    booked_at: dt.datetime
    entry_id: int = 0


@dataclass(frozen=True)
class Refund:
    refund_id: str
    card_id: str
    to_card_id: str
    amount_fen: int
    reason: RefundReason
    state: RefundState
    balance_after_fen: int
    created_at: dt.datetime
    arrived_at: dt.datetime | None = None
    bank_entry_id: str = ""
    last_error: str = ""
    attempts: int = 0


@dataclass(frozen=True)
class Movement:
    """A wallet's new state and the entry that explains it."""

    wallet: Wallet
    entry: Entry


def empty_wallet(card_id: str) -> Wallet:
    return Wallet(card_id, 0, WalletStatus.OPEN)


# --- the card's state (A10.1, A10.2, A13.2) ----------------------------------------------------


def card_not_found() -> DomainError:
    """Another person's card answers exactly as a card that does not exist (the card service's
    answer)."""
    return DomainError("CARD_NOT_FOUND", "no such card", kind=Kind.NOT_FOUND)


def check_own(person_id: str, holder: str) -> None:
    """A person's own credential reaches only their own card's wallet and pass."""
    if holder != person_id:
        raise card_not_found()


def check_card_usable(card: CardFacts) -> None:
    """Refuse a card that is not in its holder's hands, or is lost, replaced or cancelled."""
    if card.status in rules.COLLECTED_STATES:
        return
    if card.status in rules.LOST_STATES:
        raise DomainError(
            "CARD_LOST",
            "the card is reported lost: no top-up until it is unlocked",
            rule="A13.2",
            metadata={"card_status": card.status},
        )
    if card.status in rules.BEFORE_COLLECTION:
        raise DomainError(
            "CARD_NOT_COLLECTED",
            "the card can be topped up once its holder has collected it",
            rule="A10.1",
            metadata={"card_status": card.status},
        )
    raise DomainError(
        "CARD_NOT_USABLE",
        "the card is replaced, cancelled or invalid: it takes no top-up",
        rule="A10.2",
        metadata={"card_status": card.status},
    )


# --- top-up (A10.1, A10.2) ---------------------------------------------------------------------


def check_top_up_amount(amount_fen: int) -> None:
    """A10.2: a positive whole-yuan amount no larger than the per-top-up maximum."""
    if amount_fen <= 0 or amount_fen % rules.TOP_UP_UNIT_FEN:
        raise invalid(
            "TOP_UP_NOT_WHOLE_YUAN",
            [FieldViolation("amount_fen", "a positive whole number of yuan (multiple of 100 fen)")],
            rule="A10.2",
        )
    if amount_fen > rules.MAX_TOP_UP_FEN:
        raise invalid(
            "TOP_UP_OVER_MAXIMUM",
            [
                FieldViolation(
                    "amount_fen", f"at most {rules.MAX_TOP_UP_FEN // 100} yuan in one top-up"
                )
            ],
            rule="A10.2",
        )


def wallet_closed(wallet: Wallet) -> DomainError:
    reason = wallet.closed_reason.value if wallet.closed_reason else ""
    return DomainError(
        "WALLET_CLOSED",
        "this card's transit balance was moved out and its wallet closed",
        rule="A10.2",
        metadata={"closed_reason": reason},
    )


def top_up(
    wallet: Wallet,
    amount_fen: int,
    reference: str,
    channel: str,
    outlet_id: str,
    now: dt.datetime,
) -> Movement:
    """Add ``amount_fen`` to an open wallet, never past the balance cap (A10.2)."""
    check_top_up_amount(amount_fen)
    if wallet.status is WalletStatus.CLOSED:
        raise wallet_closed(wallet)
    after = wallet.balance_fen + amount_fen
    if after > rules.BALANCE_CAP_FEN:
        room = rules.BALANCE_CAP_FEN - wallet.balance_fen
        raise DomainError(
            "BALANCE_CAP_EXCEEDED",
            f"the balance may not pass {rules.BALANCE_CAP_FEN // 100} yuan: "
            f"at most {room // 100} yuan more can be topped up",
            rule="A10.2",
            metadata={"room_fen": str(room)},
        )
    return _move(wallet, EntryKind.TOP_UP, amount_fen, reference, channel, outlet_id, now)


def _move(
    wallet: Wallet,
    kind: EntryKind,
    signed_fen: int,
    reference: str,
    channel: str,
    outlet_id: str,
    now: dt.datetime,
    status: WalletStatus | None = None,
    closed_reason: RefundReason | None = None,
) -> Movement:
    after = wallet.balance_fen + signed_fen
    if after < 0:
        raise RuntimeError("a wallet never goes negative")
    moved = replace(
        wallet,
        balance_fen=after,
        updated_at=now,
        status=status or wallet.status,
        closed_reason=closed_reason if closed_reason else wallet.closed_reason,
    )
    entry = Entry(wallet.card_id, kind, signed_fen, after, reference, channel, outlet_id, now)
    return Movement(moved, entry)


# --- refunds (退资, A16.3, A19.1) ---------------------------------------------------------------


def refund_amount(wallet: Wallet, amount_fen: int) -> int:
    """How much a branch refund moves: the whole balance for 0, else ``amount_fen`` if held."""
    if amount_fen < 0:
        raise invalid(
            "INVALID_AMOUNT",
            [FieldViolation("amount_fen", "0 for the whole balance, or a positive amount")],
        )
    if amount_fen == 0:
        return wallet.balance_fen
    if amount_fen > wallet.balance_fen:
        raise DomainError(
            "INSUFFICIENT_BALANCE",
            f"the balance is {wallet.balance_fen} fen: less than the refund asked for",
            metadata={"balance_fen": str(wallet.balance_fen)},
        )
    return amount_fen


def check_nothing_in_flight(reason: RefundReason, in_flight: int) -> None:
    """A refund that closes the wallet (A16.3, A19.1) waits until every earlier refund of the
    card has reached the bank or come back: once the account it went to is closed (the
    cancellation, a bank change), a late credit would be refused and put back into a closed
    wallet whose only refund target is that closed account. A transient refusal: the caller
    (a saga) retries until the outbox is empty."""
    if in_flight and reason in (RefundReason.REPLACEMENT, RefundReason.CANCELLATION):
        raise DomainError(
            "REFUND_IN_FLIGHT",
            f"{in_flight} earlier refund(s) of this card are still on their way to the bank",
            kind=Kind.UNAVAILABLE,
            rule="A16.3" if reason is RefundReason.REPLACEMENT else "A19.1",
        )


def pay_out(
    wallet: Wallet,
    amount_fen: int,
    refund_id: str,
    to_card_id: str,
    reason: RefundReason,
    channel: str,
    outlet_id: str,
    now: dt.datetime,
) -> tuple[Movement | None, Refund, Wallet]:
    """Debit ``amount_fen`` for a refund to ``to_card_id``'s account; a replacement or a
    cancellation also closes the wallet. Nothing to pay is a refund in NOTHING_TO_REFUND."""
    close = reason in (RefundReason.REPLACEMENT, RefundReason.CANCELLATION)
    status = WalletStatus.CLOSED if close else None
    closed_reason = reason if close else None
    if amount_fen == 0:
        closed = replace(wallet, status=status or wallet.status, closed_reason=closed_reason)
        nothing = Refund(
            "", wallet.card_id, to_card_id, 0, reason, RefundState.NOTHING_TO_REFUND, 0, now
        )
        return None, nothing, closed if close else wallet
    kind = EntryKind.TRANSFER_OUT if to_card_id != wallet.card_id else EntryKind.REFUND
    movement = _move(
        wallet, kind, -amount_fen, refund_id, channel, outlet_id, now, status, closed_reason
    )
    refund = Refund(
        refund_id,
        wallet.card_id,
        to_card_id,
        amount_fen,
        reason,
        RefundState.SENDING,
        movement.wallet.balance_fen,
        now,
    )
    return movement, refund, movement.wallet


def reverse(wallet: Wallet, refund: Refund, now: dt.datetime) -> tuple[Movement, Refund]:
    """The bank refused the credit for good: the amount returns to the wallet (open or closed)
    as a REVERSAL entry; the balance cap does not apply to the holder's own money coming back."""
    movement = _move(
        wallet, EntryKind.REVERSAL, refund.amount_fen, refund.refund_id, "INTERNAL", "", now
    )
    return movement, replace(refund, state=RefundState.RETURNED_TO_WALLET)


def refund_not_found() -> DomainError:
    return DomainError("REFUND_NOT_FOUND", "no such refund", kind=Kind.NOT_FOUND)


RETRY_BASE = dt.timedelta(seconds=1)
RETRY_CAP = dt.timedelta(minutes=10)


def retry_delay(attempts: int) -> dt.timedelta:
    """Backoff between the relay's attempts to credit the bank: 1 s doubling up to 10 min."""
    delay: dt.timedelta = RETRY_BASE * (2 ** min(attempts - 1, 20))
    return min(RETRY_CAP, delay)
