"""Bank use cases: one function per operation, each run inside the unit of work it is given,
and the relay that delivers "card made" notices to the card service (A7.1).

Transport-free: the servicer (``api.py``) decodes requests into these arguments and encodes the
results; the caller of a mutating use case commits (through the idempotency runner).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.bank.domain import account as accounts
from services.bank.domain import branch as branches
from services.bank.domain import production
from services.bank.domain import recall as recalls
from services.bank.domain.account import Account, IdentityFacts, LossKind
from services.bank.domain.branch import Branch
from services.bank.domain.production import OrderRequest, ProductionOrder
from services.bank.domain.recall import CardRecall, RecallReason
from services.bank.store import BankUnitOfWork
from services.platform.calendar import WorkingDayCalendar
from services.platform.clock import Clock
from services.platform.drain import RelayDrain
from services.platform.errors import DomainError, Kind

if TYPE_CHECKING:
    from services.bank.clients import CardPort

log = logging.getLogger("sscard.bank")

RELAY_BATCH = 8
RELAY_LEASE = dt.timedelta(seconds=30)
RELAY_CALL_DEADLINE = 3.0


def new_id() -> str:
    return secrets.token_hex(16)


def _require_known_bank(uow: BankUnitOfWork, bank_code: str) -> None:
    if not uow.branches.bank_known(bank_code):
        raise branches.unknown_bank(bank_code)


# --- branches ---------------------------------------------------------------------------------


def upsert_branch(uow: BankUnitOfWork, branch: Branch, clock: Clock) -> Branch:
    uow.lock("branch", branch.branch_id)
    branches.check_same_bank(uow.branches.get(branch.branch_id), branch)
    uow.card_numbers.ensure_bank(branch.bank_code)
    uow.branches.save(branch, clock.now())
    return branch


def list_branches(uow: BankUnitOfWork, bank_code: str) -> list[Branch]:
    return uow.branches.list_branches(bank_code)


# --- accounts (A4.4) --------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenAccount:
    card_id: str
    bank_code: str
    presented: IdentityFacts
    verified: IdentityFacts


def open_account(uow: BankUnitOfWork, cmd: OpenAccount, clock: Clock) -> Account:
    """A4.4: compare the identities, then open the card's account (or return the one it has)."""
    _require_known_bank(uow, cmd.bank_code)
    uow.lock("card", cmd.card_id)
    existing = uow.accounts.find_by_card(cmd.card_id, for_update=True)
    if existing is not None:
        return accounts.open_again(existing, cmd.bank_code, cmd.presented, cmd.verified)
    account = accounts.open_account(
        new_id(), cmd.card_id, cmd.bank_code, cmd.presented, cmd.verified, clock.now()
    )
    uow.accounts.add(account)
    return account


def account_not_found() -> DomainError:
    return DomainError("ACCOUNT_NOT_FOUND", "no such account", kind=Kind.NOT_FOUND)


def close_account(uow: BankUnitOfWork, account_id: str, clock: Clock) -> Account:
    account = uow.accounts.get(account_id, for_update=True)
    if account is None:
        raise account_not_found()
    closed = accounts.close(account, clock.now())
    held = uow.ledger.find(account_id)
    if closed is not account and held is not None and held.balance_fen > 0:
        # Closing by a status change alone would strand the money: an account with a balance
        # closes only through CloseFinancial, which pays it out (A19.1, A20.1).
        raise DomainError(
            "ACCOUNT_HAS_BALANCE",
            "the account holds money: close it with its balance paid out (CloseFinancial)",
            rule="A20.1",
        )
    if closed is not account:
        uow.accounts.save_status(closed)
    return closed


def account_of_card(uow: BankUnitOfWork, card_id: str, for_update: bool = False) -> Account:
    """The account the card works on: the one opened for it, or, for a reissued or replaced
    card, the account its production order carries over from the old card."""
    account = uow.accounts.find_by_card(card_id, for_update)
    if account is None:
        order = uow.orders.find_by_card(card_id)
        if order is not None and order.account_id:
            account = uow.accounts.get(order.account_id, for_update)
    if account is None:
        raise account_not_found()
    return account


def get_account(uow: BankUnitOfWork, card_id: str) -> Account:
    return account_of_card(uow, card_id)


# --- loss suspension (A13.2, A13.4, A14.1) ----------------------------------------------------


