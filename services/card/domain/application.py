"""What an application must carry (A5.1) and when it may be made (A29.1).

Every missing or malformed field is reported at once as a field violation; the document is
checked by the one document validator (``services.platform.documents``, A4.1) that the identity
service uses too, so a malformed number is refused here as identity refuses it. Employer batches
(A6.1) validate each person on their own.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from services.card.domain.card import IN_HAND, LOST, NOT_HANDED_OUT, Delivery
from services.platform import documents
from services.platform.errors import DomainError, Violations, invalid

IN_FORCE = dt.date(2026, 1, 1)  # A29.1
MAX_PHOTO = 512 * 1024
MOBILE = re.compile(r"^1[3-9]\d{9}$")
CREDIT_CODE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
BANK_CODE = re.compile(r"^[A-Z0-9]{2,12}$")
# A4.2: the states in which a card holds its person's place in the one-person-one-card register.
HOLDS_PLACE = NOT_HANDED_OUT | IN_HAND | LOST


@dataclass(frozen=True)
class Applicant:
    document_type: str
    document_number: str
    name: str
    photo: bytes
    occupation: str
    mobile: str
    address: str
    # As printed on the document presented; None for a long-term one (compared by the bank, A4.4).
    document_valid_until: dt.date | None = None


def photo_kind(photo: bytes) -> str | None:
    if photo.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if photo.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None


def check_applicant(a: Applicant, v: Violations, today: dt.date, prefix: str = "applicant") -> None:
    """A5.1: document (A4.1), photo, occupation, mobile, address, each present and
    well-formed."""
    documents.parse_document_into(
        documents.known_type(a.document_type), a.document_number, today, v, f"{prefix}.document"
    )
    name = " ".join(a.name.split())
    if not name:
        v.add(f"{prefix}.name", "the name is required", "REQUIRED")
    elif len(name) > 100:
        v.add(f"{prefix}.name", "longer than 100 characters", "TOO_LONG")
    if not a.photo:
        v.add(f"{prefix}.photo", "a photo is required", "REQUIRED")
    elif len(a.photo) > MAX_PHOTO:
        v.add(f"{prefix}.photo", "larger than 512 KiB", "TOO_LARGE")
    elif photo_kind(a.photo) is None:
        v.add(f"{prefix}.photo", "must be a JPEG or PNG image", "BAD_FORMAT")
    check_occupation(a.occupation, v, f"{prefix}.occupation")
    check_mobile(a.mobile, v, f"{prefix}.mobile")
    check_address(a.address, v, f"{prefix}.address")


def check_occupation(occupation: str, v: Violations, field: str = "occupation") -> None:
    if not occupation.strip():
        v.add(field, "the occupation is required", "REQUIRED")
    elif len(occupation.strip()) > 50:
        v.add(field, "longer than 50 characters", "TOO_LONG")


def check_mobile(mobile: str, v: Violations, field: str = "mobile") -> None:
    if not mobile:
        v.add(field, "a mobile number is required", "REQUIRED")
    elif not MOBILE.match(mobile):
        v.add(field, "must be an 11-digit mainland mobile number", "BAD_FORMAT")


def check_address(address: str, v: Violations, field: str = "address") -> None:
    if not address.strip():
        v.add(field, "the permanent address is required", "REQUIRED")
    elif len(address.strip()) > 200:
        v.add(field, "longer than 200 characters", "TOO_LONG")


def check_bank(bank_code: str, v: Violations, field: str = "bank_code") -> None:
    if not bank_code:
        v.add(field, "the chosen cooperating bank is required", "REQUIRED")
    elif not BANK_CODE.match(bank_code):
        v.add(field, "not a bank code", "BAD_FORMAT")


BANK_CARD_NUMBER = re.compile(r"^\d{12,19}$")
MAX_DESTINATION = 200


@dataclass(frozen=True)
class OlderCardChoice:
    """A27.3: cancel the financial function of the holder's 1st / 2nd generation card when the
    3rd-generation card is activated, its balance paid to ``payout_destination`` (empty: the
    new card's account)."""

    bank_code: str
    card_number: str
    payout_destination: str = ""


def check_older_card(choice: OlderCardChoice, v: Violations) -> None:
    check_bank(choice.bank_code, v, "older_card.bank_code")
    if not BANK_CARD_NUMBER.match(choice.card_number):
        v.add("older_card.card_number", "the older card's number, 12 to 19 digits", "REQUIRED")
    if len(choice.payout_destination) > MAX_DESTINATION:
        v.add("older_card.payout_destination", f"at most {MAX_DESTINATION} characters")


def check_delivery(delivery: Delivery | None, pickup_branch_id: str, v: Violations) -> None:
    """A7.2: a person collects at a branch of the chosen bank, or by mail."""
    if delivery not in (Delivery.BRANCH_PICKUP, Delivery.MAIL):
        v.add("delivery", "BRANCH_PICKUP or MAIL is required", "REQUIRED")
    elif delivery is Delivery.BRANCH_PICKUP and not pickup_branch_id:
        v.add("pickup_branch_id", "the branch to collect at is required", "REQUIRED")


def check_employer(employer_id: str, name: str, v: Violations) -> None:
    if not CREDIT_CODE.match(employer_id):
        v.add("employer.employer_id", "must be an 18-character unified social credit code")
    if not name.strip():
        v.add("employer.name", "the employer's name is required", "REQUIRED")


def check_in_force(today: dt.date) -> None:
    """A29.1: no 3rd-generation application is dated before 2026-01-01."""
    if today < IN_FORCE:
        raise DomainError(
            "NOT_IN_FORCE",
            "3rd-generation applications open on 2026-01-01",
            rule="A29.1",
        )


def application_refusal(v: Violations, prefix: str = "applicant") -> DomainError | None:
    """The refusal of a malformed application (A5.1), or None. A malformed document is refused
    as the identity service refuses it (INVALID_DOCUMENT, A4.1), with every other violation."""
    if not v.items:
        return None
    if any(item.field.startswith(f"{prefix}.document.") for item in v.items):
        reason, rule = documents.REASON, documents.RULE
    else:
        reason, rule = "INVALID_APPLICATION", "A5.1"
    return invalid(reason, v.items, rule)


def already_has_card() -> DomainError:
    """A4.2, refused at the door when this service already knows a card of the document that
    holds its person's place; the identity service's register, consulted by the saga, stays the
    authority (a card under an earlier document, two applications at the same moment)."""
    return DomainError(
        "ALREADY_HAS_CARD",
        "the person already holds a valid 3rd-generation card or has an application in progress",
        rule="A4.2",
    )
