"""The card service's tables and repositories: the only file here that speaks SQL.

Personal data (document and mobile numbers, address, the saga's working data) is stored
encrypted with the service's PII key; document numbers also get a blind index for lookups.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    SmallInteger,
    String,
    Table,
    Text,
    bindparam,
    case,
    exists,
    false,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from services.card.domain.card import (
    IN_HAND,
    Card,
    Change,
    Delivery,
    Notice,
    Status,
    Transition,
    mask_card_number,
)
from services.card.domain.password import PasswordState
from services.platform import audit, idempotency, tracing
from services.platform.auth import Channel
from services.platform.db import Database, Serial, UnitOfWork, as_utc
from services.platform.masking import mask_document_number, mask_phone
from services.platform.pii import PiiCipher

metadata = MetaData()
idempotency_keys = idempotency.define_table(metadata)
audit.define_tables(metadata)  # README, "Audit trail"

cards = Table(
    "cards",
    metadata,
    Column("card_id", String(40), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("status_since", DateTime(timezone=True), nullable=False),
    Column("generation", SmallInteger, nullable=False),
    Column("person_id", String(32)),
    Column("holder_name", String(200), nullable=False),
    Column("doc_type", String(40), nullable=False),
    Column("doc_index", String(64), nullable=False),
    Column("doc_cipher", LargeBinary, nullable=False),
    Column("doc_masked", String(40), nullable=False),
    Column("mobile_cipher", LargeBinary, nullable=False),
    Column("mobile_masked", String(20), nullable=False),
    Column("address_cipher", LargeBinary, nullable=False),
    Column("occupation", String(50), nullable=False),
    Column("bank_code", String(12), nullable=False),
    Column("delivery", String(16), nullable=False),
    Column("pickup_branch_id", String(40), nullable=False),
    Column("employer_id", String(18), nullable=False),
    Column("batch_id", String(128), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("applied_channel", String(20), nullable=False),
    Column("applied_outlet_id", String(40), nullable=False),
    Column("due_date", Date),
    Column("card_number_cipher", LargeBinary),
    Column("card_number_masked", String(24), nullable=False),
    Column("refusal_reason", String(64), nullable=False),
    Column("refusal_rule", String(16), nullable=False),
    Column("refusal_message", String(300), nullable=False),
    Column("status_before_loss", String(20)),
    Column("replaced_by", String(40), nullable=False, server_default=""),
    Column("replaces_card_id", String(40), nullable=False, server_default=""),
    Column("account_id", String(40), nullable=False, server_default=""),
    Index("ix_cards_doc_index", "doc_index", "applied_at"),
    Index("ix_cards_person", "person_id"),
    Index("ix_cards_batch", "batch_id"),
)

# The face photo is personal data like the numbers: stored encrypted.
card_photos = Table(
    "card_photos",
    metadata,
    Column("card_id", String(40), ForeignKey("cards.card_id"), primary_key=True),
    Column("photo", LargeBinary, nullable=False),
)

card_transitions = Table(
    "card_transitions",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("card_id", String(40), ForeignKey("cards.card_id"), nullable=False),
    Column("from_status", String(20)),
    Column("to_status", String(20), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("outlet_id", String(40), nullable=False),
    Column("operator_id", String(40), nullable=False),
    Column("rule", String(16), nullable=False),
    Column("reason", String(300), nullable=False),
    Index("ix_card_transitions_card", "card_id", "id"),
)

card_notices = Table(
    "card_notices",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("card_id", String(40), ForeignKey("cards.card_id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("recipient", String(16), nullable=False),
    Column("text", String(500), nullable=False),
    Column("rule", String(16), nullable=False),
    Index("ix_card_notices_card", "card_id", "id"),
)

# The states a saga worker claims from, spelt out as SQL: the claim's condition and the partial
# index that serves it are this one clause, so PostgreSQL proves the index's predicate in any
# plan it caches (a bound parameter would leave a generic plan unable to).
ACTIVE_SAGA_STATES = ("RUNNING", "COMPENSATING")
_ACTIVE_SAGA = text("state IN ('RUNNING', 'COMPENSATING')")
# Likewise for the timers still to fire.
_PENDING_TIMER = text("state = 'PENDING'")

batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(128), primary_key=True),
    Column("employer_id", String(18), nullable=False),
    Column("employer_name", String(200), nullable=False),
    Column("total", Integer, nullable=False),
    Column("refused_at_submission", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

sagas = Table(
    "sagas",
    metadata,
    Column("saga_id", String(40), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("card_id", String(40), nullable=False),
    Column("batch_id", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("step", SmallInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("retries", Integer, nullable=False),
    Column("last_error", String(200), nullable=False),
    Column("refusal_reason", String(64), nullable=False),
    Column("refusal_rule", String(16), nullable=False),
    Column("refusal_message", String(300), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(64), nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The W3C trace context of the call that started the saga: its steps join that trace.
    Column("trace_parent", String(64), nullable=False, server_default=""),
    # When each step was done or undone: JSON [[step, "done" | "undone", ISO time], ...].
    Column("step_times", Text, nullable=False, server_default="[]"),
    Index("ix_sagas_runnable", "state", "next_attempt_at"),
    # The claim: unfinished sagas in the order they fall due, without reading the finished ones.
    Index(
        "ix_sagas_claim",
        "next_attempt_at",
        postgresql_where=_ACTIVE_SAGA,
        sqlite_where=_ACTIVE_SAGA,
    ),
    Index("ix_sagas_card", "card_id"),
    Index("ix_sagas_batch", "batch_id", "state"),
)

# What happened to each saga, in order (WatchSaga): one row per saved step, retry or outcome,
# numbered 1, 2, 3... per saga. Written in the transaction that saves the saga's progress.
saga_events = Table(
    "saga_events",
    metadata,
    Column("saga_id", String(40), ForeignKey("sagas.saga_id"), primary_key=True),
    Column("sequence", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("step", SmallInteger, nullable=False),
    Column("retries", Integer, nullable=False),
    Column("last_error", String(200), nullable=False),
    Column("refusal_reason", String(64), nullable=False),
    Column("refusal_rule", String(16), nullable=False),
    Column("refusal_message", String(300), nullable=False),
)

service_passwords = Table(
    "service_passwords",
    metadata,
    # Not a foreign key: failed tries against unknown card ids are counted too, so the answers
    # never tell whether a card exists.
    Column("card_id", String(64), primary_key=True),
    Column("hash", String(200)),
    Column("failures", SmallInteger, nullable=False),
    Column("locked_until", DateTime(timezone=True)),
    Column("changed_at", DateTime(timezone=True)),
)

timers = Table(
    "timers",
    metadata,
    Column("timer_id", String(40), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("target", String(64), nullable=False),
    Column("rule", String(16), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),  # the suite's clock
    Column("state", String(12), nullable=False),  # PENDING, FIRED, CANCELLED
    Column("outcome", String(200), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(64), nullable=False),
    Column("lease_until", DateTime(timezone=True)),  # wall-clock time
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("fired_at", DateTime(timezone=True)),
    # Counted in working days through a year the calendar only estimates (A21.2, A22.2).
    Column("estimated_calendar", Boolean, nullable=False, server_default=false()),
    Index("ix_timers_due", "state", "due_at"),
    # The claim: pending timers in the order they fall due.
    Index(
        "ix_timers_claim", "due_at", postgresql_where=_PENDING_TIMER, sqlite_where=_PENDING_TIMER
    ),
    Index("ix_timers_target", "kind", "target"),
)

feed_positions = Table(
    "feed_positions",
    metadata,
    Column("feed", String(40), primary_key=True),
    Column("position", BigInteger, nullable=False),  # the last event applied
)

_FIRE_TIMER = (
    update(timers)
    .where(timers.c.timer_id == bindparam("b_timer_id"))
    .values(
        state="FIRED",
        outcome=bindparam("outcome"),
        fired_at=bindparam("fired_at"),
        lease_until=None,
    )
)

# Statements the orchestrator runs for every saga step, built once: building them per call
# costs more than running them.
_SAGA_PROGRESS = (
    "state",
    "step",
    "data",
    "retries",
    "last_error",
    "refusal_reason",
    "refusal_rule",
    "refusal_message",
    "step_times",
    "lease_until",
    "lease_owner",
    "updated_at",
)
_HELD = (sagas.c.saga_id == bindparam("b_saga_id"), sagas.c.lease_owner == bindparam("b_owner"))
_SAVE_SAGA = update(sagas).where(*_HELD).values({c: bindparam(c) for c in _SAGA_PROGRESS})
_SAVE_SAGA_RETRY = (
    update(sagas)
    .where(*_HELD)
    .values({c: bindparam(c) for c in (*_SAGA_PROGRESS, "next_attempt_at")})
)
_EVENT_FIELDS = ("state", "step", "retries", "last_error", "refusal_reason", "refusal_rule")
_last_event = saga_events.alias("last_event")
_LAST_SEQUENCE = (
    select(func.max(saga_events.c.sequence))
    .where(saga_events.c.saga_id == sagas.c.saga_id)
    .correlate(sagas)
    .scalar_subquery()
)
# The saga's next event, numbered after its last, copied from the row just saved; none when the
# save changed nothing a watcher sees (a lease renewed before a step).
_ADD_EVENT = saga_events.insert().from_select(
    ["saga_id", "sequence", "at", *_EVENT_FIELDS, "refusal_message"],
    select(
        sagas.c.saga_id,
        func.coalesce(_LAST_SEQUENCE, 0) + 1,
        sagas.c.updated_at,
        *(sagas.c[name] for name in _EVENT_FIELDS),
        sagas.c.refusal_message,
    ).where(
        sagas.c.saga_id == bindparam("b_saga_id"),
        ~exists().where(
            _last_event.c.saga_id == sagas.c.saga_id,
            _last_event.c.sequence == _LAST_SEQUENCE,
            *(_last_event.c[name] == sagas.c[name] for name in ("state", "step", "retries")),
            _last_event.c.refusal_reason == sagas.c.refusal_reason,
        ),
    ),
)
_CLAIMABLE = (
    select(sagas)
    .where(
        _ACTIVE_SAGA,
        sagas.c.next_attempt_at <= bindparam("now"),
        (sagas.c.lease_until.is_(None)) | (sagas.c.lease_until < bindparam("now")),
    )
    .order_by(sagas.c.next_attempt_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
)
_CLAIM_TIMERS = (
    select(timers)
    .where(
        _PENDING_TIMER,
        timers.c.due_at <= bindparam("due_by"),
        (timers.c.lease_until.is_(None)) | (timers.c.lease_until < bindparam("wall")),
    )
    .order_by(timers.c.due_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
)
_TAKE_LEASE = (
    update(sagas)
    .where(sagas.c.saga_id == bindparam("b_saga_id"))
    .values(
        lease_owner=bindparam("owner"), lease_until=bindparam("until"), updated_at=bindparam("now")
    )
)


_CARD_STATE = (
    "status",
    "status_before_loss",
    "replaced_by",
    "account_id",
    "status_since",
    "person_id",
    "due_date",
    "card_number_cipher",
    "card_number_masked",
    "refusal_reason",
    "refusal_rule",
    "refusal_message",
    "delivery",
    "pickup_branch_id",
)
_CARD = select(cards).where(cards.c.card_id == bindparam("b_card_id"))
_ADD_TRANSITIONS = card_transitions.insert().returning(card_transitions.c.id)
_STATUS_VERSION = select(
    cards.c.status,
    select(func.max(card_transitions.c.id))
    .where(card_transitions.c.card_id == cards.c.card_id)
    .scalar_subquery()
    .label("version"),
).where(cards.c.card_id == bindparam("b_card_id"))
_CARD_FOR_UPDATE = _CARD.with_for_update()
_SAVE_CARD = (
    update(cards)
    .where(cards.c.card_id == bindparam("b_card_id"))
    .values({c: bindparam(c) for c in _CARD_STATE})
)


@dataclass
class SagaRecord:
    """A saga as stored: the orchestrator's unit of durable progress."""

    saga_id: str
    kind: str
    card_id: str
    batch_id: str
    state: str
    step: int
    data: dict[str, Any]
    retries: int = 0
    last_error: str = ""
    refusal_reason: str = ""
    refusal_rule: str = ""
    refusal_message: str = ""
    lease_owner: str = ""
    # The trace context of the call that starts the saga (taken when the record is made).
    trace_parent: str = field(default_factory=tracing.current_traceparent)
    # (step, "done" | "undone", when, ISO 8601 wall-clock time), in order.
    step_times: list[tuple[int, str, str]] = field(default_factory=list)


