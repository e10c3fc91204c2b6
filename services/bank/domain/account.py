"""The card's financial account (金融账户), the identity compare before opening it (A4.4) and the
suspension of its financial function while the card is reported lost (A13.2, A13.4, A14.1).

The bank compares what the applicant presented with what the identity service verified: the
name after Unicode NFKC, case folding and white-space folding; the document type and number
exactly; the document's validity date (both unset means long-term on both). A refusal names the
facts that differ and never echoes a number. The bank checks the presented document's validity
itself: a document expired on the day of opening is refused (DOCUMENT_EXPIRED).

A loss suspension is none, TEMPORARY_LOSS or FORMAL_LOSS. A temporary loss suspends the
financial function at once (A13.2); a formal loss at the issuing bank covers it too (A13.4) and
upgrades a temporary one, which keeps the time the function was first suspended. A formal loss is
never downgraded by a later temporary report, and the same loss reported again changes nothing.
Unlocking the card lifts whatever suspension there is (A14.1). A closed account refuses both.
"""

from __future__ import annotations

import datetime as dt
import enum
import unicodedata
from dataclasses import dataclass, replace

from services.platform.clock import beijing_date
from services.platform.errors import DomainError, FieldViolation, Kind

RULE = "A4.4"


class AccountStatus(enum.Enum):
    OPENED = "OPENED"
    CLOSED = "CLOSED"


class LossKind(enum.Enum):
    """Why the financial function is suspended; the names of sscard.bank.v1.LossKind."""

    TEMPORARY_LOSS = "TEMPORARY_LOSS"  # 临时挂失 (A13.2)
    FORMAL_LOSS = "FORMAL_LOSS"  # 正式挂失 at the issuing bank (A13.4)


LOSS_RULES = {LossKind.TEMPORARY_LOSS: "A13.2", LossKind.FORMAL_LOSS: "A13.4"}
LIFT_RULE = "A14.1"


@dataclass(frozen=True)
class IdentityFacts:
    """Who a person is, as far as the account is concerned."""

    name: str
    document_type: str  # a sscard.common.v1.DocumentType name, e.g. RESIDENT_ID
    document_number: str
    valid_until: dt.date | None  # None: long-term document


@dataclass(frozen=True)
class Account:
    account_id: str
    card_id: str
    bank_code: str
    holder: IdentityFacts
    status: AccountStatus
    opened_at: dt.datetime
    closed_at: dt.datetime | None = None
    loss: LossKind | None = None  # None: the financial function is not suspended for a loss
    suspended_at: dt.datetime | None = None
    # When the financial function was activated at the issuing bank's counter (A9.1, A9.2).
    financial_activated_at: dt.datetime | None = None

    @property
    def suspended(self) -> bool:
        return self.loss is not None


def normalize_name(name: str) -> str:
    """Names compare after Unicode NFKC, case folding and collapsing white space."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


# (fact, field of the presented identity, words for a person)
_FACTS = (
    ("name", "presented.name", "name"),
    ("document_type", "presented.document.type", "document type"),
    ("document_number", "presented.document.number", "document number"),
    ("valid_until", "presented.document_valid_until", "document validity"),
)


def differences(presented: IdentityFacts, verified: IdentityFacts) -> list[str]:
    """The facts (``name``, ``document_type``, ...) on which the two identities disagree."""
    found = []
    if normalize_name(presented.name) != normalize_name(verified.name):
        found.append("name")
    if presented.document_type != verified.document_type:
        found.append("document_type")
    if presented.document_number != verified.document_number:
        found.append("document_number")
    if presented.valid_until != verified.valid_until:
        found.append("valid_until")
    return found


def compare_identity(presented: IdentityFacts, verified: IdentityFacts) -> None:
    """A4.4: any fact that differs refuses the opening with IDENTITY_MISMATCH."""
    differing = differences(presented, verified)
    if not differing:
        return
    words = {fact: (field, text) for fact, field, text in _FACTS}
    listed = ", ".join(words[f][1] for f in differing)
    raise DomainError(
        "IDENTITY_MISMATCH",
        f"the identity presented does not match the verified identity: {listed} differ",
        rule=RULE,
        violations=tuple(
            FieldViolation(words[f][0], f"does not match the verified {words[f][1]}", "MISMATCH")
            for f in differing
        ),
        metadata={"facts": ",".join(differing)},
    )


def check_document_valid(presented: IdentityFacts, today: dt.date) -> None:
    """A4.4: the document the applicant presented must still be valid on the day of opening."""
    if presented.valid_until is not None and presented.valid_until < today:
        raise DomainError(
            "DOCUMENT_EXPIRED",
            "the identity document presented has expired",
            rule=RULE,
            violations=(
                FieldViolation("presented.document_valid_until", "the document has expired"),
            ),
        )


def open_account(
    account_id: str,
    card_id: str,
    bank_code: str,
    presented: IdentityFacts,
    verified: IdentityFacts,
    now: dt.datetime,
) -> Account:
    """A new account for the card, once the document presented is still valid and the identity
    compare passes (A4.4)."""
    check_document_valid(presented, beijing_date(now))
    compare_identity(presented, verified)
    return Account(account_id, card_id, bank_code, verified, AccountStatus.OPENED, now)


def open_again(
    existing: Account, bank_code: str, presented: IdentityFacts, verified: IdentityFacts
) -> Account:
    """Opening again for the same card returns its account, for the same person and bank."""
    compare_identity(presented, verified)
    same_holder = (existing.holder.document_type, existing.holder.document_number) == (
        verified.document_type,
        verified.document_number,
    )
    if existing.bank_code != bank_code or not same_holder:
        raise DomainError(
            "CARD_HAS_ACCOUNT",
            "the card already has an account for another person or at another bank",
            kind=Kind.ALREADY_EXISTS,
            rule=RULE,
        )
    if existing.status is AccountStatus.CLOSED:
        raise account_closed()
    return existing


def account_closed(rule: str = RULE) -> DomainError:
    return DomainError("ACCOUNT_CLOSED", "the card's account is closed", rule=rule)


def close(account: Account, now: dt.datetime) -> Account:
    """Close the account; closing a closed account changes nothing."""
    if account.status is AccountStatus.CLOSED:
        return account
    return replace(account, status=AccountStatus.CLOSED, closed_at=now)


# --- loss suspension (A13.2, A13.4, A14.1) ---------------------------------------------------


def suspend(account: Account, kind: LossKind, now: dt.datetime) -> Account:
    """Suspend the financial function for a loss (A13.2 temporary, A13.4 formal).

    Not suspended: suspended for ``kind`` since ``now``. Temporary then formal: upgraded to
    formal, still suspended since the temporary report. Formal then temporary, or the same
    loss again: unchanged (the same object is returned)."""
    if account.status is AccountStatus.CLOSED:
        raise account_closed(LOSS_RULES[kind])
    if account.loss is None:
        return replace(account, loss=kind, suspended_at=now)
    if account.loss is LossKind.TEMPORARY_LOSS and kind is LossKind.FORMAL_LOSS:
        return replace(account, loss=LossKind.FORMAL_LOSS)
    return account


def lift(account: Account) -> Account:
    """Lift the loss suspension: the card was unlocked (A14.1) or a loss report was undone.
    Lifting when nothing is suspended changes nothing (the same object is returned)."""
    if account.status is AccountStatus.CLOSED:
        raise account_closed(LIFT_RULE)
    if account.loss is None:
        return account
    return replace(account, loss=None, suspended_at=None)
