"""Ledger use cases (A4.5, A9.2, A13.2, A13.4, A16.6, A19.1, A19.2, A20.1): one function per
operation, each run inside the unit of work it is given; the caller commits (through the
idempotency runner).

Every use case that moves money or changes an account's standing first takes the lock of each
card it names (the one loss suspension and destruction take; in card id order), then the
account rows ``FOR UPDATE`` and their balance rows (in account id order), so two transfers in
opposite directions never deadlock. A card reaches its own account or, after a reissue or
replacement, the account its production order carries over. After each entry is booked, transaction
monitoring (A4.5) looks at the account's recent entries in the same transaction: an alert per
new finding, and a freezing finding suspends non-counter business (MONITORING_REVIEW).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from services.bank.domain import financial, monitoring, tiers
from services.bank.domain import ledger as rules
from services.bank.domain.account import Account, AccountStatus
from services.bank.domain.account import close as close_account
from services.bank.domain.financial import Presented
from services.bank.domain.ledger import (
    AccountLedger,
    Alert,
    AlertStatus,
    Entry,
    EntrySource,
    NonCounterReason,
    PaymentChannel,
)
from services.bank.domain.tiers import Tier, TierPolicy
from services.bank.service import account_not_found, account_of_card
from services.bank.store import BankUnitOfWork
from services.platform import channels
from services.platform.auth import Caller, Channel
from services.platform.channels import Operation
from services.platform.clock import BEIJING, Clock, beijing_date
from services.platform.errors import DomainError, Kind


def new_id() -> str:
    return secrets.token_hex(16)


# A counterparty naming a card of this suite: a transfer's other side, or a closing payout's
# destination whose account is credited (A16.7).
CARD_DESTINATION = "card:"


@dataclass(frozen=True)
class LedgerConfig:
    """What the ledger's use cases need besides the unit of work."""

    clock: Clock
    tiers: TierPolicy
    thresholds: monitoring.Thresholds


@dataclass
class Held:
    """An account locked for this transaction, with its balance row, as reached through one
    card (its own, or a successor card that carries it after a reissue or replacement)."""

    card_id: str
    account: Account
    destroyed: bool  # the card used (A16.6)
    ledger: AccountLedger
    existed: bool  # whether the balance row is stored already

    def save(self, uow: BankUnitOfWork, now: dt.datetime) -> None:
        uow.ledger.save(self.ledger, now, self.existed)
        self.existed = True


def _hold_cards(uow: BankUnitOfWork, config: LedgerConfig, card_ids: list[str]) -> list[Held]:
    """Lock the cards (in card id order: taking turns with loss suspension and DestroyCard),
    then their accounts and balance rows (in account id order) until commit."""
    for card_id in sorted(set(card_ids)):
        uow.lock("card", card_id)
    accounts = {card_id: account_of_card(uow, card_id) for card_id in card_ids}
    rows: dict[str, tuple[Account, AccountLedger | None]] = {}
    for account_id in sorted({a.account_id for a in accounts.values()}):
        account = uow.accounts.get(account_id, for_update=True)
        if account is None:
            raise RuntimeError("account must be known here")
        rows[account_id] = (account, uow.ledger.find(account_id, for_update=True))
    held = []
    for card_id in card_ids:
        account, found = rows[accounts[card_id].account_id]
        recall = uow.recalls.find(card_id)
        destroyed = recall is not None and recall.destroyed
        if found is None:
            fresh = rules.new_ledger(account, config.tiers.default_tier)
            held.append(Held(card_id, account, destroyed, fresh, False))
        else:
            held.append(Held(card_id, account, destroyed, found, True))
    return held


def _hold(uow: BankUnitOfWork, config: LedgerConfig, card_id: str) -> Held:
    return _hold_cards(uow, config, [card_id])[0]


def _check_counter(counter: Caller | None, account: Account) -> None:
    """A branch counter (A3.1, A20.1) or a bank's core system serves only its own bank's
    accounts; another bank's account answers as one that does not exist."""
    if counter is None:
        return
    if counter.channel is not Channel.BANK_BRANCH:
        if counter.bank_code != account.bank_code:
            raise account_not_found()
        return
    channels.check(Operation.FINANCIAL_SERVICE, counter, account.bank_code)