def wall_clock() -> dt.datetime:
    """Saga times (leases, retries, creation) are wall-clock: the suite's clock never moves them."""
    return dt.datetime.now(dt.UTC)


def new_saga_id() -> str:
    return f"saga-{secrets.token_hex(12)}"


# The saga that tells the transit service a card's new status (``flows.transit_status_saga``):
# started by every status change into or out of a state in which the card takes top-ups.
TRANSIT_STATUS = "transit_status"


@dataclass(frozen=True)
class Contact:
    """An applicant's personal data kept with the card."""

    document_type: str
    document_number: str
    mobile: str
    address: str
    occupation: str
    photo: bytes


class CardRepository:
    def __init__(self, session: Session, cipher: PiiCipher, sagas: SagaRepository) -> None:
        self.session = session
        self.cipher = cipher
        self._sagas = sagas
        # The transit status pushes started in this transaction, in order.
        self.status_pushes: list[SagaRecord] = []
        # The shown fields of each card row read in this transaction: GetCard reads the card
        # and shows it, and a second round trip for three columns of the same row is waste.
        self._views: dict[str, dict[str, Any]] = {}

    def doc_index(self, doc_type: str, number: str) -> str:
        return self.cipher.blind_index(doc_type, number)

    # -- cards

    def add_many(
        self,
        items: Sequence[tuple[Card, Contact, Transition]],
        channel: Channel,
        outlet_id: str,
    ) -> None:
        """New applications with their photos and first transition, in bulk."""
        rows, photos, transitions = [], [], []
        for card, contact, transition in items:
            transitions.append(self._transition_row(card.card_id, transition))
            rows.append(
                {
                    "card_id": card.card_id,
                    "status": card.status.value,
                    "status_since": card.applied_at,
                    "generation": 3,
                    "person_id": card.person_id or None,
                    "holder_name": card.holder_name,
                    "doc_type": contact.document_type,
                    "doc_index": self.doc_index(contact.document_type, contact.document_number),
                    "doc_cipher": self.cipher.encrypt(contact.document_number),
                    "doc_masked": mask_document_number(contact.document_number),
                    "mobile_cipher": self.cipher.encrypt(contact.mobile),
                    "mobile_masked": mask_phone(contact.mobile),
                    "address_cipher": self.cipher.encrypt(contact.address),
                    "occupation": contact.occupation,
                    "bank_code": card.bank_code,
                    "delivery": card.delivery.value,
                    "pickup_branch_id": card.pickup_branch_id,
                    "employer_id": card.employer_id,
                    "batch_id": card.batch_id,
                    "applied_at": card.applied_at,
                    "applied_channel": channel.value,
                    "applied_outlet_id": outlet_id,
                    "due_date": None,
                    "card_number_cipher": None,
                    "card_number_masked": "",
                    "refusal_reason": "",
                    "refusal_rule": "",
                    "refusal_message": "",
                    "status_before_loss": None,
                    "replaced_by": "",
                    "replaces_card_id": card.replaces_card_id,
                    "account_id": card.account_id,
                }
            )
            photos.append(
                {"card_id": card.card_id, "photo": self.cipher.encrypt_bytes(contact.photo)}
            )
        if rows:
            self.session.execute(cards.insert(), rows)
            self.session.execute(card_photos.insert(), photos)
            self.session.execute(card_transitions.insert(), transitions)

    @staticmethod
    def _transition_row(card_id: str, t: Transition) -> dict[str, Any]:
        return {
            "card_id": card_id,
            "from_status": t.from_status.value if t.from_status else None,
            "to_status": t.to_status.value,
            "at": t.at,
            "channel": t.channel.value,
            "outlet_id": t.outlet_id,
            "operator_id": t.operator_id,
            "rule": t.rule,
            "reason": t.reason[:300],
        }

    def _to_card(self, row: Row[Any]) -> Card:
        self._views[row.card_id] = {
            "doc_type": row.doc_type,
            "doc_masked": row.doc_masked,
            "mobile_masked": row.mobile_masked,
        }
        number = self.cipher.decrypt(row.card_number_cipher) if row.card_number_cipher else ""
        return Card(
            card_id=row.card_id,
            status=Status(row.status),
            bank_code=row.bank_code,
            delivery=Delivery(row.delivery),
            pickup_branch_id=row.pickup_branch_id,
            applied_at=as_utc(row.applied_at),
            holder_name=row.holder_name,
            person_id=row.person_id or "",
            employer_id=row.employer_id,
            batch_id=row.batch_id,
            due_date=row.due_date,
            card_number=number,
            refusal_reason=row.refusal_reason,
            refusal_rule=row.refusal_rule,
            refusal_message=row.refusal_message,
            status_since=as_utc(row.status_since),
            status_before_loss=Status(row.status_before_loss) if row.status_before_loss else None,
            replaced_by=row.replaced_by,
            replaces_card_id=row.replaces_card_id,
            account_id=row.account_id,
        )

    def get(self, card_id: str, for_update: bool = False) -> Card | None:
        query = _CARD_FOR_UPDATE if for_update else _CARD
        row = self.session.execute(query, {"b_card_id": card_id}).one_or_none()
        return None if row is None else self._to_card(row)

    def of_person(self, person_id: str) -> list[Card]:
        """Every card of a person, for update."""
        rows = self.session.execute(
            select(cards).where(cards.c.person_id == person_id).with_for_update()
        )
        return [self._to_card(row) for row in rows]

    def latest_for_document(self, doc_type: str, number: str) -> Card | None:
        row = self.session.execute(
            select(cards)
            .where(cards.c.doc_index == self.doc_index(doc_type, number))
            .order_by(cards.c.applied_at.desc())
            .limit(1)
        ).one_or_none()
        return None if row is None else self._to_card(row)

    def holding(
        self, documents: Sequence[tuple[str, str]], statuses: Collection[Status]
    ) -> set[tuple[str, str]]:
        """Those of ``documents`` (type, number) with a card applied for in one of ``statuses``."""
        by_index = {self.doc_index(*document): document for document in documents}
        keys = list(by_index)
        found: set[tuple[str, str]] = set()
        for start in range(0, len(keys), 1000):
            rows = self.session.execute(
                select(cards.c.doc_index).where(
                    cards.c.doc_index.in_(keys[start : start + 1000]),
                    cards.c.status.in_([s.value for s in statuses]),
                )
            )
            found.update(by_index[row.doc_index] for row in rows)
        return found

    def view(self, card_id: str) -> dict[str, Any] | None:
        """The stored fields shown to callers (masked document and mobile)."""
        if card_id in self._views:
            return self._views[card_id]
        row = self.session.execute(
            select(cards.c.doc_type, cards.c.doc_masked, cards.c.mobile_masked).where(
                cards.c.card_id == card_id
            )
        ).one_or_none()
        return None if row is None else dict(row._mapping)

    def update_contact(
        self, card_id: str, mobile: str | None, occupation: str | None, address: str | None
    ) -> None:
        values: dict[str, Any] = {}
        if mobile is not None:
            values["mobile_cipher"] = self.cipher.encrypt(mobile)
            values["mobile_masked"] = mask_phone(mobile)
        if occupation is not None:
            values["occupation"] = occupation
        if address is not None:
            values["address_cipher"] = self.cipher.encrypt(address)
        if values:
            self.session.execute(update(cards).where(cards.c.card_id == card_id).values(**values))
            self._views.pop(card_id, None)

    def contact_of(self, card_id: str) -> Contact:
        """The personal data kept with a card, to carry over to its successor."""
        row = self.session.execute(
            select(cards, card_photos.c.photo)
            .join(card_photos, card_photos.c.card_id == cards.c.card_id)
            .where(cards.c.card_id == card_id)
        ).one()
        return Contact(
            row.doc_type,
            self.cipher.decrypt(row.doc_cipher),
            self.cipher.decrypt(row.mobile_cipher),
            self.cipher.decrypt(row.address_cipher),
            row.occupation,
            self.cipher.decrypt_bytes(row.photo),
        )

    def last_bank_change(self, person_id: str) -> dt.datetime | None:
        """When the person last moved to another issuing bank (A16.7), if ever."""
        new, old = cards.alias("new"), cards.alias("old")
        moment = self.session.execute(
            select(func.max(new.c.applied_at))
            .join(old, old.c.card_id == new.c.replaces_card_id)
            .where(
                new.c.person_id == person_id,
                new.c.bank_code != old.c.bank_code,
                new.c.status != Status.REFUSED.value,
            )
        ).scalar_one_or_none()
        return as_utc(moment) if moment is not None else None

    def document_of(self, card_id: str) -> tuple[str, str]:
        row = self.session.execute(
            select(cards.c.doc_type, cards.c.doc_cipher).where(cards.c.card_id == card_id)
        ).one()
        return row.doc_type, self.cipher.decrypt(row.doc_cipher)

    def record(self, change: Change) -> None:
        """Save a card's new state with its transitions and notices."""
        self.record_many([change])

    def record_many(self, changes: Sequence[Change]) -> None:
        """Save several cards' new states (one statement) with their transitions (one per card,
        whose ids version the status transit is told of) and notices (one statement)."""
        if not changes:
            return
        states = [self._state_row(c.card) for c in changes]
        self.session.execute(_SAVE_CARD, states[0] if len(states) == 1 else states)
        for c in changes:
            if not c.transitions:
                continue
            card = c.card
            ids = self.session.execute(
                _ADD_TRANSITIONS, [self._transition_row(card.card_id, t) for t in c.transitions]
            ).scalars()
            if card.status in IN_HAND or any(t.from_status in IN_HAND for t in c.transitions):
                self._push_status(card, max(ids))
        notices = [
            {
                "card_id": c.card.card_id,
                "at": n.at,
                "recipient": n.recipient,
                "text": n.text[:500],
                "rule": n.rule,
            }
            for c in changes
            for n in c.notices
        ]
        if notices:
            self.session.execute(card_notices.insert(), notices)

    def _state_row(self, card: Card) -> dict[str, Any]:
        return {
            "b_card_id": card.card_id,
            "status": card.status.value,
            "status_before_loss": (
                card.status_before_loss.value if card.status_before_loss else None
            ),
            "replaced_by": card.replaced_by,
            "account_id": card.account_id,
            "status_since": card.status_since or card.applied_at,
            "person_id": card.person_id or None,
            "due_date": card.due_date,
            "card_number_cipher": (
                self.cipher.encrypt(card.card_number) if card.card_number else None
            ),
            "card_number_masked": mask_card_number(card.card_number) if card.card_number else "",
            "refusal_reason": card.refusal_reason,
            "refusal_rule": card.refusal_rule,
            "refusal_message": card.refusal_message[:300],
            "delivery": card.delivery.value,
            "pickup_branch_id": card.pickup_branch_id,
        }

    def _push_status(self, card: Card, version: int) -> None:
        """Start the saga that tells transit the card's new status and its holder, in this
        transaction: a change rolled back takes its push with it. The status version is the id
        of the change's last transition: a card's transitions are written under its row's
        lock, so its ids grow with every change."""
        push = SagaRecord(
            saga_id=new_saga_id(),
            kind=TRANSIT_STATUS,
            card_id=card.card_id,
            batch_id="",
            state="RUNNING",
            step=0,
            data={"status": card.status.value, "version": version, "person_id": card.person_id},
        )
        self._sagas.add_many([push], wall_clock())
        self.status_pushes.append(push)

    def status_version(self, card_id: str) -> tuple[Status, int] | None:
        """The card's status and its version (``_push_status``), read together in one
        statement so that the two always belong to each other."""
        row = self.session.execute(_STATUS_VERSION, {"b_card_id": card_id}).one_or_none()
        return None if row is None else (Status(row.status), int(row.version or 0))

    def history(self, card_id: str) -> tuple[list[Transition], list[Notice]]:
        t, n = card_transitions, card_notices
        transitions = [
            Transition(
                Status(r.from_status) if r.from_status else None,
                Status(r.to_status),
                as_utc(r.at),
                Channel(r.channel),
                r.outlet_id,
                r.operator_id,
                r.rule,
                r.reason,
            )
            for r in self.session.execute(
                select(t).where(t.c.card_id == card_id).order_by(t.c.id)
            ).all()
        ]
        notices = [
            Notice(as_utc(r.at), r.recipient, r.text, r.rule)
            for r in self.session.execute(
                select(n).where(n.c.card_id == card_id).order_by(n.c.id)
            ).all()
        ]
        return transitions, notices

    # -- batches

    def add_batch(
        self, batch_id: str, employer_id: str, name: str, total: int, refused: int, now: dt.datetime
    ) -> None:
        self.session.execute(
            batches.insert().values(
                batch_id=batch_id,
                employer_id=employer_id,
                employer_name=name,
                total=total,
                refused_at_submission=refused,
                created_at=now,
            )
        )

    def batch(self, batch_id: str) -> Row[Any] | None:
        return self.session.execute(
            select(batches).where(batches.c.batch_id == batch_id)
        ).one_or_none()

    def batch_progress(self, batch_id: str) -> dict[str, int]:
        rows = self.session.execute(
            select(sagas.c.state, func.count())
            .where(sagas.c.batch_id == batch_id)
            .group_by(sagas.c.state)
        ).all()
        return {state: int(count) for state, count in rows}

    def batch_refusals(self, batch_id: str, limit: int = 1000) -> list[Row[Any]]:
        return list(
            self.session.execute(
                select(
                    sagas.c.card_id,
                    sagas.c.saga_id,
                    sagas.c.refusal_reason,
                    sagas.c.refusal_rule,
                    sagas.c.refusal_message,
                )
                .where(sagas.c.batch_id == batch_id, sagas.c.state == "FAILED")
                .order_by(sagas.c.card_id)
                .limit(limit)
            ).all()
        )


