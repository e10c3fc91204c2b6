"""The ledger of card accounts: the rules money moves by (A4.5, A9.2, A13.2, A13.4, A16.6,
A19.1, A19.2, A20.1, A23.1).

Every movement is an immutable entry with a signed amount in fen; an account's balance is the
sum of its entries and never negative. Who may pay out:

- a credit is accepted on any open account (a transit refund, A16.3 / A19.1, arrives whatever
  the state of the financial function), subject only to a class III balance cap (A4.5);
- a debit is refused while the account is closed, suspended for a loss (A13.2, A13.4) or its
  financial function is not activated (A9.2); a non-counter debit also while non-counter
  business is suspended (A19.2, A4.5) and beyond its class's limits (A4.5);
- a destroyed card can do nothing (A16.6);
- closing (A19.1, A20.1) pays the whole balance out as one CLOSING_PAYOUT entry.

There is no fee source: nothing is ever charged for application, reissue, replacement or
mailing (A23.1).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace

from services.bank.domain.account import LOSS_RULES, Account, AccountStatus, account_closed
from services.bank.domain.tiers import Tier
from services.platform.errors import DomainError

MAX_AMOUNT_FEN = 10**12  # ten billion yuan: more is a typing error, not a payment


class EntrySource(enum.Enum):
    """Names of sscard.bank.v1.EntrySource."""

    TRANSIT_REFUND = "TRANSIT_REFUND"
    COUNTER = "COUNTER"
    NON_COUNTER = "NON_COUNTER"
    CLOSING_PAYOUT = "CLOSING_PAYOUT"


class PaymentChannel(enum.Enum):
    """How a payment is made; values are the names of sscard.bank.v1.PaymentChannel."""

    COUNTER = "PAYMENT_COUNTER"
    ONLINE_BANKING = "ONLINE_BANKING"
    ATM = "ATM"
    THIRD_PARTY = "THIRD_PARTY"

    @property
    def non_counter(self) -> bool:
        return self is not PaymentChannel.COUNTER

    @property
    def source(self) -> EntrySource:
        return EntrySource.NON_COUNTER if self.non_counter else EntrySource.COUNTER


class NonCounterReason(enum.Enum):
    """Why non-counter business is suspended; names of sscard.bank.v1.NonCounterReason."""

    SS_CANCELLED = "SS_CANCELLED"  # A19.2
    MONITORING_REVIEW = "MONITORING_REVIEW"  # A4.5
    OPERATIONS = "OPERATIONS"  # the issuing bank's own rules (A20.1)
    HOLDER_DIED = "HOLDER_DIED"  # A21.2: until the estate settles the account


NON_COUNTER_RULES = {
    NonCounterReason.SS_CANCELLED: "A19.2",
    NonCounterReason.MONITORING_REVIEW: "A4.5",
    NonCounterReason.OPERATIONS: "A20.1",
    NonCounterReason.HOLDER_DIED: "A21.2",
}
FINANCIAL_RULE = "A9.2"
DESTROYED_RULE = "A16.6"
CLOSE_RULE = "A19.1"


@dataclass(frozen=True)
class AccountLedger:
    """An account's money and standing: its balance row."""

    account_id: str
    card_id: str
    balance_fen: int
    tier: Tier
    non_counter: frozenset[NonCounterReason] = frozenset()
    non_counter_since: dt.datetime | None = None

    @property
    def non_counter_suspended(self) -> bool:
        return bool(self.non_counter)


@dataclass(frozen=True)
class Entry:
    """One immutable movement."""

    entry_id: str
    account_id: str
    card_id: str
    amount_fen: int  # signed: positive credits, negative debits
    balance_after_fen: int
    source: EntrySource
    booked_at: dt.datetime
    reference: str = ""
    counterparty: str = ""
    channel: PaymentChannel | None = None
    transfer_id: str = ""
    booked_by: str = ""

    @property
    def non_counter(self) -> bool:
        return self.channel is not None and self.channel.non_counter


def new_ledger(account: Account, tier: Tier) -> AccountLedger:
    """The balance row of an account that has not moved money yet."""
    return AccountLedger(account.account_id, account.card_id, 0, tier)


# --- who may move money ------------------------------------------------------------------------


def check_not_destroyed(destroyed: bool) -> None:
    if destroyed:
        raise DomainError(
            "CARD_DESTROYED", "the card has been destroyed and can do nothing", rule=DESTROYED_RULE
        )


def check_can_receive(account: Account, destroyed: bool) -> None:
    """A credit: the account is open and its card not destroyed."""
    check_not_destroyed(destroyed)
    if account.status is AccountStatus.CLOSED:
        raise account_closed(CLOSE_RULE)


def suspended_for_loss(account: Account) -> DomainError:
    if account.loss is None:
        raise RuntimeError("account.loss must be known here")
    return DomainError(
        "ACCOUNT_SUSPENDED",
        "the card's financial function is suspended while it is reported lost",
        rule=LOSS_RULES[account.loss],
        metadata={"loss": account.loss.value},
    )


def non_counter_suspended(ledger: AccountLedger) -> DomainError:
    reason = sorted(ledger.non_counter, key=lambda r: r.value)[0]
    return DomainError(
        "NON_COUNTER_SUSPENDED",
        "the account's non-counter business (online, ATM, third-party) is suspended; "
        "the counter of the issuing bank still serves it",
        rule=NON_COUNTER_RULES[reason],
        metadata={"reasons": ",".join(sorted(r.value for r in ledger.non_counter))},
    )