def _liveaccount_of_card(uow: BankUnitOfWork, card_id: str) -> Account:
    """The card's account, locked, for a card not destroyed (A16.6)."""
    uow.lock("card", card_id)  # takes turns with DestroyCard
    account = account_of_card(uow, card_id, for_update=True)
    recalls.check_not_destroyed(uow.recalls.find(card_id))
    return account


def suspend_for_loss(uow: BankUnitOfWork, card_id: str, kind: LossKind, clock: Clock) -> Account:
    """Suspend the card's financial function: at once for a temporary loss (A13.2), and for a
    formal loss at the issuing bank (A13.4), which upgrades a temporary one."""
    account = _liveaccount_of_card(uow, card_id)
    suspended = accounts.suspend(account, kind, clock.now())
    if suspended is not account:
        uow.accounts.save_loss(suspended)
    return suspended


def lift_loss_suspension(uow: BankUnitOfWork, card_id: str) -> Account:
    """The card was unlocked at the issuing bank (A14.1), or a loss report was undone."""
    account = _liveaccount_of_card(uow, card_id)
    lifted = accounts.lift(account)
    if lifted is not account:
        uow.accounts.save_loss(lifted)
    return lifted


# --- production orders (A22, A7.1) ------------------------------------------------------------


def _check_account(uow: BankUnitOfWork, request: OrderRequest) -> None:
    account = uow.accounts.get(request.account_id)
    if account is None:
        raise account_not_found()
    if account.bank_code != request.bank_code:
        raise DomainError(
            "ACCOUNT_OF_ANOTHER_BANK",
            f"the account is not held at bank {request.bank_code}",
            rule="A5.1",
        )
    if account.status is accounts.AccountStatus.CLOSED:
        raise accounts.account_closed()


def _produce(uow: BankUnitOfWork, order: ProductionOrder, now: dt.datetime) -> ProductionOrder:
    """Give the card its number and queue the notice, in the order's own transaction (A7.1)."""
    if not production.needs_production(order):
        return order
    made = production.produce(order, uow.card_numbers.next_number(order.bank_code), now)
    uow.notices.add(made, now)
    return made


def create_production_order(
    uow: BankUnitOfWork, request: OrderRequest, calendar: WorkingDayCalendar, clock: Clock
) -> ProductionOrder:
    """Order the card; made on the spot at an instant branch of the chosen bank (A22.3)."""
    _require_known_bank(uow, request.bank_code)
    uow.lock("card", request.card_id)
    existing = uow.orders.find_by_card(request.card_id)
    if existing is not None:
        return production.same_order(existing, request)
    _check_account(uow, request)
    if request.delivery in production.COLLECTED_AT_BRANCH:
        pickup = uow.branches.get(request.pickup_branch_id)
        branches.check_pickup_branch(pickup, request.bank_code)
    taken_at = uow.branches.get(request.applied_at_branch_id)
    instant = branches.issues_on_the_spot(taken_at, request.bank_code)
    now = clock.now()
    order = production.new_order(new_id(), request, instant, calendar, now)
    uow.orders.add(order)
    if instant:
        order = _produce(uow, order, now)
        uow.orders.save_state(order)
    return order


def _order(uow: BankUnitOfWork, order_id: str, for_update: bool = False) -> ProductionOrder:
    order = uow.orders.get(order_id, for_update)
    if order is None:
        raise order_not_found()
    return order


def order_not_found() -> DomainError:
    return DomainError("ORDER_NOT_FOUND", "no such production order", kind=Kind.NOT_FOUND)


def cancel_production_order(uow: BankUnitOfWork, order_id: str, clock: Clock) -> ProductionOrder:
    order = _order(uow, order_id, for_update=True)
    cancelled = production.cancel(order, clock.now())
    if cancelled is not order:
        uow.orders.save_state(cancelled)
    return cancelled


def mark_produced(uow: BankUnitOfWork, order_id: str, clock: Clock) -> ProductionOrder:
    """The card factory made the card: number assigned, notice queued (A7.1). A destroyed card
    is never made (A16.6)."""
    order = _order(uow, order_id, for_update=True)
    uow.lock("card", order.card_id)  # takes turns with DestroyCard
    recalls.check_not_destroyed(uow.recalls.find(order.card_id))
    made = _produce(uow, order, clock.now())
    if made is not order:
        uow.orders.save_state(made)
    return made


