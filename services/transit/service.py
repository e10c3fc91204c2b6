"""Transit use cases: one function per operation, each run inside the unit of work it is given,
and the relay that carries refunds to the bank (A16.3, A19.1).

Transport-free: the servicer (``api.py``) asks the card and identity services what it needs
before the transaction (a unit of work never spans a call to another service), decodes requests
into these arguments and encodes the results; the caller of a mutating use case commits
(through the idempotency runner). A top-up decides on transit's own view of the card
(``card_status``, pushed by the card service: its status and its holder, for a person's own
top-up) and asks the card service only when that view cannot allow it (``CardViewUnsettled``).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import replace

from services.platform import idempotency, logs
from services.platform.auth import Caller
from services.platform.clock import Clock
from services.platform.db import Database
from services.platform.drain import RelayDrain
from services.platform.errors import DomainError, Kind
from services.platform.idempotency import OneStatement
from services.transit import card_view_store
from services.transit.clients import LedgerPort
from services.transit.domain import park_pass as passes
from services.transit.domain import rules
from services.transit.domain import wallet as wallets
from services.transit.domain.park_pass import ParkPass
from services.transit.domain.wallet import (
    CardFacts,
    CardView,
    Entry,
    EntryKind,
    Refund,
    RefundReason,
    RefundState,
    Wallet,
)
from services.transit.store import TransitUnitOfWork

log = logging.getLogger("sscard.transit")

RELAY_BATCH = 8
RELAY_LEASE = dt.timedelta(seconds=30)
RELAY_CALL_DEADLINE = 3.0
# Refusals from the bank that no retry can change: the refund returns to the wallet.
FINAL_REFUSALS = frozenset({Kind.NOT_FOUND, Kind.PRECONDITION, Kind.INVALID})


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


# --- transit's view of the cards (A13.2) -------------------------------------------------------

# The card service's client id (``config.ServiceConfig.client_id``): the one source of card status.
CARD_SERVICE_CLIENT = "card-service"


class CardViewUnsettled(Exception):
    """Transit's view of the card does not allow a top-up by itself (no view yet, or a status
    that takes none): the card service decides, and its answer is recorded. ``holder_unknown``:
    a person's top-up to a card whose view does not name its holder yet, which only the card
    service's full answer (``CardPort.card``) names."""

    def __init__(self, card_id: str, holder_unknown: bool = False) -> None:
        super().__init__(card_id)
        self.holder_unknown = holder_unknown


class NotTheHolder(Exception):
    """A person's top-up to a card whose view names another holder. Refused as a card that
    does not exist (``wallets.card_not_found``) and, like that refusal, which the card service
    gives before the transaction, kept nowhere: not a DomainError, so the idempotency runner
    stores nothing under the request id."""


def check_card_service(caller: Caller) -> None:
    """Only the card service tells transit a card's status."""
    if caller.client_id != CARD_SERVICE_CLIENT:
        raise DomainError(
            "NOT_THE_CARD_SERVICE",
            "only the card service reports a card's status",
            kind=Kind.PERMISSION,
            rule="A13.2",
        )


def record_card_view(uow: TransitUnitOfWork, view: CardView, clock: Clock) -> CardView:
    """Keep the card's status if it is newer than the view held, and its holder if the view
    held names none; the view held after."""
    return uow.cards.record(view, clock.now())


def holder_of(uow: TransitUnitOfWork, card_id: str) -> str:
    """The card's holder as transit's view names it; "" when it does not yet."""
    view = uow.cards.get(card_id)
    return view.person_id if view is not None else ""


# --- the wallet (A10) --------------------------------------------------------------------------


def top_up(
    uow: TransitUnitOfWork,
    card_id: str,
    card: CardFacts | None,
    amount_fen: int,
    request_id: str,
    caller: Caller,
    clock: Clock,
) -> Entry:
    """A10.1 / A10.2: the card in its holder's hands, the amount within the rules, the balance
    row locked, updated and its entry written in the one transaction. ``card`` is the card
    service's answer when it was asked; None decides on transit's view, which never lags
    behind a change that stops top-ups (the card service pushes those before acknowledging
    them), and raises ``CardViewUnsettled`` when it does not allow the top-up by itself. A
    person tops up only their own card, whose holder the view names (the card's holder is
    checked before its status, which another person does not learn)."""
    if card is None:
        view = uow.cards.get(card_id)
        if caller.person_id:
            if view is None or not view.person_id:
                raise CardViewUnsettled(card_id, holder_unknown=True)
            if view.person_id != caller.person_id:
                raise NotTheHolder(card_id)
        if view is None or not view.takes_top_ups:
            raise CardViewUnsettled(card_id)
        card = CardFacts(card_id, view.status, "", view.person_id)
    wallets.check_card_usable(card)
    wallets.check_top_up_amount(amount_fen)
    now = clock.now()
    channel, outlet = caller.channel.value, caller.outlet_id
    intended = Entry(
        card.card_id, EntryKind.TOP_UP, amount_fen, 0, request_id, channel, outlet, now
    )
    booked = uow.wallets.credit_and_book(intended)
    if booked is None:  # the card's first top-up
        wallet = uow.wallets.lock(card.card_id, now)
        movement = wallets.top_up(wallet, amount_fen, request_id, channel, outlet, now)
        uow.wallets.save(movement.wallet)
        return uow.wallets.add_entry(movement.entry)
    # The row is locked, credited and its entry booked: the rules decide on the balance before,
    # and a refusal rolls the whole transaction back.
    credited, entry = booked
    before = replace(credited, balance_fen=credited.balance_fen - amount_fen)
    movement = wallets.top_up(before, amount_fen, request_id, channel, outlet, now)
    if replace(movement.entry, entry_id=entry.entry_id) != entry:
        raise RuntimeError("the booked entry differs from the one the wallet rules computed")
    return entry


