"""The service password (服务密码, A12): its form, and the lock after repeated wrong tries.

The service password is separate from the bank's financial password (A12.1): this service
holds only its own, hashed with Argon2id, and never returns or logs it. It is six digits, not
all the same and not a simple run. Five wrong tries lock it for 15 minutes; the answer to a
wrong password and to a card that does not exist is the same.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from services.platform.errors import DomainError, Kind, Violations

MAX_FAILURES = 5
LOCK = dt.timedelta(minutes=15)
_RUNS = "0123456789012345678909876543210"


def check_new_password(password: str, field: str = "new_password") -> None:
    v = Violations()
    if len(password) != 6 or not password.isascii() or not password.isdigit():
        v.add(field, "the service password is 6 digits", "BAD_FORMAT")
    elif len(set(password)) == 1 or password in _RUNS:
        v.add(field, "too easy to guess: not all one digit, not a simple run", "TOO_WEAK")
    v.raise_if_any("WEAK_SERVICE_PASSWORD", rule="A12.2")


@dataclass(frozen=True)
class PasswordState:
    """A card's service password as stored: hash (None if never set), failures, lock."""

    card_id: str
    hash: str | None = None
    failures: int = 0
    locked_until: dt.datetime | None = None
    changed_at: dt.datetime | None = None

    def locked(self, now: dt.datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def wrong_password() -> DomainError:
    # One answer for a wrong password, a locked password and an unknown card.
    return DomainError(
        "SERVICE_PASSWORD_REJECTED",
        "the service password was not accepted; after 5 wrong tries it locks for 15 minutes",
        kind=Kind.PERMISSION,
        rule="A12.2",
    )


def after_check(state: PasswordState, correct: bool, now: dt.datetime) -> PasswordState:
    """Count a try: success clears the count; the fifth failure in a row locks."""
    if correct:
        return replace(state, failures=0, locked_until=None)
    failures = state.failures + 1
    if failures >= MAX_FAILURES:
        return replace(state, failures=0, locked_until=now + LOCK)
    return replace(state, failures=failures)


def set_password(state: PasswordState, new_hash: str, now: dt.datetime) -> PasswordState:
    return PasswordState(state.card_id, new_hash, 0, None, now)