def _day(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The Beijing calendar day ``now`` falls in, as a UTC half-open interval."""
    start = dt.datetime.combine(beijing_date(now), dt.time(0), BEIJING)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


def non_counter_today(uow: BankUnitOfWork, account_id: str, now: dt.datetime) -> int:
    start, end = _day(now)
    return uow.ledger.non_counter_paid(account_id, start, end)


# --- booking and monitoring (A4.5) -----------------------------------------------------------


def _book(
    uow: BankUnitOfWork,
    config: LedgerConfig,
    held: Held,
    amount_fen: int,
    source: EntrySource,
    now: dt.datetime,
    *,
    reference: str,
    counterparty: str,
    booked_by: str,
    channel: PaymentChannel | None = None,
    transfer_id: str = "",
) -> Entry:
    ledger, entry = rules.book(
        held.ledger,
        new_id(),
        amount_fen,
        source,
        now,
        reference=reference,
        counterparty=counterparty,
        channel=channel,
        transfer_id=transfer_id,
        booked_by=booked_by,
        card_id=held.card_id,
    )
    uow.ledger.add_entry(entry)
    held.ledger = ledger
    _monitor(uow, config, held, entry)
    held.save(uow, now)
    return entry


def _movement(entry: Entry) -> monitoring.Movement:
    return monitoring.Movement(
        entry.entry_id, entry.amount_fen, entry.counterparty, entry.non_counter, entry.booked_at
    )


def _monitor(uow: BankUnitOfWork, config: LedgerConfig, held: Held, entry: Entry) -> None:
    """Evaluate the new entry against the account's recent ones; raise each new finding once
    and freeze non-counter business for a freezing one (A4.5)."""
    history = uow.ledger.since(entry.account_id, entry.booked_at - monitoring.LOOKBACK)
    profile = monitoring.AccountProfile(held.account.account_id, held.account.opened_at)
    findings = monitoring.evaluate(
        profile, [_movement(e) for e in history], _movement(entry), config.thresholds
    )
    for finding in findings:
        if uow.alerts.known(finding.dedupe_key):
            continue
        uow.alerts.add(
            Alert(
                alert_id=new_id(),
                account_id=held.account.account_id,
                card_id=held.account.card_id,
                rule=finding.rule,
                summary=finding.summary,
                entry_ids=finding.entry_ids,
                freeze=finding.freeze,
                dedupe_key=finding.dedupe_key,
                status=AlertStatus.OPEN,
                raised_at=entry.booked_at,
            )
        )
        if finding.freeze:
            held.ledger = rules.suspend_non_counter(
                held.ledger, NonCounterReason.MONITORING_REVIEW, entry.booked_at
            )


# --- money in and out ------------------------------------------------------------------------


@dataclass(frozen=True)
class Credit:
    card_id: str
    amount_fen: int
    source: EntrySource
    reference: str
    counterparty: str


def _receive(config: LedgerConfig, held: Held, amount_fen: int) -> None:
    rules.check_can_receive(held.account, held.destroyed)
    limits = config.tiers.of(held.ledger.tier)
    tiers.check_balance(limits, held.ledger.tier, held.ledger.balance_fen + amount_fen)


def credit(
    uow: BankUnitOfWork, config: LedgerConfig, cmd: Credit, counter: Caller | None, by: str
) -> Entry:
    """Money in: accepted on any open account of a card not destroyed (A16.6), within a class
    III balance cap (A4.5)."""
    held = _hold(uow, config, cmd.card_id)
    _check_counter(counter, held.account)
    if cmd.source is EntrySource.TRANSIT_REFUND and cmd.reference:
        # A refund's relay retries until it has an answer, possibly after the request id's key
        # has expired: the refund id (its reference) books it once, whenever the retry comes.
        booked = uow.ledger.transit_refund(cmd.reference)
        if booked is not None:
            return booked
    now = config.clock.now()
    _receive(config, held, cmd.amount_fen)
    return _book(
        uow,
        config,
        held,
        cmd.amount_fen,
        cmd.source,
        now,
        reference=cmd.reference,
        counterparty=cmd.counterparty,
        booked_by=by,
    )


def _pay(
    uow: BankUnitOfWork,
    config: LedgerConfig,
    held: Held,
    amount_fen: int,
    channel: PaymentChannel,
    now: dt.datetime,
) -> None:
    """Everything a payment out must pass before it is booked."""
    rules.check_can_pay(held.account, held.destroyed, held.ledger, channel)
    if channel.non_counter:
        tier = held.ledger.tier
        today = non_counter_today(uow, held.account.account_id, now)
        tiers.check_non_counter(config.tiers.of(tier), tier, amount_fen, today)
    if held.ledger.balance_fen < amount_fen:
        raise rules.insufficient(held.ledger, amount_fen)


@dataclass(frozen=True)
class Debit:
    card_id: str
    amount_fen: int
    channel: PaymentChannel
    reference: str
    counterparty: str


def debit(
    uow: BankUnitOfWork, config: LedgerConfig, cmd: Debit, counter: Caller | None, by: str
) -> Entry:
    held = _hold(uow, config, cmd.card_id)
    _check_counter(counter, held.account)
    now = config.clock.now()
    _pay(uow, config, held, cmd.amount_fen, cmd.channel, now)
    return _book(
        uow,
        config,
        held,
        -cmd.amount_fen,
        cmd.channel.source,
        now,
        reference=cmd.reference,
        counterparty=cmd.counterparty,
        channel=cmd.channel,
        booked_by=by,
    )


@dataclass(frozen=True)
class Transfer:
    from_card_id: str
    amount_fen: int
    channel: PaymentChannel
    to_card_id: str  # "" for an external counterparty
    external_counterparty: str
    reference: str


def same_card() -> DomainError:
    return DomainError("SAME_ACCOUNT", "a transfer goes to another account", kind=Kind.INVALID)


def transfer(
    uow: BankUnitOfWork, config: LedgerConfig, cmd: Transfer, counter: Caller | None, by: str
) -> tuple[str, Entry, Entry | None]:
    """Both entries in one transaction; the cards are locked in card id order."""
    if cmd.to_card_id == cmd.from_card_id:
        raise same_card()
    cards = [cmd.from_card_id, *([cmd.to_card_id] if cmd.to_card_id else [])]
    held = dict(zip(cards, _hold_cards(uow, config, cards), strict=True))
    source = held[cmd.from_card_id]
    _check_counter(counter, source.account)
    now = config.clock.now()
    _pay(uow, config, source, cmd.amount_fen, cmd.channel, now)
    target = held.get(cmd.to_card_id) if cmd.to_card_id else None
    if target is not None and target.account.account_id == source.account.account_id:
        raise same_card()
    if target is not None:
        _receive(config, target, cmd.amount_fen)
    transfer_id = new_id()
    reference = cmd.reference or transfer_id
    payee = f"{CARD_DESTINATION}{cmd.to_card_id}" if cmd.to_card_id else cmd.external_counterparty
    out = _book(
        uow,
        config,
        source,
        -cmd.amount_fen,
        cmd.channel.source,
        now,
        reference=reference,
        counterparty=payee,
        channel=cmd.channel,
        transfer_id=transfer_id,
        booked_by=by,
    )
    into = None
    if target is not None:
        into = _book(
            uow,
            config,
            target,
            cmd.amount_fen,
            cmd.channel.source,
            now,
            reference=reference,
            counterparty=f"{CARD_DESTINATION}{cmd.from_card_id}",
            channel=cmd.channel,
            transfer_id=transfer_id,
            booked_by=by,
        )
    return transfer_id, out, into


# --- standing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """An account's balance row with what GetBalance shows besides."""

    ledger: AccountLedger
    account: Account
    non_counter_today_fen: int


def _standing(uow: BankUnitOfWork, config: LedgerConfig, held: Held) -> Standing:
    today = non_counter_today(uow, held.account.account_id, config.clock.now())
    return Standing(held.ledger, held.account, today)


def get_balance(
    uow: BankUnitOfWork, config: LedgerConfig, card_id: str, counter: Caller | None
) -> Standing:
    account = account_of_card(uow, card_id)
    _check_counter(counter, account)
    found = uow.ledger.find(account.account_id)
    ledger = found or rules.new_ledger(account, config.tiers.default_tier)
    return Standing(ledger, account, non_counter_today(uow, account.account_id, config.clock.now()))


def list_entries(
    uow: BankUnitOfWork, card_id: str, before_no: int | None, size: int, counter: Caller | None
) -> tuple[list[Entry], int]:
    account = account_of_card(uow, card_id)
    _check_counter(counter, account)
    return uow.ledger.page(account.account_id, before_no, size)


def set_tier(uow: BankUnitOfWork, config: LedgerConfig, card_id: str, tier: Tier) -> Standing:
    """Ops give the account another class (A4.5)."""
    held = _hold(uow, config, card_id)
    rules.check_can_receive(held.account, held.destroyed)
    changed = rules.set_tier(held.ledger, tier)
    if changed is not held.ledger or not held.existed:
        held.ledger = changed
        held.save(uow, config.clock.now())
    return _standing(uow, config, held)


def suspend_non_counter(
    uow: BankUnitOfWork, config: LedgerConfig, card_id: str, reason: NonCounterReason
) -> Standing:
    """A19.2: block online, ATM and third-party payments; the counter still serves."""
    held = _hold(uow, config, card_id)
    rules.check_not_destroyed(held.destroyed)  # a closed account may be marked: harmless
    now = config.clock.now()
    changed = rules.suspend_non_counter(held.ledger, reason, now)
    if changed is not held.ledger:
        held.ledger = changed
        held.save(uow, now)
    return _standing(uow, config, held)


def resume_non_counter(
    uow: BankUnitOfWork, config: LedgerConfig, card_id: str, reason: NonCounterReason
) -> Standing:
    held = _hold(uow, config, card_id)
    rules.check_not_destroyed(held.destroyed)
    changed = rules.resume_non_counter(held.ledger, reason)
    if changed is not held.ledger:
        held.ledger = changed
        held.save(uow, config.clock.now())
    return _standing(uow, config, held)


# --- closing (A19.1, A20.1) ------------------------------------------------------------------


@dataclass(frozen=True)
class Closed:
    standing: Standing
    payout: Entry | None
    closed_at: dt.datetime


def close_financial(
    uow: BankUnitOfWork,
    config: LedgerConfig,
    card_id: str,
    destination: str,
    reference: str,
    counter: Caller | None,
    holder: Presented | None,
    by: str,
    agent: financial.Agent | None = None,
) -> Closed:
    """Pay the whole balance out to the holder's destination, then close the account.

    A destination ``card:<card_id>`` is that card's account in this bank service (the new
    card's account after a change of issuing bank, A16.7): it is credited in the same
    transaction, so the money is never between the two accounts; an account that cannot
    receive it refuses, and the closing account stays open with its balance. At a counter the
    holder's document is presented (A20.1), by the holder or by an agent with the holder's
    written authorisation, whose reference the payout entry keeps."""
    payee = destination[len(CARD_DESTINATION) :] if destination.startswith(CARD_DESTINATION) else ""
    if payee == card_id:
        raise same_card()
    both = _hold_cards(uow, config, [card_id, payee] if payee else [card_id])
    held = both[0]
    _check_counter(counter, held.account)
    if holder is not None:
        financial.check_holder(held.account, holder, financial.COUNTER_RULE)
        financial.check_agent(financial.CounterBusiness.CLOSE, agent, holder)
        if agent is not None:
            by = agent.acted(by)[:200]
    rules.check_not_destroyed(held.destroyed)
    account = held.account
    if account.status is AccountStatus.CLOSED and account.closed_at is not None:
        return Closed(_standing(uow, config, held), None, account.closed_at)
    now = config.clock.now()
    payout = None
    amount = held.ledger.balance_fen
    if amount > 0:
        target = both[1] if payee else None
        if target is not None:
            if target.account.account_id == account.account_id:
                raise same_card()
            _receive(config, target, amount)
        payout = _book(
            uow,
            config,
            held,
            -amount,
            EntrySource.CLOSING_PAYOUT,
            now,
            reference=reference,
            counterparty=destination,
            booked_by=by,
        )
        if target is not None:
            _book(
                uow,
                config,
                target,
                amount,
                EntrySource.CLOSING_PAYOUT,
                now,
                reference=reference,
                counterparty=f"{CARD_DESTINATION}{card_id}",
                booked_by=by,
            )
    closed = close_account(account, now)
    uow.accounts.save_status(closed)
    held.account = closed
    return Closed(_standing(uow, config, held), payout, now)


# --- alerts (A4.5) ---------------------------------------------------------------------------


def alert_not_found() -> DomainError:
    return DomainError("ALERT_NOT_FOUND", "no such alert", kind=Kind.NOT_FOUND)


def _alert(uow: BankUnitOfWork, alert_id: str) -> Alert:
    found = uow.alerts.get(alert_id, for_update=True)
    if found is None:
        raise alert_not_found()
    return found


def list_alerts(
    uow: BankUnitOfWork,
    status: AlertStatus | None,
    account_id: str,
    rule: str,
    before_no: int | None,
    size: int,
) -> tuple[list[Alert], int]:
    return uow.alerts.page(status, account_id, rule, before_no, size)


def assign_alert(uow: BankUnitOfWork, config: LedgerConfig, alert_id: str, assignee: str) -> Alert:
    alert = _alert(uow, alert_id)
    assigned = rules.assign(alert, assignee, config.clock.now())
    if assigned is not alert:
        uow.alerts.save(assigned)
    return assigned


def resolve_alert(
    uow: BankUnitOfWork, config: LedgerConfig, alert_id: str, resolution: str, by: str
) -> Alert:
    """Close the alert; the last open freezing alert lifts MONITORING_REVIEW (A4.5)."""
    first = uow.alerts.get(alert_id)
    if first is None:
        raise alert_not_found()
    held = _hold(uow, config, first.card_id)  # the account first, as every booking does
    alert = _alert(uow, alert_id)
    now = config.clock.now()
    resolved = rules.resolve(alert, resolution, by, now)
    if resolved is alert:
        return alert
    uow.alerts.save(resolved)
    if rules.lifts_review(resolved, uow.alerts.open_freezing(resolved.account_id)):
        lifted = rules.resume_non_counter(held.ledger, NonCounterReason.MONITORING_REVIEW)
        if lifted is not held.ledger:
            held.ledger = lifted
            held.save(uow, now)
    return resolved
