"""Use cases of the issuing bank's counter: the financial function (A9.1, A9.2, A12.3, A13.4,
A20.1) and home service (A25.1). Each runs in the unit of work it is given; calls to other
services and password hashing happen outside any transaction, in ``counter_api``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from services.bank import service
from services.bank.domain import financial, home_service, recall
from services.bank.domain.account import Account, LossKind
from services.bank.domain.financial import (
    ActivationRequest,
    Agent,
    CounterBusiness,
    PasswordState,
    Presented,
)
from services.bank.domain.home_service import Booking, Business, Slot, Status
from services.bank.store import BankUnitOfWork
from services.platform import channels
from services.platform.auth import Caller, Channel, Role
from services.platform.channels import Operation
from services.platform.clock import Clock, today
from services.platform.errors import DomainError, Kind

FINANCIAL = Operation.FINANCIAL_SERVICE


def _account(uow: BankUnitOfWork, card_id: str, for_update: bool = False) -> Account:
    if for_update:
        uow.lock("card", card_id)  # takes turns with every other change of the card's account
    return service.account_of_card(uow, card_id, for_update)


@dataclass(frozen=True)
class FinancialView:
    """An account with its financial profile, as the counter shows it."""

    account: Account
    phone_masked: str
    password_set: bool


def view(uow: BankUnitOfWork, account: Account) -> FinancialView:
    profile = uow.financial.profile(account.account_id)
    return FinancialView(account, profile.phone_masked, profile.password.hash is not None)


def _at_counter(
    uow: BankUnitOfWork,
    card_id: str,
    caller: Caller,
    presented: Presented | None,
    operation: Operation,
    rule: str,
    for_update: bool = True,
) -> Account:
    """The card's account, for a counter of its issuing bank, with the holder's document."""
    channels.check(operation, caller)  # the channel first, before anything is read
    account = _account(uow, card_id, for_update)
    channels.check(operation, caller, account.bank_code)
    financial.check_open(account, rule)
    if presented is not None:
        financial.check_holder(account, presented, rule)
    return account


# --- activation (A9.1, A9.2) -----------------------------------------------------------------


def activation_id(scope: str, request_id: str) -> str:
    """The activation request's id: the same for every try of the same request."""
    return hashlib.sha256(f"{scope}\x1f{request_id}".encode()).hexdigest()[:32]


def card_request_id(activation: str) -> str:
    """The request id of the card service call, the same on every try (A9.2)."""
    return f"financial-activation-{activation}"


def begin_activation(
    uow: BankUnitOfWork,
    card_id: str,
    presented: Presented,
    caller: Caller,
    activation: str,
    clock: Clock,
) -> tuple[Account, ActivationRequest | None]:
    """A9.1 checks, then record the request (or find the one an earlier try recorded). No
    request when the financial function is active already: nothing left to do."""
    rule = financial.ACTIVATION_RULE
    account = _at_counter(uow, card_id, caller, presented, Operation.ACTIVATE_FINANCIAL, rule)
    recall.check_not_destroyed(uow.recalls.find(card_id))
    order = uow.orders.find_by_card(card_id)
    financial.check_card(order.card_number if order is not None else "", presented)
    existing = uow.financial.find_activation(activation)
    if financial.is_active(account) and existing is None:
        return account, None
    request = financial.request_activation(
        existing, activation, account, recall.actor(caller.caller, caller.operator_id), clock.now()
    )
    if existing is None:
        uow.financial.add_activation(request)
    return account, request


def finish_activation(uow: BankUnitOfWork, card_id: str, activation: str, clock: Clock) -> Account:
    """The SS function is active: so is the financial function now (A9.2)."""
    account = _account(uow, card_id, for_update=True)
    request = uow.financial.find_activation(activation)
    if request is None:
        return account
    done, activated = financial.activation_done(request, account, clock.now())
    if done is not request:
        uow.financial.save_activation(done)
    if activated is not account:
        uow.accounts.save_financial_activation(activated)
    return activated


def refuse_activation(
    uow: BankUnitOfWork, activation: str, refusal: DomainError, clock: Clock
) -> None:
    """The card service refused: the request ends, the financial function stays inactive."""
    request = uow.financial.find_activation(activation)
    if request is None:
        return
    refused = financial.activation_refused(request, refusal, clock.now())
    if refused is not request:
        uow.financial.save_activation(refused)