def check_can_pay(
    account: Account, destroyed: bool, ledger: AccountLedger, channel: PaymentChannel
) -> None:
    """A debit or transfer out through ``channel`` (the order of the checks is the order of the
    answer a holder gets: destroyed, closed, lost, not activated, non-counter suspended)."""
    check_can_receive(account, destroyed)
    if account.loss is not None:
        raise suspended_for_loss(account)
    if account.financial_activated_at is None:
        raise DomainError(
            "FINANCIAL_NOT_ACTIVE",
            "the card's financial function has not been activated at the issuing bank",
            rule=FINANCIAL_RULE,
        )
    if channel.non_counter and ledger.non_counter_suspended:
        raise non_counter_suspended(ledger)


# --- booking ---------------------------------------------------------------------------------


def insufficient(ledger: AccountLedger, amount_fen: int) -> DomainError:
    return DomainError(
        "INSUFFICIENT_FUNDS",
        f"the balance of {ledger.balance_fen} fen does not cover {amount_fen} fen",
        metadata={"balance_fen": str(ledger.balance_fen), "amount_fen": str(amount_fen)},
    )


def book(
    ledger: AccountLedger,
    entry_id: str,
    amount_fen: int,
    source: EntrySource,
    now: dt.datetime,
    *,
    reference: str = "",
    counterparty: str = "",
    channel: PaymentChannel | None = None,
    transfer_id: str = "",
    booked_by: str = "",
    card_id: str = "",
) -> tuple[AccountLedger, Entry]:
    """Book a signed amount; the balance never goes below zero (INSUFFICIENT_FUNDS). The entry
    names ``card_id``, the card used, when it is not the account's own (a successor card)."""
    if amount_fen == 0:
        raise ValueError("an entry moves money")
    after = ledger.balance_fen + amount_fen
    if after < 0:
        raise insufficient(ledger, -amount_fen)
    entry = Entry(
        entry_id,
        ledger.account_id,
        card_id or ledger.card_id,
        amount_fen,
        after,
        source,
        now,
        reference,
        counterparty,
        channel,
        transfer_id,
        booked_by,
    )
    return replace(ledger, balance_fen=after), entry


# --- non-counter suspension (A19.2, A4.5) ----------------------------------------------------


def suspend_non_counter(
    ledger: AccountLedger, reason: NonCounterReason, now: dt.datetime
) -> AccountLedger:
    """Add a reason; the same reason again changes nothing (the same object is returned)."""
    if reason in ledger.non_counter:
        return ledger
    return replace(
        ledger,
        non_counter=ledger.non_counter | {reason},
        non_counter_since=ledger.non_counter_since or now,
    )


def resume_non_counter(ledger: AccountLedger, reason: NonCounterReason) -> AccountLedger:
    """Lift one reason; business resumes once none is left. A reason not in force: unchanged."""
    if reason not in ledger.non_counter:
        return ledger
    left = ledger.non_counter - {reason}
    return replace(
        ledger, non_counter=left, non_counter_since=ledger.non_counter_since if left else None
    )


def check_closable(account: Account, destroyed: bool) -> None:
    """CloseFinancial (A19.1, A20.1): a card not destroyed; a closed account is answered as is."""
    check_not_destroyed(destroyed)


def set_tier(ledger: AccountLedger, tier: Tier) -> AccountLedger:
    return ledger if ledger.tier is tier else replace(ledger, tier=tier)


# --- monitoring alerts (A4.5) ----------------------------------------------------------------


class AlertStatus(enum.Enum):
    """Values are the names of sscard.bank.v1.AlertStatus."""

    OPEN = "ALERT_OPEN"
    ASSIGNED = "ALERT_ASSIGNED"
    RESOLVED = "ALERT_RESOLVED"


@dataclass(frozen=True)
class Alert:
    alert_id: str
    account_id: str
    card_id: str
    rule: str
    summary: str
    entry_ids: tuple[str, ...]
    freeze: bool
    dedupe_key: str
    status: AlertStatus
    raised_at: dt.datetime
    assignee: str = ""
    resolution: str = ""
    assigned_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    resolved_by: str = ""


def alert_resolved() -> DomainError:
    return DomainError("ALERT_RESOLVED", "the alert is resolved already", rule="A4.5")


def assign(alert: Alert, assignee: str, now: dt.datetime) -> Alert:
    """Give an open or assigned alert to an analyst; a resolved one stays as it is."""
    if alert.status is AlertStatus.RESOLVED:
        raise alert_resolved()
    if alert.status is AlertStatus.ASSIGNED and alert.assignee == assignee:
        return alert
    return replace(alert, status=AlertStatus.ASSIGNED, assignee=assignee, assigned_at=now)


def resolve(alert: Alert, resolution: str, by: str, now: dt.datetime) -> Alert:
    """Close the alert with its note; resolving a resolved alert changes nothing."""
    if alert.status is AlertStatus.RESOLVED:
        return alert
    return replace(
        alert, status=AlertStatus.RESOLVED, resolution=resolution, resolved_at=now, resolved_by=by
    )


def lifts_review(resolved: Alert, open_freezing: int) -> bool:
    """Resolving a freezing alert lifts MONITORING_REVIEW when no other freezing alert of the
    account is still open or assigned."""
    return resolved.freeze and open_freezing == 0
