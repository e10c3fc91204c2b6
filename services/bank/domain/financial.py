"""The card's financial function at the issuing bank's counter (A9.1, A9.2, A12.1, A12.3,
A13.4, A20.1).

Activation (A9.1) happens only at a counter of the issuing bank, with the holder's ID document
(type and number equal to the account holder's) and the card (the number read from its chip
equal to the number the bank produced). It never happens alone (A9.2): an activation request is
recorded, the card service activates the SS function, and only then is the financial function
active. A request is REQUESTED until the card service answered, then DONE or REFUSED.

The financial password follows the bank's rules (A12.3): 6 digits, not all one digit, not an
ascending or descending run, not 6 consecutive digits of the holder's birth date; 5 wrong tries
in a row lock it until it is reset at the counter. It is the bank's alone and independent of
the card service's service password (A12.1).

The reserved phone (A20.1) is an 11-digit mainland mobile number; it is shown masked only.

Agents (代办人) follow the bank's rules (A20.1), which take the regulation's limits for agents
(A24): an agent may report the financial function lost and close it, nothing else; it presents
its own ID document, its name, the holder's ID document (checked against the account holder's)
and the holder's written authorisation (A24.2).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace

from services.bank.domain.account import Account, AccountStatus, account_closed
from services.platform.errors import DomainError, FieldViolation, Kind, Violations

ACTIVATION_RULE = "A9.1"
WITH_SS_RULE = "A9.2"
PASSWORD_RULE = "A12.3"
LOSS_RULE = "A13.4"
COUNTER_RULE = "A20.1"
AGENT_DOCUMENTS_RULE = "A24.2"

MAX_FAILURES = 5
PASSWORD_LENGTH = 6
_RUNS = "0123456789012345678909876543210"


# --- the counter of the issuing bank ---------------------------------------------------------


@dataclass(frozen=True)
class Presented:
    """What the holder shows at the counter: the ID document, and the card where needed."""

    document_type: str
    document_number: str
    card_number: str = ""


def check_holder(account: Account, presented: Presented, rule: str) -> None:
    """The document presented must be the account holder's (type and number)."""
    holder = account.holder
    differing = []
    if presented.document_type != holder.document_type:
        differing.append(FieldViolation("document.type", "is not the holder's", "MISMATCH"))
    if presented.document_number != holder.document_number:
        differing.append(FieldViolation("document.number", "is not the holder's", "MISMATCH"))
    if differing:
        raise DomainError(
            "IDENTITY_MISMATCH",
            "the document presented is not the account holder's",
            rule=rule,
            violations=tuple(differing),
        )


class CounterBusiness(enum.Enum):
    """Counter business an agent may ask for; the value says it in words."""

    FINANCIAL_LOSS = "report the financial function lost"
    UNLOCK = "unlock the financial function"
    CLOSE = "close the financial function"


AGENT_MAY = frozenset({CounterBusiness.FINANCIAL_LOSS, CounterBusiness.CLOSE})


@dataclass(frozen=True)
class Agent:
    """What an agent presents at the counter besides the holder's document."""

    document_type: str
    document_number: str
    name: str
    authorisation_ref: str

    def acted(self, by: str) -> str:
        """Who booked it, with the agent's authorisation (never the agent's ID number)."""
        return f"{by} for the holder's agent, authorisation {self.authorisation_ref}"


def check_agent(business: CounterBusiness, agent: Agent | None, holder: Presented) -> None:
    """The bank's rules for agents (A20.1, with A24's limits); None: the holder in person."""
    if agent is None:
        return
    if business not in AGENT_MAY:
        raise DomainError(
            "AGENT_NOT_ALLOWED",
            f"an agent may not {business.value}: the holder comes in person",
            kind=Kind.PERMISSION,
            rule=COUNTER_RULE,
        )
    v = Violations()
    if not agent.document_type or not agent.document_number.strip():
        v.add("agent.agent_document", "the agent's own ID document is required", "REQUIRED")
    if not agent.name.strip():
        v.add("agent.agent_name", "the agent's name is required", "REQUIRED")
    if not agent.authorisation_ref.strip():
        v.add("agent.authorisation_ref", "the holder's written authorisation is required")
    if (agent.document_type, agent.document_number.strip().upper()) == (
        holder.document_type,
        holder.document_number.strip().upper(),
    ):
        v.add("agent.agent_document", "the agent is the holder: act in person instead")
    v.raise_if_any("AGENT_DOCUMENTS_MISSING", rule=AGENT_DOCUMENTS_RULE)


def check_open(account: Account, rule: str) -> None:
    if account.status is AccountStatus.CLOSED:
        raise account_closed(rule)


# --- activation (A9.1, A9.2) -----------------------------------------------------------------


class ActivationState(enum.Enum):
    REQUESTED = "REQUESTED"  # recorded; the card service has not answered yet
    DONE = "DONE"  # SS function active, financial function active
    REFUSED = "REFUSED"  # the card service refused; the financial function stays inactive


@dataclass(frozen=True)
class ActivationRequest:
    activation_id: str
    account_id: str
    card_id: str
    state: ActivationState
    requested_by: str
    requested_at: dt.datetime
    finished_at: dt.datetime | None = None
    refusal: str = ""  # "REASON rule" of the card service's refusal


def check_card(produced_number: str, presented: Presented) -> None:
    """A9.1: the card presented is the card the bank made for this account."""
    if not presented.card_number or presented.card_number != produced_number:
        raise DomainError(
            "CARD_MISMATCH",
            "the card presented is not the account's card",
            rule=ACTIVATION_RULE,
            violations=(FieldViolation("card_number", "is not the account's card", "MISMATCH"),),
        )