# --- loss, unlock, reserved phone (A13.4, A20.1) ---------------------------------------------


def report_financial_loss(
    uow: BankUnitOfWork,
    card_id: str,
    presented: Presented,
    caller: Caller,
    clock: Clock,
    agent: Agent | None = None,
) -> Account:
    """A13.4: the formal loss of the financial function needs the issuing bank's counter; the
    holder or an agent (A20.1)."""
    _at_counter(uow, card_id, caller, presented, FINANCIAL, financial.LOSS_RULE)
    financial.check_agent(CounterBusiness.FINANCIAL_LOSS, agent, presented)
    return service.suspend_for_loss(uow, card_id, LossKind.FORMAL_LOSS, clock)


def unlock_financial(
    uow: BankUnitOfWork,
    card_id: str,
    presented: Presented,
    caller: Caller,
    agent: Agent | None = None,
) -> Account:
    """A20.1: the issuing bank unlocks the financial function, for the holder in person."""
    _at_counter(uow, card_id, caller, presented, FINANCIAL, financial.COUNTER_RULE)
    financial.check_agent(CounterBusiness.UNLOCK, agent, presented)
    return service.lift_loss_suspension(uow, card_id)


def change_reserved_phone(
    uow: BankUnitOfWork, card_id: str, presented: Presented, phone: str, caller: Caller
) -> Account:
    """A20.1: the reserved phone is held encrypted, shown masked."""
    account = _at_counter(uow, card_id, caller, presented, FINANCIAL, financial.COUNTER_RULE)
    uow.financial.save_phone(account.account_id, phone)
    return account


def get_financial_state(uow: BankUnitOfWork, card_id: str, caller: Caller) -> Account:
    if caller.has_any(Role.SERVICE, Role.OPS):
        return _account(uow, card_id)
    return _at_counter(uow, card_id, caller, None, FINANCIAL, financial.COUNTER_RULE, False)


# --- the financial password (A12.1, A12.3) ---------------------------------------------------


@dataclass(frozen=True)
class PasswordContext:
    account: Account
    state: PasswordState
    birth: str  # YYYYMMDD of the holder, "" if the document has none


def password_context(
    uow: BankUnitOfWork, card_id: str, presented: Presented | None, caller: Caller
) -> PasswordContext:
    """Read, for a counter of the issuing bank, what a password call needs; the financial
    function must be active."""
    rule = financial.PASSWORD_RULE
    account = _at_counter(uow, card_id, caller, presented, FINANCIAL, rule, for_update=False)
    if not financial.is_active(account):
        raise financial.not_activated(rule)
    return _context(uow, account)


def _context(uow: BankUnitOfWork, account: Account) -> PasswordContext:
    state = uow.financial.profile(account.account_id).password
    holder = account.holder
    return PasswordContext(
        account, state, financial.birth_digits(holder.document_type, holder.document_number)
    )


def verify_context(uow: BankUnitOfWork, card_id: str) -> PasswordContext | None:
    """For the bank's own systems: None when there is no such account."""
    try:
        account = service.account_of_card(uow, card_id)
    except DomainError:
        return None
    return _context(uow, account)


def count_try(
    uow: BankUnitOfWork, account: Account, correct: bool, seen_hash: str | None
) -> tuple[PasswordState, bool]:
    """Record one try; it stands only if right, not locked, and the password did not change
    meanwhile. Returns the password's state after the try and whether the try stands."""
    uow.lock("card", account.card_id)
    state = uow.financial.profile(account.account_id, for_update=True).password
    stands = correct and not state.locked and state.hash == seen_hash
    updated = financial.after_try(state, stands)
    if updated is not state:
        uow.financial.save_password(updated)
    return updated, stands


def store_first_password(
    uow: BankUnitOfWork, account: Account, new_hash: str, clock: Clock
) -> PasswordState:
    uow.lock("card", account.card_id)
    state = uow.financial.profile(account.account_id, for_update=True).password
    updated = financial.set_first(state, new_hash, clock.now())
    uow.financial.save_password(updated)
    return updated


