"""The park annual pass (公园年票, A11): eligibility, validity, one per card per year. No I/O."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from services.platform.clock import beijing_date
from services.platform.errors import DomainError, Kind

# The identity service's PreferentialTreatment value that makes a person eligible (A11.2).
PARK_PASS_FLAG = "PARK_PASS"


@dataclass(frozen=True)
class ParkPass:
    pass_id: str
    card_id: str
    year: int
    purchased_at: dt.datetime
    channel: str
    outlet_id: str
    original_card_id: str = ""
    transferred_at: dt.datetime | None = None

    @property
    def valid_from(self) -> dt.date:
        return dt.date(self.year, 1, 1)

    @property
    def valid_until(self) -> dt.date:
        return dt.date(self.year, 12, 31)


def pass_year(now: dt.datetime) -> int:
    """A pass bought now is valid for this Beijing calendar year (A11.1)."""
    return beijing_date(now).year


def check_eligible(preferential: frozenset[str]) -> None:
    """A11.2: only a holder the identity service flags PARK_PASS may buy the pass."""
    if PARK_PASS_FLAG not in preferential:
        raise DomainError(
            "NOT_ELIGIBLE_FOR_PARK_PASS",
            "the holder is not entitled to the park annual pass",
            rule="A11.2",
        )


def purchase(
    existing: ParkPass | None,
    pass_id: str,
    card_id: str,
    channel: str,
    outlet_id: str,
    now: dt.datetime,
) -> ParkPass:
    """A new pass for this year, unless the card already holds one (one per card per year)."""
    year = pass_year(now)
    if existing is not None:
        raise DomainError(
            "PARK_PASS_ALREADY_HELD",
            f"the card already holds the park annual pass for {year}",
            kind=Kind.ALREADY_EXISTS,
            rule="A11.1",
            metadata={"pass_id": existing.pass_id},
        )
    return ParkPass(pass_id, card_id, year, now, channel, outlet_id)


def moved(held: ParkPass, to_card_id: str, now: dt.datetime) -> ParkPass:
    """A16.4: the pass now belongs to ``to_card_id``; where it was bought is kept."""
    original = held.original_card_id or held.card_id
    return replace(
        held,
        card_id=to_card_id,
        original_card_id="" if original == to_card_id else original,
        transferred_at=now,
    )


def check_transfer(from_card_id: str, to_card_id: str, target_years: set[int]) -> None:
    if from_card_id == to_card_id:
        raise DomainError(
            "SAME_CARD", "a pass moves between two different cards", kind=Kind.INVALID
        )
    if target_years:
        years = ", ".join(str(y) for y in sorted(target_years))
        raise DomainError(
            "PARK_PASS_ALREADY_HELD",
            f"the receiving card already holds a pass for {years}",
            kind=Kind.ALREADY_EXISTS,
            rule="A16.4",
        )


def pass_not_found() -> DomainError:
    return DomainError("PARK_PASS_NOT_FOUND", "the card holds no such pass", kind=Kind.NOT_FOUND)
