"""Identity use cases: one function per operation, each run inside the unit of work it is given.

Transport-free: the servicer (``api.py``) decodes requests into these arguments and encodes the
results; the caller of a mutating use case commits (through the idempotency runner).
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from services.identity.domain import person as rules
from services.identity.domain.person import (
    BasicInfoChange,
    Basis,
    Change,
    Event,
    IssuanceKind,
    Outcome,
    Person,
    RecordInput,
)
from services.identity.store import IdentityUnitOfWork
from services.platform.clock import Clock, beijing_date
from services.platform.documents import Document, DocumentType, parse_document
from services.platform.errors import DomainError, Kind

IMPORT_CHUNK = 1000
T = TypeVar("T")
MAX_EVENTS_PAGE = 1000


@dataclass(frozen=True)
class PersonRef:
    """A person named by id, or by document type and (raw) number."""

    person_id: str = ""
    document_type: DocumentType | None = None
    document_number: str = ""


@dataclass(frozen=True)
class RecordResult:
    index: int
    outcome: Outcome | None  # None: rejected
    person_id: str = ""
    error: DomainError | None = None


def new_person_id() -> str:
    return secrets.token_hex(16)


def _record_change(uow: IdentityUnitOfWork, change: Change) -> None:
    uow.persons.add_history(change.history)
    uow.persons.add_events(change.events)


def find(
    uow: IdentityUnitOfWork, ref: PersonRef, today: dt.date, for_update: bool = False
) -> Person:
    """The person named by ``ref``, or NOT_FOUND PERSON_NOT_FOUND (A4.1)."""
    if ref.person_id:
        found = uow.persons.get(ref.person_id, for_update)
    elif ref.document_type is not None:
        doc = parse_document(ref.document_type, ref.document_number, today)
        found = uow.persons.find_by_document(doc.type, doc.number, for_update)
    else:
        found = None
    if found is None:
        raise rules.person_not_found()
    return found


# --- the registry feed ------------------------------------------------------------------------


def import_chunk(
    uow: IdentityUnitOfWork,
    records: Sequence[tuple[int, RecordInput | DomainError]],
    clock: Clock,
) -> list[RecordResult]:
    """Apply up to IMPORT_CHUNK feed records in one transaction; bad records are rejected alone.

    Several records for one document in the same chunk apply in order, the last one winning.
    """
    now = clock.now()
    today = beijing_date(now)
    results: list[RecordResult] = []
    valid: list[tuple[int, rules.Attributes]] = []
    for index, record in records:
        if isinstance(record, DomainError):
            results.append(RecordResult(index, None, error=record))
            continue
        try:
            valid.append((index, rules.validate_record(record, today)))
        except DomainError as exc:
            results.append(RecordResult(index, None, error=exc))
    indexes = [uow.persons.index_of(a.document.type, a.document.number) for _, a in valid]
    known = uow.persons.find_many(indexes)
    created: dict[str, Person] = {}
    updated: dict[str, Person] = {}
    changes: list[Change] = []
    for (index, attrs), key in zip(valid, indexes, strict=True):
        existing = created.get(key) or updated.get(key) or known.get(key)
        person_id = existing.person_id if existing else new_person_id()
        outcome, change = rules.apply_record(existing, person_id, attrs, now)
        if outcome is Outcome.CREATED:
            created[key] = change.person
        elif outcome is Outcome.UPDATED:
            if key in created:
                created[key] = change.person
            else:
                updated[key] = change.person
        changes.append(change)
        results.append(RecordResult(index, outcome, person_id))
    uow.persons.add_many(created, now)
    uow.persons.save_many(updated.values())
    for change in changes:
        _record_change(uow, change)
    results.sort(key=lambda r: r.index)
    return results


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def import_persons(
    new_uow: Callable[[], IdentityUnitOfWork],
    records: Iterable[tuple[int, RecordInput | DomainError]],
    clock: Clock,
) -> list[RecordResult]:
    """Apply a stream of feed records, IMPORT_CHUNK per transaction.

    Each record's effect is idempotent, so a chunk that lost a race with a concurrent import of
    the same new person is simply applied again, and an interrupted import can be re-sent.
    """
    results: list[RecordResult] = []
    for chunk in _batches(records, IMPORT_CHUNK):
        for attempt in range(3):
            try:
                with new_uow() as uow:
                    applied = import_chunk(uow, chunk, clock)
                    uow.commit()
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        results.extend(applied)
    return results


# --- reads ------------------------------------------------------------------------------------


def get_person(
    uow: IdentityUnitOfWork, ref: PersonRef, include_history: bool, clock: Clock
) -> tuple[Person, list[BasicInfoChange]]:
    person = find(uow, ref, beijing_date(clock.now()))
    history = uow.persons.history(person.person_id) if include_history else []
    return person, history


def verify_applicant(
    uow: IdentityUnitOfWork, document: Document, name: str, clock: Clock
) -> tuple[Person, Basis]:
    """A4.1: every verification check, the one-person-one-card register included (A4.2)."""
    person = uow.persons.find_by_document(document.type, document.number)
    basis = rules.verify_applicant(person, name, beijing_date(clock.now()))
    if person is None:
        raise RuntimeError("person must be known here")
    return person, basis


def list_events(uow: IdentityUnitOfWork, after: int, limit: int) -> list[tuple[int, Event]]:
    limit = 100 if limit <= 0 else min(limit, MAX_EVENTS_PAGE)
    return uow.persons.events_after(max(after, 0), limit)


# --- the one-person-one-card register (A4.2) --------------------------------------------------


@dataclass(frozen=True)
class Reservation:
    document: Document
    name: str
    card_id: str
    kind: IssuanceKind
    replaces_card_id: str | None
    person_id: str = ""  # a person applying for themself: the document must be theirs


def reserve_issuance(
    uow: IdentityUnitOfWork, cmd: Reservation, clock: Clock
) -> tuple[Person, Basis]:
    now = clock.now()
    person = uow.persons.find_by_document(cmd.document.type, cmd.document.number, for_update=True)
    if cmd.person_id and (person is None or person.person_id != cmd.person_id):
        raise DomainError(
            "NOT_THE_APPLICANT",
            "a person applies with their own document only",
            kind=Kind.PERMISSION,
            rule="A5.1",
        )
    basis = rules.verify(person, cmd.name, beijing_date(now))
    if person is None:
        raise RuntimeError("person must be known here")
    updated = rules.reserve(person, cmd.card_id, cmd.kind, cmd.replaces_card_id, now)
    if updated is not person:
        holder = uow.persons.find_by_card(cmd.card_id)
        if holder is not None and holder.person_id != person.person_id:
            raise DomainError(
                "CARD_ID_IN_USE",
                "the card id already holds another person's place",
                kind=Kind.ALREADY_EXISTS,
                rule="A4.2",
            )
        uow.persons.save(updated)
    return updated, basis


def release_issuance(
    uow: IdentityUnitOfWork, card_id: str, clock: Clock
) -> tuple[bool, str | None]:
    """Give the place back; returns (released, card now holding the place)."""
    person = uow.persons.find_by_card(card_id, for_update=True)
    if person is None:
        return False, None
    updated = rules.release(person, card_id, clock.now())
    uow.persons.save(updated)
    return True, updated.registration.card_id if updated.registration else None


def confirm_issuance(uow: IdentityUnitOfWork, card_id: str, clock: Clock) -> Person:
    person = uow.persons.find_by_card(card_id, for_update=True)
    if person is None:
        raise DomainError(
            "CARD_NOT_REGISTERED",
            "the card holds no place in the one-person-one-card register",
            kind=Kind.NOT_FOUND,
            rule="A4.2",
        )
    updated = rules.confirm(person, clock.now())
    if updated is not person:
        uow.persons.save(updated)
    return updated


# --- basic information and deaths -------------------------------------------------------------


@dataclass(frozen=True)
class BasicInfoCommand:
    ref: PersonRef
    new_name: str | None
    new_document: Document | None
    new_valid_until: dt.date | None
    reason: str


def _document_in_use() -> DomainError:
    return DomainError(
        "DOCUMENT_IN_USE",
        "the new document is registered to another person",
        kind=Kind.ALREADY_EXISTS,
        rule="A17.2",
    )


def change_basic_info(uow: IdentityUnitOfWork, cmd: BasicInfoCommand, clock: Clock) -> Person:
    """A17.2: the registry records a changed name or document, with history and an event."""
    now = clock.now()
    person = find(uow, cmd.ref, beijing_date(now), for_update=True)
    if cmd.new_document is not None:
        other = uow.persons.find_by_document(cmd.new_document.type, cmd.new_document.number)
        if other is not None and other.person_id != person.person_id:
            raise _document_in_use()
    change = rules.change_basic_info(
        person, cmd.new_name, cmd.new_document, cmd.new_valid_until, cmd.reason, now
    )
    if change.person is not person:
        try:
            uow.persons.save(change.person)
            uow.flush()
        except IntegrityError as exc:
            raise _document_in_use() from exc
        _record_change(uow, change)
    return change.person


def record_death(
    uow: IdentityUnitOfWork, ref: PersonRef, date_of_death: dt.date, clock: Clock
) -> Person:
    """A21.2: a confirmed death stops issuing; the event tells the card and bank services."""
    now = clock.now()
    today = beijing_date(now)
    person = find(uow, ref, today, for_update=True)
    change = rules.record_death(person, date_of_death, today, now)
    if change.person is not person:
        uow.persons.save(change.person)
        _record_change(uow, change)
    return change.person