def intended_top_up(
    card_id: str, amount_fen: int, request_id: str, caller: Caller, clock: Clock
) -> Entry | None:
    """The entry a top-up would book, for the one-statement path; None when the amount breaks
    a rule (the ordinary path refuses it and keeps the refusal)."""
    try:
        wallets.check_top_up_amount(amount_fen)
    except DomainError:
        return None
    channel, outlet = caller.channel.value, caller.outlet_id
    return Entry(card_id, EntryKind.TOP_UP, amount_fen, 0, request_id, channel, outlet, clock.now())


def top_up_in_one(
    db: Database, call: OneStatement, intended: Entry, answer: bytes, caller: Caller
) -> card_view_store.OneTrip:
    """PostgreSQL: the top-up of a card transit's view allows, into an open wallet within the
    cap (A10.1, A10.2, A13.2), claimed, booked, answered and audited in one statement; a
    person's only to a card the view names them the holder of. Anything else is left to
    ``top_up`` (SLOW) and changes nothing."""
    trip = card_view_store.top_up_in_one(
        db,
        call,
        intended,
        rules.COLLECTED_STATES,
        rules.BALANCE_CAP_FEN,
        answer,
        caller.person_id,
    )
    if trip.result == "OK":
        idempotency.log.info("state change committed", extra={logs.OUTCOME: "OK"})
    return trip


def get_wallet(uow: TransitUnitOfWork, card_id: str) -> Wallet:
    return uow.wallets.get(card_id) or wallets.empty_wallet(card_id)


def list_entries(uow: TransitUnitOfWork, card_id: str, before_id: int, limit: int) -> list[Entry]:
    return uow.wallets.entries(card_id, before_id, limit)


def check_ledger(uow: TransitUnitOfWork, card_id: str) -> tuple[int, int]:
    """The wallet's balance and the sum of its entries: always equal."""
    return get_wallet(uow, card_id).balance_fen, uow.wallets.entry_sum(card_id)


# --- refunds to a bank account (退资, A16.3, A19.1) --------------------------------------------


def refund(
    uow: TransitUnitOfWork,
    card_id: str,
    to_card_id: str,
    amount_fen: int,
    reason: RefundReason,
    caller: Caller,
    clock: Clock,
) -> Refund:
    """Debit the wallet and queue the credit to ``to_card_id``'s account, in one transaction:
    the relay delivers it. ``amount_fen`` 0 is the whole balance; a zero balance moves
    nothing. A replacement or cancellation closes the wallet, once no earlier refund of the
    card is still on its way (``check_nothing_in_flight``)."""
    now = clock.now()
    wallet = uow.wallets.lock(card_id, now)
    wallets.check_nothing_in_flight(reason, uow.refunds.in_flight_from(card_id))
    amount = wallets.refund_amount(wallet, amount_fen)
    movement, refunded, after = wallets.pay_out(
        wallet,
        amount,
        new_id("refund"),
        to_card_id or card_id,
        reason,
        caller.channel.value,
        caller.outlet_id,
        now,
    )
    if after is not wallet:
        uow.wallets.save(after)
    if movement is not None:
        uow.wallets.add_entry(movement.entry)
        uow.refunds.add(refunded)
    return refunded


def get_refund(uow: TransitUnitOfWork, refund_id: str) -> Refund:
    found = uow.refunds.get(refund_id) if refund_id else None
    if found is None:
        raise wallets.refund_not_found()
    return found