def _step_times(text: str) -> list[tuple[int, str, str]]:
    return [(int(step), str(event), str(at)) for step, event, at in json.loads(text)]


class SagaRepository:
    """Durable saga records. Leases and retry times are wall-clock, never the test clock."""

    def __init__(self, session: Session, cipher: PiiCipher) -> None:
        self.session = session
        self.cipher = cipher

    def _seal(self, data: dict[str, Any]) -> bytes:
        return self.cipher.encrypt_bytes(json.dumps(data, separators=(",", ":")).encode())

    def _to_record(self, row: Row[Any]) -> SagaRecord:
        return SagaRecord(
            saga_id=row.saga_id,
            kind=row.kind,
            card_id=row.card_id,
            batch_id=row.batch_id,
            state=row.state,
            step=row.step,
            data=json.loads(self.cipher.decrypt_bytes(row.data)),
            retries=row.retries,
            last_error=row.last_error,
            refusal_reason=row.refusal_reason,
            refusal_rule=row.refusal_rule,
            refusal_message=row.refusal_message,
            lease_owner=row.lease_owner,
            trace_parent=row.trace_parent,
            step_times=_step_times(row.step_times),
        )

    def add_many(self, records: Sequence[SagaRecord], now: dt.datetime) -> None:
        if not records:
            return
        self.session.execute(
            sagas.insert(),
            [
                {
                    "saga_id": r.saga_id,
                    "kind": r.kind,
                    "card_id": r.card_id,
                    "batch_id": r.batch_id,
                    "state": r.state,
                    "step": r.step,
                    "data": self._seal(r.data),
                    "retries": 0,
                    "last_error": "",
                    "refusal_reason": "",
                    "refusal_rule": "",
                    "refusal_message": "",
                    "next_attempt_at": now,
                    "lease_owner": "",
                    "lease_until": None,
                    "created_at": now,
                    "updated_at": now,
                    "trace_parent": r.trace_parent,
                    "step_times": "[]",
                }
                for r in records
            ],
        )
        self.session.execute(_ADD_EVENT, [{"b_saga_id": r.saga_id} for r in records])

    def get(self, saga_id: str) -> SagaRecord | None:
        row = self.session.execute(select(sagas).where(sagas.c.saga_id == saga_id)).one_or_none()
        return None if row is None else self._to_record(row)

    def for_card(self, card_id: str, kinds: Sequence[str] = ()) -> SagaRecord | None:
        """The card's latest saga, or its latest of the given kinds."""
        query = select(sagas).where(sagas.c.card_id == card_id)
        if kinds:
            query = query.where(sagas.c.kind.in_(kinds))
        row = self.session.execute(query.order_by(sagas.c.created_at.desc())).first()
        return None if row is None else self._to_record(row)

    def summaries(
        self, state: str, kind: str, card_id: str, after: str, limit: int
    ) -> list[SagaSummary]:
        """Sagas for operations, filtered, ordered by id, starting after ``after``."""
        query = select(sagas).where(sagas.c.saga_id > after)
        if state:
            query = query.where(sagas.c.state == state)
        if kind:
            query = query.where(sagas.c.kind == kind)
        if card_id:
            query = query.where(sagas.c.card_id == card_id)
        rows = self.session.execute(query.order_by(sagas.c.saga_id).limit(limit)).all()
        return [self._summary(row) for row in rows]

    def summary(self, saga_id: str) -> SagaSummary | None:
        row = self.session.execute(select(sagas).where(sagas.c.saga_id == saga_id)).one_or_none()
        return None if row is None else self._summary(row)

    @staticmethod
    def _summary(row: Row[Any]) -> SagaSummary:
        record = SagaRecord(
            saga_id=row.saga_id,
            kind=row.kind,
            card_id=row.card_id,
            batch_id=row.batch_id,
            state=row.state,
            step=row.step,
            data={},
            retries=row.retries,
            last_error=row.last_error,
            refusal_reason=row.refusal_reason,
            refusal_rule=row.refusal_rule,
            refusal_message=row.refusal_message,
            trace_parent=row.trace_parent,
            step_times=_step_times(row.step_times),
        )
        waiting = row.state in ACTIVE_SAGA_STATES and row.retries > 0
        return SagaSummary(
            record,
            as_utc(row.created_at),
            as_utc(row.updated_at),
            as_utc(row.next_attempt_at) if waiting else None,
        )

    def claim(
        self, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int = 1
    ) -> list[SagaRecord]:
        """Take the leases of up to ``limit`` runnable sagas: due, and not leased or their
        lease run out.

        On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets replicas claim side by side without
        waiting on each other; on SQLite the writing transaction already serialises claims.
        """
        rows = self.session.execute(_CLAIMABLE, {"now": now, "limit": limit}).all()
        if rows:
            self.session.execute(
                _TAKE_LEASE,
                [
                    {"b_saga_id": row.saga_id, "owner": owner, "until": now + lease, "now": now}
                    for row in rows
                ],
            )
        records = [self._to_record(row) for row in rows]
        for record in records:
            record.lease_owner = owner
        return records

    def resume(self, saga_id: str, now: dt.datetime) -> bool:
        """Put a saga that waits for an operator back to work, its retries counted afresh:
        forward, or on with its compensation if it had been refused."""
        result = self.session.execute(
            update(sagas)
            .where(sagas.c.saga_id == saga_id, sagas.c.state == "NEEDS_ATTENTION")
            .values(
                state=case((sagas.c.refusal_reason == "", "RUNNING"), else_="COMPENSATING"),
                retries=0,
                next_attempt_at=now,
                updated_at=now,
            )
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        self.session.execute(_ADD_EVENT, {"b_saga_id": saga_id})
        return True

    def give_up(self, saga_id: str, now: dt.datetime, reason: str, message: str) -> bool:
        """Turn a saga that waits for an operator to its compensation, as if refused with
        ``reason`` (a saga refused before keeps its own refusal), its retries counted afresh."""
        unrefused = sagas.c.refusal_reason == ""
        result = self.session.execute(
            update(sagas)
            .where(sagas.c.saga_id == saga_id, sagas.c.state == "NEEDS_ATTENTION")
            .values(
                state="COMPENSATING",
                refusal_reason=case((unrefused, reason), else_=sagas.c.refusal_reason),
                refusal_message=case((unrefused, message), else_=sagas.c.refusal_message),
                retries=0,
                next_attempt_at=now,
                updated_at=now,
            )
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        self.session.execute(_ADD_EVENT, {"b_saga_id": saga_id})
        return True

    def release(self, owner: str) -> int:
        """Hand back every lease ``owner`` holds (a worker stopping), so another replica claims
        those sagas at once rather than after the lease runs out."""
        result = self.session.execute(
            update(sagas)
            .where(sagas.c.lease_owner == owner, sagas.c.lease_until.is_not(None))
            .values(lease_owner="", lease_until=None)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def save(
        self,
        record: SagaRecord,
        now: dt.datetime,
        lease_until: dt.datetime | None,
        next_attempt_at: dt.datetime | None = None,
    ) -> bool:
        """Write the saga's progress if this worker still holds its lease; False if it lost it."""
        params: dict[str, Any] = {
            "b_saga_id": record.saga_id,
            "b_owner": record.lease_owner,
            "state": record.state,
            "step": record.step,
            "data": self._seal(record.data),
            "retries": record.retries,
            "last_error": record.last_error[:200],
            "refusal_reason": record.refusal_reason,
            "refusal_rule": record.refusal_rule,
            "refusal_message": record.refusal_message[:300],
            "step_times": json.dumps(record.step_times, separators=(",", ":")),
            "lease_until": lease_until,
            "lease_owner": record.lease_owner if lease_until else "",
            "updated_at": now,
        }
        if next_attempt_at is None:
            result = self.session.execute(_SAVE_SAGA, params)
        else:
            result = self.session.execute(
                _SAVE_SAGA_RETRY, {**params, "next_attempt_at": next_attempt_at}
            )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        self.session.execute(_ADD_EVENT, {"b_saga_id": record.saga_id})
        return True

    def events(self, saga_id: str, after: int, limit: int) -> list[SagaEvent]:
        """The saga's events numbered after ``after``, in order, at most ``limit``."""
        rows = self.session.execute(
            select(saga_events)
            .where(saga_events.c.saga_id == saga_id, saga_events.c.sequence > after)
            .order_by(saga_events.c.sequence)
            .limit(limit)
        ).all()
        return [
            SagaEvent(
                sequence=row.sequence,
                at=as_utc(row.at),
                state=row.state,
                step=row.step,
                retries=row.retries,
                last_error=row.last_error,
                refusal_reason=row.refusal_reason,
                refusal_rule=row.refusal_rule,
                refusal_message=row.refusal_message,
            )
            for row in rows
        ]


@dataclass(frozen=True)
class SagaEvent:
    """A saga's progress as one save left it (WatchSaga)."""

    sequence: int
    at: dt.datetime
    state: str
    step: int
    retries: int
    last_error: str
    refusal_reason: str
    refusal_rule: str
    refusal_message: str


@dataclass(frozen=True)
class SagaSummary:
    """A saga for operations: its record without the (encrypted) working data, and its times."""

    record: SagaRecord
    created_at: dt.datetime
    updated_at: dt.datetime
    next_attempt_at: dt.datetime | None


class PasswordRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, card_id: str) -> PasswordState:
        row = self.session.execute(
            select(service_passwords)
            .where(service_passwords.c.card_id == card_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            return PasswordState(card_id)
        locked = as_utc(row.locked_until) if row.locked_until else None
        changed = as_utc(row.changed_at) if row.changed_at else None
        return PasswordState(card_id, row.hash, row.failures, locked, changed)

    def save(self, state: PasswordState) -> None:
        values = {
            "hash": state.hash,
            "failures": state.failures,
            "locked_until": state.locked_until,
            "changed_at": state.changed_at,
        }
        updated = self.session.execute(
            update(service_passwords)
            .where(service_passwords.c.card_id == state.card_id)
            .values(**values)
        )
        if not updated.rowcount:  # type: ignore[attr-defined]
            self.session.execute(service_passwords.insert().values(card_id=state.card_id, **values))


@dataclass(frozen=True)
class TimerRecord:
    timer_id: str
    kind: str
    target: str
    rule: str
    due_at: dt.datetime
    state: str = "PENDING"
    outcome: str = ""
    attempts: int = 0
    fired_at: dt.datetime | None = None
    # The due date rests on working days of a year whose State Council schedule is estimated.
    estimated_calendar: bool = False
    created_at: dt.datetime | None = None


class TimerRepository:
    """Durable timers. Due times are the suite's clock; leases are wall-clock."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, timer: TimerRecord, now: dt.datetime) -> None:
        self.session.execute(
            timers.insert(),
            {
                "timer_id": timer.timer_id,
                "kind": timer.kind,
                "target": timer.target,
                "rule": timer.rule,
                # SQLite keeps no offset: every stored time is UTC.
                "due_at": timer.due_at.astimezone(dt.UTC),
                "state": "PENDING",
                "outcome": "",
                "attempts": 0,
                "lease_owner": "",
                "lease_until": None,
                "created_at": now,
                "fired_at": None,
                "estimated_calendar": timer.estimated_calendar,
            },
        )

    def cancel(self, kind: str, target: str, outcome: str) -> None:
        self.session.execute(
            update(timers)
            .where(timers.c.kind == kind, timers.c.target == target, timers.c.state == "PENDING")
            .values(state="CANCELLED", outcome=outcome[:200])
        )

    @staticmethod
    def _to_timer(row: Row[Any]) -> TimerRecord:
        return TimerRecord(
            row.timer_id,
            row.kind,
            row.target,
            row.rule,
            as_utc(row.due_at),
            row.state,
            row.outcome,
            row.attempts,
            as_utc(row.fired_at) if row.fired_at else None,
            row.estimated_calendar,
            as_utc(row.created_at),
        )

    def estimated_pending(self) -> list[TimerRecord]:
        """Pending timers whose due date was counted on an estimated calendar, locked, oldest
        first; another worker recounting at the same time skips them."""
        rows = self.session.execute(
            select(timers)
            .where(timers.c.state == "PENDING", timers.c.estimated_calendar.is_(True))
            .order_by(timers.c.created_at, timers.c.timer_id)
            .with_for_update(skip_locked=True)
        ).all()
        return [self._to_timer(r) for r in rows]

    def recount(self, timer_id: str, due_at: dt.datetime, estimated: bool) -> None:
        """The due date counted again on the calendar now in force."""
        self.session.execute(
            update(timers)
            .where(timers.c.timer_id == timer_id, timers.c.state == "PENDING")
            .values(due_at=due_at.astimezone(dt.UTC), estimated_calendar=estimated)
        )

    def listing(
        self,
        kind: str,
        rule: str,
        state: str,
        overdue_at: dt.datetime | None,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[TimerRecord]:
        """Timers for operations, filtered, by due time then id, starting after ``after``."""
        query = select(timers)
        if kind:
            query = query.where(timers.c.kind == kind)
        if rule:
            query = query.where(timers.c.rule == rule)
        if state:
            query = query.where(timers.c.state == state)
        if overdue_at is not None:
            query = query.where(timers.c.state == "PENDING", timers.c.due_at < overdue_at)
        if after is not None:
            due, timer_id = after
            query = query.where(
                (timers.c.due_at > due)
                | ((timers.c.due_at == due) & (timers.c.timer_id > timer_id))
            )
        rows = self.session.execute(
            query.order_by(timers.c.due_at, timers.c.timer_id).limit(limit)
        ).all()
        return [self._to_timer(r) for r in rows]

    def claim_due(
        self, owner: str, due_by: dt.datetime, wall: dt.datetime, lease: dt.timedelta, limit: int
    ) -> list[TimerRecord]:
        rows = self.session.execute(
            _CLAIM_TIMERS, {"due_by": due_by, "wall": wall, "limit": limit}
        ).all()
        if rows:
            self.session.execute(
                update(timers)
                .where(timers.c.timer_id.in_([r.timer_id for r in rows]))
                .values(lease_owner=owner, lease_until=wall + lease)
            )
        return [self._to_timer(r) for r in rows]

    def fired_many(self, outcomes: Sequence[tuple[str, str]], owner: str, at: dt.datetime) -> bool:
        """Mark several timers fired in this transaction, if this worker still holds every one;
        False (and nothing written) if it lost any of them."""
        if not outcomes:
            return True
        ids = [timer_id for timer_id, _ in outcomes]
        held = self.session.execute(
            select(func.count())
            .select_from(timers)
            .where(
                timers.c.timer_id.in_(ids),
                timers.c.lease_owner == owner,
                timers.c.state == "PENDING",
            )
        ).scalar_one()
        if held != len(ids):
            return False
        self.session.execute(
            _FIRE_TIMER,
            [
                {"b_timer_id": timer_id, "outcome": outcome[:200], "fired_at": at}
                for timer_id, outcome in outcomes
            ],
        )
        return True

    def failed(self, timer_id: str, owner: str, outcome: str, retry_at: dt.datetime) -> None:
        """Record a failed firing; the lease's end, held by no worker, is when it is tried
        again."""
        self.session.execute(
            update(timers)
            .where(timers.c.timer_id == timer_id, timers.c.lease_owner == owner)
            .values(
                outcome=outcome[:200],
                attempts=timers.c.attempts + 1,
                lease_owner="",
                lease_until=retry_at,
            )
        )

    def release(self, owner: str) -> int:
        """Hand back every lease ``owner`` holds on a pending timer (a worker stopping)."""
        result = self.session.execute(
            update(timers)
            .where(timers.c.lease_owner == owner, timers.c.state == "PENDING")
            .values(lease_owner="", lease_until=None)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


class FeedRepository:
    """Positions in the event feeds the card service follows."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def position(self, feed: str, for_update: bool = False) -> int:
        query = select(feed_positions.c.position).where(feed_positions.c.feed == feed)
        if for_update:
            query = query.with_for_update()
        return int(self.session.execute(query).scalar_one())

    def advance(self, feed: str, position: int) -> None:
        self.session.execute(
            update(feed_positions).where(feed_positions.c.feed == feed).values(position=position)
        )


class CardUnitOfWork(UnitOfWork):
    cards: CardRepository
    feeds: FeedRepository
    sagas: SagaRepository
    passwords: PasswordRepository
    timers: TimerRepository

    def __init__(self, db: Database, cipher: PiiCipher, readonly: bool = False) -> None:
        super().__init__(db, readonly)
        self._cipher = cipher

    def _open(self, session: Session) -> None:
        self.sagas = SagaRepository(session, self._cipher)
        self.cards = CardRepository(session, self._cipher, self.sagas)
        self.passwords = PasswordRepository(session)
        self.timers = TimerRepository(session)
        self.feeds = FeedRepository(session)


@dataclass(frozen=True)
class OperationsSnapshot:
    """What an operator watches in the card service's database (README, "Operations")."""

    sagas: list[tuple[str, str, int]]  # kind, state, count of unfinished sagas
    oldest_saga_started: dt.datetime | None
    retrying: int
    oldest_retrying_started: dt.datetime | None
    # kind, rule, pending, of which overdue, of which counted through an unconfirmed year
    deadlines: list[tuple[str, str, int, int, int]]


def operations_snapshot(session: Session, now: dt.datetime) -> OperationsSnapshot:
    """Unfinished sagas and pending deadlines; every query reads an index range on state."""
    active = sagas.c.state.in_(ACTIVE_SAGA_STATES)
    by_kind = session.execute(
        select(sagas.c.kind, sagas.c.state, func.count())
        .where(active)
        .group_by(sagas.c.kind, sagas.c.state)
    ).all()
    oldest = session.execute(select(func.min(sagas.c.created_at)).where(active)).scalar_one()
    retrying, oldest_retrying = session.execute(
        select(func.count(), func.min(sagas.c.created_at)).where(active, sagas.c.retries > 0)
    ).one()
    overdue = case((timers.c.due_at < now, 1), else_=0)
    estimated = case((timers.c.estimated_calendar, 1), else_=0)
    deadlines = session.execute(
        select(
            timers.c.kind,
            timers.c.rule,
            func.count(),
            func.coalesce(func.sum(overdue), 0),
            func.coalesce(func.sum(estimated), 0),
        )
        .where(timers.c.state == "PENDING")
        .group_by(timers.c.kind, timers.c.rule)
    ).all()
    return OperationsSnapshot(
        sagas=[(r[0], r[1], int(r[2])) for r in by_kind],
        oldest_saga_started=as_utc(oldest) if oldest is not None else None,
        retrying=int(retrying),
        oldest_retrying_started=as_utc(oldest_retrying) if oldest_retrying is not None else None,
        deadlines=[(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in deadlines],
    )
