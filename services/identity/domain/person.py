"""The person registry's rules: who may apply (A2), verification before issuing (A4.1–A4.3),
the one-person-one-card register (A4.2, 一人一卡), basic-information changes (A17.2) and deaths
(A21.2).

Pure Python. Entities are plain dataclasses; every refusal is a ``DomainError`` citing its rule.
"""

from __future__ import annotations

import datetime as dt
import enum
import unicodedata
from dataclasses import dataclass, field, replace

from services.platform.documents import (
    Document,
    DocumentType,
    Sex,
    parse_document_into,
)
from services.platform.errors import DomainError, FieldViolation, Kind, Violations

MAX_NAME = 100


class Preferential(enum.Enum):
    """Preferential-treatment flags (A4.1) that other services read eligibility from."""

    PARK_PASS = "PARK_PASS"  # A11.2
    ELDERLY = "ELDERLY"  # A25.1
    DISABLED = "DISABLED"  # A25.1


class Source(enum.Enum):
    HR = "HR"
    MEDICAL_INSURANCE = "MEDICAL_INSURANCE"


class Basis(enum.Enum):
    """Why a person may apply (A2)."""

    INSURED_IN_BEIJING = "INSURED_IN_BEIJING"  # A2.1
    PUBLIC_SERVICE_ENTITLED = "PUBLIC_SERVICE_ENTITLED"  # A2.2


class IssuanceKind(enum.Enum):
    FIRST = "FIRST"
    REISSUE = "REISSUE"
    REPLACEMENT = "REPLACEMENT"
    UPGRADE = "UPGRADE"


MOVES_PLACE = frozenset({IssuanceKind.REISSUE, IssuanceKind.REPLACEMENT})


