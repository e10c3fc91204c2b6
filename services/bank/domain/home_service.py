"""Home service (上门服务, A25.1): a branch of the issuing bank visits an elderly or disabled
holder at home, booked and tracked.

Only a holder the identity service flags ELDERLY or DISABLED may book. A booking names the
visiting branch (of the card's issuing bank), the address, a day (today or later, Beijing time)
and part of the day, the business to do, and a contact. It moves REQUESTED -> SCHEDULED (staff
assigned) -> DONE, and REQUESTED or SCHEDULED -> CANCELLED; DONE and CANCELLED are final.
Moving to the state it is in already changes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace

from services.platform.errors import DomainError, Kind

RULE = "A25.1"
ELIGIBLE_FLAGS = frozenset({"ELDERLY", "DISABLED"})
MAX_ADDRESS = 200
MAX_NAME = 100
MAX_NOTE = 500
MAX_STAFF_ID = 64


class Business(enum.Enum):
    """What the visit is for; names of sscard.bank.v1.HomeBusiness."""

    HOME_ACTIVATION = "HOME_ACTIVATION"
    HOME_LOSS = "HOME_LOSS"
    HOME_PASSWORD_RESET = "HOME_PASSWORD_RESET"
    HOME_CARD_COLLECTION = "HOME_CARD_COLLECTION"
    HOME_INFORMATION_CHANGE = "HOME_INFORMATION_CHANGE"
    HOME_OTHER = "HOME_OTHER"


class Slot(enum.Enum):
    HOME_MORNING = "HOME_MORNING"
    HOME_AFTERNOON = "HOME_AFTERNOON"


class Status(enum.Enum):
    HOME_REQUESTED = "HOME_REQUESTED"
    HOME_SCHEDULED = "HOME_SCHEDULED"
    HOME_DONE = "HOME_DONE"
    HOME_CANCELLED = "HOME_CANCELLED"


# Where each status may move to.
MOVES: dict[Status, frozenset[Status]] = {
    Status.HOME_REQUESTED: frozenset({Status.HOME_SCHEDULED, Status.HOME_CANCELLED}),
    Status.HOME_SCHEDULED: frozenset({Status.HOME_DONE, Status.HOME_CANCELLED}),
    Status.HOME_DONE: frozenset(),
    Status.HOME_CANCELLED: frozenset(),
}


@dataclass(frozen=True)
class Booking:
    home_service_id: str
    card_id: str
    bank_code: str
    branch_id: str
    address: str
    date: dt.date
    slot: Slot
    business: Business
    contact_name: str
    contact_phone: str
    note: str
    status: Status
    staff_id: str
    booked_by: str
    booked_at: dt.datetime
    updated_at: dt.datetime


def check_eligible(flags: frozenset[str]) -> None:
    """A25.1: only elderly or disabled holders are served at home."""
    if not flags & ELIGIBLE_FLAGS:
        raise DomainError(
            "NOT_ELIGIBLE_FOR_HOME_SERVICE",
            "home service is for elderly or disabled holders",
            rule=RULE,
        )


def check_slot(day: dt.date, today: dt.date) -> None:
    if day < today:
        raise DomainError(
            "SLOT_IN_THE_PAST",
            f"the visit day {day.isoformat()} has passed",
            kind=Kind.INVALID,
            rule=RULE,
        )


def check_branch_bank(branch_bank: str | None, card_bank: str) -> None:
    """The visiting branch is a branch of the card's issuing bank."""
    if branch_bank is None:
        raise DomainError("BRANCH_NOT_FOUND", "no such branch", kind=Kind.NOT_FOUND, rule=RULE)
    if branch_bank != card_bank:
        raise DomainError(
            "BRANCH_OF_ANOTHER_BANK",
            "home service is given by a branch of the card's issuing bank",
            rule=RULE,
        )


def move(booking: Booking, to: Status, staff_id: str, note: str, now: dt.datetime) -> Booking:
    """Move the booking on; the same status again (same staff) changes nothing."""
    if to is booking.status and (to is not Status.HOME_SCHEDULED or staff_id == booking.staff_id):
        return booking
    if to not in MOVES[booking.status]:
        raise DomainError(
            "HOME_SERVICE_WRONG_STATE",
            f"a {booking.status.value} booking cannot become {to.value}",
            rule=RULE,
            metadata={"status": booking.status.value},
        )
    if to is Status.HOME_SCHEDULED and not staff_id:
        raise DomainError(
            "STAFF_REQUIRED",
            "scheduling a visit names the staff member",
            kind=Kind.INVALID,
            rule=RULE,
        )
    return replace(
        booking,
        status=to,
        staff_id=staff_id or booking.staff_id,
        note=note or booking.note,
        updated_at=now,
    )