def store_new_password(
    uow: BankUnitOfWork, account: Account, new_hash: str, seen_hash: str | None, clock: Clock
) -> PasswordState:
    """Set the new hash, unless the password changed since it was checked."""
    uow.lock("card", account.card_id)
    state = uow.financial.profile(account.account_id, for_update=True).password
    if state.hash != seen_hash:
        raise financial.wrong_password()
    updated = financial.set_new(state, new_hash, clock.now())
    uow.financial.save_password(updated)
    return updated


# --- home service (A25.1) --------------------------------------------------------------------


@dataclass(frozen=True)
class BookHome:
    card_id: str
    branch_id: str
    address: str
    date: dt.date
    slot: Slot
    business: Business
    contact_name: str
    contact_phone: str
    note: str


def home_holder(uow: BankUnitOfWork, card_id: str, caller: Caller) -> Account:
    """The holder's account, for a channel that may book home service for its card."""
    return _at_counter(
        uow, card_id, caller, None, Operation.HOME_SERVICE, home_service.RULE, for_update=False
    )


def book_home_service(
    uow: BankUnitOfWork, cmd: BookHome, flags: frozenset[str], caller: Caller, clock: Clock
) -> Booking:
    account = home_holder(uow, cmd.card_id, caller)
    home_service.check_eligible(flags)
    branch = uow.branches.get(cmd.branch_id)
    home_service.check_branch_bank(branch.bank_code if branch else None, account.bank_code)
    home_service.check_slot(cmd.date, today(clock))
    now = clock.now()
    booking = Booking(
        home_service_id=service.new_id(),
        card_id=cmd.card_id,
        bank_code=account.bank_code,
        branch_id=cmd.branch_id,
        address=cmd.address,
        date=cmd.date,
        slot=cmd.slot,
        business=cmd.business,
        contact_name=cmd.contact_name,
        contact_phone=cmd.contact_phone,
        note=cmd.note,
        status=Status.HOME_REQUESTED,
        staff_id="",
        booked_by=caller.caller,
        booked_at=now,
        updated_at=now,
    )
    uow.home_services.add(booking)
    return booking


def _booking_not_found() -> DomainError:
    return DomainError("HOME_SERVICE_NOT_FOUND", "no such booking", kind=Kind.NOT_FOUND)


def _staff_of(caller: Caller, branch_id: str) -> bool:
    return caller.channel is Channel.BANK_BRANCH and caller.outlet_id == branch_id


def branch_staff_only() -> DomainError:
    return DomainError(
        "BRANCH_STAFF_ONLY",
        "home service bookings are worked by the visiting branch's own staff",
        kind=Kind.PERMISSION,
        rule=home_service.RULE,
    )


def get_home_service(uow: BankUnitOfWork, home_service_id: str, caller: Caller) -> Booking:
    booking = uow.home_services.get(home_service_id)
    if booking is None:
        raise _booking_not_found()
    allowed = (
        caller.has_any(Role.OPS)
        or _staff_of(caller, booking.branch_id)
        or caller.caller == booking.booked_by
    )
    if not allowed:
        raise _booking_not_found()  # never tell others a booking exists
    return booking


def list_home_services(
    uow: BankUnitOfWork,
    branch_id: str,
    status: Status | None,
    offset: int,
    limit: int,
    caller: Caller,
) -> list[Booking]:
    if not (caller.has_any(Role.OPS) or _staff_of(caller, branch_id)):
        raise branch_staff_only()
    return uow.home_services.list_branch(branch_id, status, offset, limit)


def update_home_service(
    uow: BankUnitOfWork,
    home_service_id: str,
    to: Status,
    staff_id: str,
    note: str,
    caller: Caller,
    clock: Clock,
) -> Booking:
    booking = uow.home_services.get(home_service_id, for_update=True)
    if booking is None:
        raise _booking_not_found()
    channels.check(Operation.HOME_SERVICE, caller, booking.bank_code)
    if not _staff_of(caller, booking.branch_id):
        raise branch_staff_only()
    moved = home_service.move(booking, to, staff_id, note, clock.now())
    if moved is not booking:
        uow.home_services.save_state(moved)
    return moved