def list_refunds(
    uow: TransitUnitOfWork,
    state: RefundState | None,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> list[Refund]:
    """Refunds of every card for operations, oldest first."""
    return uow.refunds.page(state, after, limit)


class RefundRelay:
    """Credits queued refunds to bank accounts, at least once and never twice at the same time:
    a refund is leased in one short transaction, sent with no transaction open, then marked
    ARRIVED (or rescheduled with backoff) in another. Every attempt uses the refund id as the
    bank's request id, so the bank books it once. A final refusal from the bank (no account,
    account closed) puts the amount back into the wallet as a REVERSAL entry."""

    def __init__(
        self,
        new_uow: Callable[[], TransitUnitOfWork],
        ledger: LedgerPort,
        clock: Clock,
        batch: int = RELAY_BATCH,
        lease: dt.timedelta = RELAY_LEASE,
    ) -> None:
        self._new_uow = new_uow
        self._ledger = ledger
        self._clock = clock
        self._batch = batch
        self._lease = lease
        self._drain: RelayDrain[str] = RelayDrain("refund relay")

    def run(self) -> int:
        """Deliver every refund that is due now; returns how many arrived."""
        return self._drain.deliver_due(
            self._clock.now,
            self._claim,
            lambda item: item.refund_id,
            self._deliver,
            self._batch,
            self._lease,
            RELAY_CALL_DEADLINE,
        )

    def _claim(self, now: dt.datetime) -> list[Refund]:
        with self._new_uow() as uow:
            due = uow.refunds.claim(now, self._lease, self._batch)
            uow.commit()
        return due

    def stop(self, timeout: float = RELAY_CALL_DEADLINE + 2) -> None:
        """The drain: claim nothing more, and once the refund being sent is settled, hand back
        the leases of the rest of the batch."""
        self._drain.stop(self._release, timeout)

    def _release(self, refund_ids: list[str], until: dt.datetime) -> None:
        with self._new_uow() as uow:
            uow.refunds.release(refund_ids, until)
            uow.commit()

    def _deliver(self, item: Refund) -> int:
        try:
            entry_id = self._ledger.credit(item.refund_id, item.to_card_id, item.amount_fen)
        except DomainError as exc:
            if exc.kind in FINAL_REFUSALS:
                self._return_to_wallet(item, exc)
                return 0
            attempts = item.attempts + 1
            retry_at = self._clock.now() + wallets.retry_delay(attempts)
            log.warning(
                "refund %s not credited (attempt %d, %s); next try at %s",
                item.refund_id,
                attempts,
                exc.reason,
                retry_at.isoformat(),
            )
            with self._new_uow() as uow:
                uow.refunds.failed(item.refund_id, attempts, retry_at, exc.reason)
                uow.commit()
            return 0
        with self._new_uow() as uow:
            uow.refunds.arrived(item.refund_id, entry_id, self._clock.now())
            uow.commit()
        return 1

    def _return_to_wallet(self, item: Refund, exc: DomainError) -> None:
        log.warning(
            "refund %s refused by the bank (%s); the amount returns to the wallet",
            item.refund_id,
            exc.reason,
        )
        with self._new_uow() as uow:
            now = self._clock.now()
            current = uow.refunds.get(item.refund_id, for_update=True)
            if current is None or current.state is not wallets.RefundState.SENDING:
                return
            wallet = uow.wallets.lock(item.card_id, now)
            movement, _ = wallets.reverse(wallet, current, now)
            uow.wallets.save(movement.wallet)
            uow.wallets.add_entry(movement.entry)
            uow.refunds.returned(item.refund_id, f"{exc.reason}: {exc.message}")
            uow.commit()


# --- the park annual pass (A11, A16.4) ---------------------------------------------------------


def purchase_pass(
    uow: TransitUnitOfWork, card: CardFacts, caller: Caller, clock: Clock
) -> ParkPass:
    """A11.1: one pass per card per Beijing calendar year; eligibility (A11.2) and the card's
    state were checked against the other services before the transaction."""
    now = clock.now()
    uow.lock("pass", card.card_id)
    year = passes.pass_year(now)
    bought = passes.purchase(
        uow.passes.find(card.card_id, year),
        new_id("pass"),
        card.card_id,
        caller.channel.value,
        caller.outlet_id,
        now,
    )
    uow.passes.add(bought)
    return bought


def get_pass(uow: TransitUnitOfWork, card_id: str, year: int, clock: Clock) -> ParkPass:
    found = uow.passes.find(card_id, year or passes.pass_year(clock.now()))
    if found is None:
        raise passes.pass_not_found()
    return found


def transfer_passes(
    uow: TransitUnitOfWork, from_card_id: str, to_card_id: str, clock: Clock
) -> list[ParkPass]:
    """A16.4: the old card's passes of this year and later move to the new card on the spot."""
    now = clock.now()
    for card_id in sorted((from_card_id, to_card_id)):
        uow.lock("pass", card_id)
    year = passes.pass_year(now)
    held = uow.passes.held_from(from_card_id, year, for_update=True)
    if not held:
        return []
    taken = {p.year for p in uow.passes.held_from(to_card_id, year)}
    passes.check_transfer(from_card_id, to_card_id, taken & {p.year for p in held})
    moved = [passes.moved(p, to_card_id, now) for p in held]
    for item in moved:
        uow.passes.save_holder(item)
    return moved