class Outcome(enum.Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    UNCHANGED = "UNCHANGED"


class EventType(enum.Enum):
    PERSON_DIED = "PERSON_DIED"
    BASIC_INFO_CHANGED = "BASIC_INFO_CHANGED"


@dataclass(frozen=True)
class Registration:
    """The person's place in the one-person-one-card register (A4.2)."""

    card_id: str
    kind: IssuanceKind
    since: dt.datetime
    # For a reissue or replacement not yet confirmed: the card the place came from.
    previous_card_id: str | None = None


@dataclass(frozen=True)
class Attributes:
    """What the HR / medical-insurance feed says about a person, validated."""

    document: Document
    name: str
    sex: Sex | None
    birth_date: dt.date | None
    document_valid_until: dt.date | None
    insured_in_beijing: bool
    public_service_entitled: bool
    date_of_death: dt.date | None
    preferential: frozenset[Preferential]
    legacy_card_generation: int
    source: Source
    # The day the HR / medical-insurance business ended and was settled (A19.1).
    business_settled_on: dt.date | None = None


@dataclass(frozen=True)
class Person:
    person_id: str
    attributes: Attributes
    registration: Registration | None = None
    updated_at: dt.datetime | None = None
    # When the SS function of the person's 1st / 2nd generation card stopped: their
    # 3rd-generation card was activated (A27.3).
    legacy_ss_stopped_at: dt.datetime | None = None

    @property
    def document(self) -> Document:
        return self.attributes.document

    @property
    def name(self) -> str:
        return self.attributes.name

    @property
    def alive(self) -> bool:
        return self.attributes.date_of_death is None


@dataclass(frozen=True)
class BasicInfoChange:
    """One change of name or document (A17.2), kept as history."""

    person_id: str
    changed_at: dt.datetime
    old_name: str
    new_name: str
    old_document: Document
    new_document: Document
    reason: str


@dataclass(frozen=True)
class Event:
    """A registry event for other services (written in the same transaction as the change)."""

    type: EventType
    person_id: str
    occurred_at: dt.datetime
    registered_card_id: str | None = None
    date_of_death: dt.date | None = None


@dataclass
class Change:
    """What a use case did to a person: the new state plus history and events to record."""

    person: Person
    history: list[BasicInfoChange] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


# --- validation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordInput:
    """A person record as received, before validation (already decoded from the wire)."""

    document_type: DocumentType | None
    document_number: str
    name: str
    sex: Sex | None
    birth_date: dt.date | None
    document_valid_until: dt.date | None
    insured_in_beijing: bool
    public_service_entitled: bool
    date_of_death: dt.date | None
    preferential: frozenset[Preferential]
    legacy_card_generation: int
    source: Source | None
    business_settled_on: dt.date | None = None


def normalize_name(name: str) -> str:
    """Names compare after Unicode NFKC, case folding and collapsing white space."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def check_name(name: str, violations: Violations, field_name: str = "name") -> str:
    clean = " ".join(name.split())
    if not clean:
        violations.add(field_name, "the name is required", "REQUIRED")
    elif len(clean) > MAX_NAME:
        violations.add(field_name, f"the name is longer than {MAX_NAME} characters", "TOO_LONG")
    return clean


def validate_record(record: RecordInput, today: dt.date) -> Attributes:
    """Check a feed record; every malformed field is reported at once (A4.1)."""
    v = Violations()
    document = parse_document_into(record.document_type, record.document_number, today, v)
    name = check_name(record.name, v)
    if record.source is None:
        v.add("source", "the record's source (HR or MEDICAL_INSURANCE) is required", "REQUIRED")
    if record.legacy_card_generation not in (0, 1, 2):
        v.add("legacy_card_generation", "must be 0 (none), 1 or 2", "OUT_OF_RANGE")
    birth = record.birth_date
    sex = record.sex
    if document is not None:
        if document.birth_date is not None:
            if birth is not None and birth != document.birth_date:
                v.add("birth_date", "does not agree with the document number", "MISMATCH")
            birth = document.birth_date
        if document.sex is not None:
            if sex is not None and sex != document.sex:
                v.add("sex", "does not agree with the document number", "MISMATCH")
            sex = document.sex
    if birth is None:
        v.add("birth_date", "the birth date is required for this document", "REQUIRED")
    elif birth > today:
        v.add("birth_date", "the birth date is in the future", "OUT_OF_RANGE")
    death = record.date_of_death
    if death is not None and (death > today or (birth is not None and death < birth)):
        v.add("date_of_death", "must lie between the birth date and today", "OUT_OF_RANGE")
    if record.business_settled_on is not None and record.business_settled_on > today:
        v.add("business_settled_on", "must not lie in the future", "OUT_OF_RANGE")
    v.raise_if_any("INVALID_PERSON_RECORD", rule="A4.1")
    # Guaranteed by the checks above
    if document is None or record.source is None:
        raise RuntimeError("document and record.source must be known here")
    return Attributes(
        document=document,
        name=name,
        sex=sex,
        birth_date=birth,
        document_valid_until=record.document_valid_until,
        insured_in_beijing=record.insured_in_beijing,
        public_service_entitled=record.public_service_entitled,
        date_of_death=death,
        preferential=record.preferential,
        legacy_card_generation=record.legacy_card_generation,
        source=record.source,
        business_settled_on=record.business_settled_on,
    )


# --- the registry feed --------------------------------------------------------------------------


def apply_record(
    existing: Person | None, person_id: str, attrs: Attributes, now: dt.datetime
) -> tuple[Outcome, Change]:
    """Register or refresh a person from the feed.

    A name that differs is a basic-information change made in the HR records (A17.2) and is
    kept in the history; a death the feed reports for the first time raises the same event as
    RecordDeath (A21.2).
    """
    if existing is None:
        person = Person(person_id, attrs, None, now)
        change = Change(person)
        if attrs.date_of_death is not None:
            change.events.append(_died(person, now))
        return Outcome.CREATED, change
    if _same_document(existing.document, attrs.document) and (
        replace(existing.attributes, document=attrs.document) == attrs
    ):
        return Outcome.UNCHANGED, Change(existing)
    person = replace(existing, attributes=attrs, updated_at=now)
    change = Change(person)
    if normalize_name(existing.name) != normalize_name(attrs.name):
        change.history.append(
            BasicInfoChange(
                person.person_id,
                now,
                existing.name,
                attrs.name,
                existing.document,
                attrs.document,
                f"registry feed ({attrs.source.value})",
            )
        )
        change.events.append(_changed(person, now))
    if existing.alive and attrs.date_of_death is not None:
        change.events.append(_died(person, now))
    return Outcome.UPDATED, change


def _same_document(a: Document, b: Document) -> bool:
    """The same document, whatever a loaded copy has decoded from its number."""
    return a.type == b.type and a.number == b.number


def _died(person: Person, now: dt.datetime) -> Event:
    return Event(
        EventType.PERSON_DIED,
        person.person_id,
        now,
        person.registration.card_id if person.registration else None,
        person.attributes.date_of_death,
    )


def _changed(person: Person, now: dt.datetime) -> Event:
    return Event(
        EventType.BASIC_INFO_CHANGED,
        person.person_id,
        now,
        person.registration.card_id if person.registration else None,
    )


# --- verification (A2, A4.1–A4.3) ---------------------------------------------------------------


def person_not_found() -> DomainError:
    return DomainError(
        "PERSON_NOT_FOUND",
        "no person with this document is registered by HR or medical insurance",
        kind=Kind.NOT_FOUND,
        rule="A4.1",
    )


def eligibility(person: Person) -> Basis:
    """A2.1 insured in Beijing, or A2.2 entitled to public services; anyone else A2.3."""
    if person.attributes.insured_in_beijing:
        return Basis.INSURED_IN_BEIJING
    if person.attributes.public_service_entitled:
        return Basis.PUBLIC_SERVICE_ENTITLED
    raise DomainError(
        "NOT_ELIGIBLE",
        "the person is neither insured in Beijing nor entitled to public services by card",
        rule="A2.3",
    )


def verify(person: Person | None, presented_name: str, today: dt.date) -> Basis:
    """Every check of A4.1 except the card register, in the order a clerk would explain them."""
    if person is None:
        raise person_not_found()
    if normalize_name(presented_name) != normalize_name(person.name):
        raise DomainError(
            "IDENTITY_MISMATCH",
            "the name given does not match the registered identity",
            rule="A4.1",
            violations=(FieldViolation("name", "does not match the registered name"),),
        )
    valid_until = person.attributes.document_valid_until
    if valid_until is not None and valid_until < today:
        raise DomainError(
            "DOCUMENT_EXPIRED",
            f"the identity document expired on {valid_until.isoformat()}",
            rule="A4.1",
        )
    if not person.alive:
        raise DomainError("PERSON_DECEASED", "the person is recorded as deceased", rule="A4.3")
    return eligibility(person)


def already_has_card() -> DomainError:
    return DomainError(
        "ALREADY_HAS_CARD",
        "the person already holds a valid 3rd-generation card or has an application in progress",
        rule="A4.2",
    )


def verify_applicant(person: Person | None, presented_name: str, today: dt.date) -> Basis:
    """A4.1: all checks including the one-person-one-card register (A4.2)."""
    basis = verify(person, presented_name, today)
    if person is None:
        raise RuntimeError("person must be known here")
    if person.registration is not None:
        raise already_has_card()
    return basis


# --- the one-person-one-card register (A4.2) ----------------------------------------------------


def reserve(
    person: Person,
    card_id: str,
    kind: IssuanceKind,
    replaces_card_id: str | None,
    now: dt.datetime,
) -> Person:
    """Give ``card_id`` the person's place; reissue and replacement move it from the old card."""
    current = person.registration
    if current is not None and current.card_id == card_id:
        return person  # reserving again for the same card changes nothing
    if kind in MOVES_PLACE:
        if not replaces_card_id or current is None or current.card_id != replaces_card_id:
            raise DomainError(
                "REPLACED_CARD_NOT_REGISTERED",
                "a reissue or replacement must name the card that holds the person's place",
                rule="A4.2",
            )
        registration = Registration(card_id, kind, now, previous_card_id=current.card_id)
        return replace(person, registration=registration, updated_at=now)
    if current is not None:
        raise already_has_card()
    if kind is IssuanceKind.UPGRADE and person.attributes.legacy_card_generation not in (1, 2):
        raise DomainError(
            "NO_LEGACY_CARD",
            "an upgrade needs a registered 1st or 2nd generation card",
            rule="A27.3",
        )
    return replace(person, registration=Registration(card_id, kind, now), updated_at=now)


def release(person: Person, card_id: str, now: dt.datetime) -> Person:
    """Give the place back; an unconfirmed reissue or replacement returns it to the old card."""
    current = person.registration
    if current is None or current.card_id != card_id:
        return person
    if current.previous_card_id:
        restored = Registration(current.previous_card_id, IssuanceKind.FIRST, current.since)
        return replace(person, registration=restored, updated_at=now)
    return replace(person, registration=None, updated_at=now)


def confirm(person: Person, now: dt.datetime) -> Person:
    """The card holding the place is activated: a replaced card no longer has a claim on it,
    and the SS function of a 1st / 2nd generation card the person holds stops (A27.3; that card
    is not recalled, and its financial function is the holder's affair with its bank)."""
    current = person.registration
    if current is None:
        return person
    confirmed = person
    if current.previous_card_id is not None:
        confirmed = replace(
            confirmed, registration=replace(current, previous_card_id=None), updated_at=now
        )
    legacy = person.attributes.legacy_card_generation in (1, 2)
    if legacy and person.legacy_ss_stopped_at is None:
        confirmed = replace(confirmed, legacy_ss_stopped_at=now, updated_at=now)
    return confirmed


# --- basic information and death ----------------------------------------------------------------


def change_basic_info(
    person: Person,
    new_name: str | None,
    new_document: Document | None,
    new_valid_until: dt.date | None,
    reason: str,
    now: dt.datetime,
) -> Change:
    """A17.2: name or document changed in the HR / medical-insurance records, with history."""
    if new_name is None and new_document is None:
        raise DomainError(
            "NOTHING_TO_CHANGE",
            "give a new name, a new document, or both",
            kind=Kind.INVALID,
            rule="A17.2",
            violations=(FieldViolation("new_name", "a new name or a new document is required"),),
        )
    attrs = person.attributes
    document = new_document or attrs.document
    updated = replace(
        attrs,
        name=new_name or attrs.name,
        document=document,
        document_valid_until=new_valid_until if new_document else attrs.document_valid_until,
        birth_date=document.birth_date or attrs.birth_date,
        sex=document.sex or attrs.sex,
    )
    if updated == attrs:
        return Change(person)
    changed = replace(person, attributes=updated, updated_at=now)
    history = BasicInfoChange(
        person.person_id, now, attrs.name, updated.name, attrs.document, document, reason
    )
    return Change(changed, [history], [_changed(changed, now)])


def record_death(
    person: Person, date_of_death: dt.date, today: dt.date, now: dt.datetime
) -> Change:
    """A21.2 / A4.3: a death confirmed by data comparison; recording it again changes nothing."""
    birth = person.attributes.birth_date
    if date_of_death > today or (birth is not None and date_of_death < birth):
        raise DomainError(
            "INVALID_DATE_OF_DEATH",
            "the date of death must lie between the birth date and today",
            kind=Kind.INVALID,
            rule="A21.2",
            violations=(FieldViolation("date_of_death", "must lie between birth and today"),),
        )
    if not person.alive:
        return Change(person)
    died = replace(
        person,
        attributes=replace(person.attributes, date_of_death=date_of_death),
        updated_at=now,
    )
    return Change(died, events=[_died(died, now)])