def is_active(account: Account) -> bool:
    return account.financial_activated_at is not None


def request_activation(
    existing: ActivationRequest | None,
    activation_id: str,
    account: Account,
    by: str,
    now: dt.datetime,
) -> ActivationRequest:
    """Record the request, or keep the one recorded by an earlier try of the same request."""
    check_open(account, ACTIVATION_RULE)
    if existing is not None:
        return existing
    return ActivationRequest(
        activation_id, account.account_id, account.card_id, ActivationState.REQUESTED, by, now
    )


def activation_done(
    request: ActivationRequest, account: Account, now: dt.datetime
) -> tuple[ActivationRequest, Account]:
    """The SS function is active (A9.2): the financial function becomes active with it. An
    active financial function keeps its first activation time."""
    check_open(account, ACTIVATION_RULE)
    if request.state is not ActivationState.DONE:  # a refused request retried once collected
        request = replace(request, state=ActivationState.DONE, finished_at=now)
    if account.financial_activated_at is None:
        account = replace(account, financial_activated_at=now)
    return request, account


def activation_refused(
    request: ActivationRequest, refusal: DomainError, now: dt.datetime
) -> ActivationRequest:
    """The card service refused the SS function: the financial function stays inactive."""
    if request.state is not ActivationState.REQUESTED:
        return request
    return replace(
        request,
        state=ActivationState.REFUSED,
        finished_at=now,
        refusal=f"{refusal.reason} {refusal.rule}".strip()[:100],
    )


def not_activated(rule: str = PASSWORD_RULE) -> DomainError:
    return DomainError(
        "FINANCIAL_NOT_ACTIVATED",
        "the financial function is not activated; activate it at the issuing bank's counter",
        rule=rule,
    )


# --- the reserved phone (A20.1) --------------------------------------------------------------


def check_phone(phone: str, field: str, v: Violations) -> None:
    if len(phone) != 11 or not phone.isascii() or not phone.isdigit() or phone[0] != "1":
        v.add(field, "an 11-digit mobile number starting with 1 is required", "BAD_FORMAT")


# --- the financial password (A12.1, A12.3) ---------------------------------------------------


def birth_digits(document_type: str, document_number: str) -> str:
    """The YYYYMMDD birth date inside an 18-character resident ID number, else ""."""
    if document_type == "RESIDENT_ID" and len(document_number) == 18:
        digits = document_number[6:14]
        if digits.isdigit():
            return digits
    return ""


def password_problem(password: str, birth: str = "") -> str:
    """Why the password breaks the bank's rules (A12.3), or "" if it does not."""
    if len(password) != PASSWORD_LENGTH or not password.isascii() or not password.isdigit():
        return "BAD_FORMAT"
    if len(set(password)) == 1 or password in _RUNS:
        return "TOO_WEAK"
    if birth and password in birth:
        return "BIRTH_DATE"
    return ""


_WORDS = {
    "BAD_FORMAT": "the financial password is 6 digits",
    "TOO_WEAK": "too easy to guess: not all one digit, not an ascending or descending run",
    "BIRTH_DATE": "must not be taken from the birth date in the ID number",
}


def check_new_password(password: str, birth: str, field: str = "new_password") -> None:
    problem = password_problem(password, birth)
    if problem:
        v = Violations()
        v.add(field, _WORDS[problem], problem)
        v.raise_if_any("WEAK_FINANCIAL_PASSWORD", rule=PASSWORD_RULE)


@dataclass(frozen=True)
class PasswordState:
    """A card account's financial password as stored: hash (None if never set), failures in a
    row, and the lock (held until the password is reset at the counter)."""

    account_id: str
    hash: str | None = None
    failures: int = 0
    locked: bool = False
    changed_at: dt.datetime | None = None

    @property
    def tries_left(self) -> int:
        return 0 if self.locked else MAX_FAILURES - self.failures


def after_try(state: PasswordState, correct: bool) -> PasswordState:
    """Count a try: a right one clears the count; the fifth wrong one in a row locks."""
    if state.locked:
        return state
    if correct:
        return state if state.failures == 0 else replace(state, failures=0)
    failures = state.failures + 1
    if failures >= MAX_FAILURES:
        return replace(state, failures=0, locked=True)
    return replace(state, failures=failures)


def set_first(state: PasswordState, new_hash: str, now: dt.datetime) -> PasswordState:
    """The first password, after activation (A12.3)."""
    if state.hash is not None:
        raise DomainError(
            "FINANCIAL_PASSWORD_ALREADY_SET",
            "the financial password is set already; change it or reset it at the counter",
            kind=Kind.ALREADY_EXISTS,
            rule=PASSWORD_RULE,
        )
    return PasswordState(state.account_id, new_hash, 0, False, now)


def set_new(state: PasswordState, new_hash: str, now: dt.datetime) -> PasswordState:
    """A changed or reset password: the count and the lock are cleared."""
    return PasswordState(state.account_id, new_hash, 0, False, now)


def wrong_password() -> DomainError:
    return DomainError(
        "FINANCIAL_PASSWORD_REJECTED",
        "the financial password was not accepted; 5 wrong tries in a row lock it",
        kind=Kind.PERMISSION,
        rule=PASSWORD_RULE,
    )


def password_locked() -> DomainError:
    return DomainError(
        "FINANCIAL_PASSWORD_LOCKED",
        "the financial password is locked after 5 wrong tries; reset it at the counter",
        rule=PASSWORD_RULE,
    )


def password_not_set() -> DomainError:
    return DomainError(
        "FINANCIAL_PASSWORD_NOT_SET",
        "no financial password is set yet",
        rule=PASSWORD_RULE,
    )