def get_production_order(uow: BankUnitOfWork, order_id: str, card_id: str) -> ProductionOrder:
    found = uow.orders.get(order_id) if order_id else uow.orders.find_by_card(card_id)
    if found is None or (card_id and found.card_id != card_id):
        raise order_not_found()
    return found


# --- cards taken back and destroyed (A16.6, A21.1, A21.2, A7.4) ------------------------------


def _require_card(uow: BankUnitOfWork, card_id: str) -> None:
    """A card of this bank is one it has a production order for."""
    if uow.orders.find_by_card(card_id) is None:
        raise recalls.card_not_found()


def recall_card(
    uow: BankUnitOfWork, card_id: str, reason: RecallReason, by: str, clock: Clock
) -> CardRecall:
    """Record the card taken back; a card recalled already keeps its first recall."""
    uow.lock("card", card_id)
    _require_card(uow, card_id)
    existing = uow.recalls.find(card_id, for_update=True)
    recalled = recalls.recall(existing, card_id, reason, by, clock.now())
    if existing is None:
        uow.recalls.add(recalled)
    return recalled


def destroy_card(uow: BankUnitOfWork, card_id: str, by: str, clock: Clock) -> CardRecall:
    """Record the card destroyed, with who and when (A16.6); it must be taken back first."""
    uow.lock("card", card_id)
    _require_card(uow, card_id)
    existing = uow.recalls.find(card_id, for_update=True)
    destroyed = recalls.destroy(existing, by, clock.now())
    if destroyed is not existing:
        uow.recalls.save_destruction(destroyed)
    return destroyed


def get_card_recall(uow: BankUnitOfWork, card_id: str) -> CardRecall:
    _require_card(uow, card_id)
    found = uow.recalls.find(card_id)
    if found is None:
        raise recalls.recall_not_found()
    return found


# --- the notice relay (A7.1) ------------------------------------------------------------------


class NoticeRelay:
    """Delivers queued "card made" notices to the card service, at least once and never twice
    at the same time: a notice is leased in one short transaction, sent with no transaction
    open, then marked delivered (or rescheduled with backoff) in another. Every attempt uses
    the request id ``produced:<order_id>``, so the card service records it once."""

    def __init__(
        self,
        new_uow: Callable[[], BankUnitOfWork],
        card: CardPort,
        clock: Clock,
        batch: int = RELAY_BATCH,
        lease: dt.timedelta = RELAY_LEASE,
    ) -> None:
        self._new_uow = new_uow
        self._card = card
        self._clock = clock
        self._batch = batch
        self._lease = lease
        self._drain: RelayDrain[int] = RelayDrain("card notice relay")

    def run(self) -> int:
        """Deliver every notice that is due now; returns how many were delivered."""
        return self._drain.deliver_due(
            self._clock.now,
            self._claim,
            lambda notice: notice.notice_id,
            self._deliver,
            self._batch,
            self._lease,
            RELAY_CALL_DEADLINE,
        )

    def _claim(self, now: dt.datetime) -> list[production.CardNotice]:
        with self._new_uow() as uow:
            notices = uow.notices.claim(now, self._lease, self._batch)
            uow.commit()
        return notices

    def stop(self, timeout: float = RELAY_CALL_DEADLINE + 2) -> None:
        """The drain: claim nothing more, and once the notice being sent is settled, hand back
        the leases of the rest of the batch."""
        self._drain.stop(self._release, timeout)

    def _release(self, notice_ids: list[int], until: dt.datetime) -> None:
        with self._new_uow() as uow:
            uow.notices.release(notice_ids, until)
            uow.commit()

    def _deliver(self, notice: production.CardNotice) -> int:
        try:
            self._card.record_produced(
                notice.card_id, notice.card_number, notice.produced_at, notice.request_id
            )
        except DomainError as exc:
            attempts = notice.attempts + 1
            retry_at = self._clock.now() + production.retry_delay(attempts)
            log.warning(
                "card notice for order %s not delivered (attempt %d, %s); next try at %s",
                notice.order_id,
                attempts,
                exc.reason,
                retry_at.isoformat(),
            )
            with self._new_uow() as uow:
                uow.notices.failed(notice.notice_id, attempts, retry_at, exc.reason)
                uow.commit()
            return 0
        with self._new_uow() as uow:
            uow.notices.delivered(notice.notice_id, self._clock.now())
            uow.commit()
        return 1
