"""The identity service's tables and repository: the only file here that speaks SQL.

Document numbers are stored as a blind index (for the unique, indexed lookup) and a ciphertext
(see ``platform.pii``); a dump shows neither in the clear, only the masked form.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    Row,
    SmallInteger,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.orm import Session

from services.identity.domain.person import (
    Attributes,
    BasicInfoChange,
    Event,
    EventType,
    IssuanceKind,
    Person,
    Preferential,
    Registration,
    Source,
)
from services.platform import audit, idempotency
from services.platform.db import Database, Serial, UnitOfWork, advisory_lock, as_utc
from services.platform.documents import Document, DocumentType, Sex
from services.platform.masking import mask_document_number
from services.platform.pii import PiiCipher

metadata = MetaData()
idempotency_keys = idempotency.define_table(metadata)
audit.define_tables(metadata)  # README, "Audit trail"

persons = Table(
    "persons",
    metadata,
    Column("person_id", String(32), primary_key=True),
    Column("doc_type", String(40), nullable=False),
    Column("doc_index", String(64), nullable=False, unique=True),
    Column("doc_cipher", LargeBinary, nullable=False),
    Column("doc_masked", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("sex", String(8)),
    Column("birth_date", Date),
    Column("document_valid_until", Date),
    Column("insured_in_beijing", Boolean, nullable=False),
    Column("public_service_entitled", Boolean, nullable=False),
    Column("date_of_death", Date),
    Column("preferential", String(100), nullable=False),
    Column("legacy_card_generation", SmallInteger, nullable=False),
    Column("source", String(24), nullable=False),
    Column("business_settled_on", Date),  # A19.1
    Column("legacy_ss_stopped_at", DateTime(timezone=True)),  # A27.3
    Column("registered_card_id", String(64), unique=True),
    Column("registration_kind", String(16)),
    Column("registered_since", DateTime(timezone=True)),
    Column("previous_card_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

basic_info_changes = Table(
    "basic_info_changes",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("person_id", String(32), ForeignKey("persons.person_id"), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("old_name", String(200), nullable=False),
    Column("new_name", String(200), nullable=False),
    Column("old_doc_type", String(40), nullable=False),
    Column("old_doc_cipher", LargeBinary, nullable=False),
    Column("new_doc_type", String(40), nullable=False),
    Column("new_doc_cipher", LargeBinary, nullable=False),
    Column("reason", String(500), nullable=False),
    Index("ix_basic_info_changes_person", "person_id", "id"),
)

person_events = Table(
    "person_events",
    metadata,
    Column("sequence", Serial, primary_key=True, autoincrement=True),
    Column("type", String(32), nullable=False),
    Column("person_id", String(32), ForeignKey("persons.person_id"), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("registered_card_id", String(64)),
    Column("date_of_death", Date),
)


# Statements built once per process: building one per call costs more than running it.
_PERSON = {
    (key, locked): (
        select(persons).where(persons.c[key] == bindparam("key")).with_for_update()
        if locked
        else select(persons).where(persons.c[key] == bindparam("key"))
    )
    for key in ("person_id", "doc_index", "registered_card_id")
    for locked in (False, True)
}
_SAVE_PERSON = update(persons).where(persons.c.person_id == bindparam("b_person_id"))


def _utc(value: dt.datetime | None) -> dt.datetime:
    return as_utc(value) if value is not None else dt.datetime.min.replace(tzinfo=dt.UTC)


class PersonRepository:
    def __init__(self, session: Session, cipher: PiiCipher) -> None:
        self.session = session
        self.cipher = cipher

    # -- documents

    def index_of(self, doc_type: DocumentType, number: str) -> str:
        return self.cipher.blind_index(doc_type.value, number)

    def reveal(self, doc_type: str, cipher: bytes) -> Document:
        return Document(DocumentType(doc_type), self.cipher.decrypt(cipher))

    # -- reads

    def _to_person(self, row: Row[Any]) -> Person:
        attrs = Attributes(
            document=self.reveal(row.doc_type, row.doc_cipher),
            name=row.name,
            sex=Sex(row.sex) if row.sex else None,
            birth_date=row.birth_date,
            document_valid_until=row.document_valid_until,
            insured_in_beijing=row.insured_in_beijing,
            public_service_entitled=row.public_service_entitled,
            date_of_death=row.date_of_death,
            preferential=frozenset(Preferential(p) for p in row.preferential.split(",") if p),
            legacy_card_generation=row.legacy_card_generation,
            source=Source(row.source),
            business_settled_on=row.business_settled_on,
        )
        registration = None
        if row.registered_card_id:
            registration = Registration(
                row.registered_card_id,
                IssuanceKind(row.registration_kind),
                _utc(row.registered_since),
                row.previous_card_id,
            )
        return Person(
            row.person_id,
            attrs,
            registration,
            _utc(row.updated_at),
            _utc(row.legacy_ss_stopped_at) if row.legacy_ss_stopped_at else None,
        )

    def _one(self, key: str, value: str, for_update: bool) -> Person | None:
        row = self.session.execute(_PERSON[key, for_update], {"key": value}).one_or_none()
        return None if row is None else self._to_person(row)

    def get(self, person_id: str, for_update: bool = False) -> Person | None:
        return self._one("person_id", person_id, for_update)

    def find_by_document(
        self, doc_type: DocumentType, number: str, for_update: bool = False
    ) -> Person | None:
        return self._one("doc_index", self.index_of(doc_type, number), for_update)

    def find_by_card(self, card_id: str, for_update: bool = False) -> Person | None:
        return self._one("registered_card_id", card_id, for_update)

    def find_many(self, indexes: Sequence[str]) -> dict[str, Person]:
        """Persons by blind index, locked for update (the import's batch read)."""
        if not indexes:
            return {}
        rows = self.session.execute(
            select(persons).where(persons.c.doc_index.in_(indexes)).with_for_update()
        ).all()
        return {row.doc_index: self._to_person(row) for row in rows}

    def history(self, person_id: str) -> list[BasicInfoChange]:
        t = basic_info_changes
        rows = self.session.execute(
            select(t).where(t.c.person_id == person_id).order_by(t.c.id)
        ).all()
        return [
            BasicInfoChange(
                person_id,
                _utc(r.changed_at),
                r.old_name,
                r.new_name,
                self.reveal(r.old_doc_type, r.old_doc_cipher),
                self.reveal(r.new_doc_type, r.new_doc_cipher),
                r.reason,
            )
            for r in rows
        ]

    def events_after(self, after: int, limit: int) -> list[tuple[int, Event]]:
        t = person_events
        rows = self.session.execute(
            select(t).where(t.c.sequence > after).order_by(t.c.sequence).limit(limit)
        ).all()
        return [
            (
                r.sequence,
                Event(
                    EventType(r.type),
                    r.person_id,
                    _utc(r.occurred_at),
                    r.registered_card_id,
                    r.date_of_death,
                ),
            )
            for r in rows
        ]

    # -- writes

    def _values(self, person: Person, index: str | None = None) -> dict[str, Any]:
        a = person.attributes
        reg = person.registration
        return {
            "person_id": person.person_id,
            "doc_type": a.document.type.value,
            "doc_index": index or self.index_of(a.document.type, a.document.number),
            "doc_cipher": self.cipher.encrypt(a.document.number),
            "doc_masked": mask_document_number(a.document.number),
            "name": a.name,
            "sex": a.sex.value if a.sex else None,
            "birth_date": a.birth_date,
            "document_valid_until": a.document_valid_until,
            "insured_in_beijing": a.insured_in_beijing,
            "public_service_entitled": a.public_service_entitled,
            "date_of_death": a.date_of_death,
            "preferential": ",".join(sorted(p.value for p in a.preferential)),
            "legacy_card_generation": a.legacy_card_generation,
            "source": a.source.value,
            "business_settled_on": a.business_settled_on,
            "registered_card_id": reg.card_id if reg else None,
            "registration_kind": reg.kind.value if reg else None,
            "registered_since": reg.since if reg else None,
            "previous_card_id": reg.previous_card_id if reg else None,
            "updated_at": person.updated_at,
            "legacy_ss_stopped_at": person.legacy_ss_stopped_at,
        }

    def add_many(self, new: Mapping[str, Person], now: dt.datetime) -> None:
        """Insert new persons, given by their blind index."""
        rows = [{**self._values(p, index), "created_at": now} for index, p in new.items()]
        if rows:
            self.session.execute(persons.insert(), rows)

    def save_many(self, changed: Iterable[Person]) -> None:
        rows = [self._values(p) for p in changed]
        if not rows:
            return
        for row in rows:
            row["b_person_id"] = row.pop("person_id")
        self.session.execute(_SAVE_PERSON, rows)

    def save(self, person: Person) -> None:
        self.save_many([person])

    def add_history(self, changes: Iterable[BasicInfoChange]) -> None:
        rows = [
            {
                "person_id": c.person_id,
                "changed_at": c.changed_at,
                "old_name": c.old_name,
                "new_name": c.new_name,
                "old_doc_type": c.old_document.type.value,
                "old_doc_cipher": self.cipher.encrypt(c.old_document.number),
                "new_doc_type": c.new_document.type.value,
                "new_doc_cipher": self.cipher.encrypt(c.new_document.number),
                "reason": c.reason[:500],
            }
            for c in changes
        ]
        if rows:
            self.session.execute(basic_info_changes.insert(), rows)

    def add_events(self, events: Sequence[Event]) -> None:
        """Append events in commit order: on PostgreSQL writers of events take turns, so a
        reader that has seen sequence N has seen every event below N too."""
        if not events:
            return
        if self.session.get_bind().dialect.name == "postgresql":
            advisory_lock(self.session, "identity", "person_events")
        self.session.execute(
            person_events.insert(),
            [
                {
                    "type": e.type.value,
                    "person_id": e.person_id,
                    "occurred_at": e.occurred_at,
                    "registered_card_id": e.registered_card_id,
                    "date_of_death": e.date_of_death,
                }
                for e in events
            ],
        )


class IdentityUnitOfWork(UnitOfWork):
    persons: PersonRepository

    def __init__(self, db: Database, cipher: PiiCipher, readonly: bool = False) -> None:
        super().__init__(db, readonly)
        self._cipher = cipher

    def _open(self, session: Session) -> None:
        self.persons = PersonRepository(session, self._cipher)
