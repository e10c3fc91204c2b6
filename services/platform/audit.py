"""The audit trail: every state-changing call, kept in the service's own database, hash-chained.

Each stored answer of a mutating call (``idempotency``) appends one row in the same transaction
as the call's effects, so a row commits with its change or not at all: when, which client, on
which channel, which operator and outlet, for which person (the opaque person id, never a
document number), which method and request id, which card or account, and the outcome (``OK``
or the refusal's reason) with its rule.

Rows are numbered 1, 2, 3, ... and chained: each carries the hash of the one before (the first
follows ``GENESIS``) and its own hash, SHA-256 over a canonical encoding of its fields and that
predecessor hash. ``audit_head`` holds the number and hash of the last row in one row, locked
(``FOR UPDATE``) by every append: concurrent writers on PostgreSQL queue at the head for the
moment between their audit row and their commit and never fork the chain (on SQLite the write
lock already serialises them). ``verify`` walks the chain and names the first row that was
modified, deleted or inserted out of order; a deleted tail shows against the head.

The chain makes tampering evident to whoever did not also recompute every later hash; the head's
hash, copied elsewhere from time to time, anchors it against that.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass

from google.protobuf.message import Message
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    select,
    update,
)
from sqlalchemy.orm import Session

from services.platform.auth import Caller
from services.platform.db import Serial, as_utc
from services.platform.errors import DomainError, Kind
from services.platform.masking import mask_document_number, redact

GENESIS = "0" * 64
OK = "OK"
TRAIL = "audit_trail"
HEAD = "audit_head"


def define_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The ``audit_trail`` and ``audit_head`` tables, added to a service's metadata."""
    trail = Table(
        TRAIL,
        metadata,
        Column("seq", Serial, primary_key=True, autoincrement=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("client_id", String(64), nullable=False),
        Column("channel", String(20), nullable=False),
        Column("operator_id", String(64), nullable=False),
        Column("outlet_id", String(64), nullable=False),
        Column("person_id", String(64), nullable=False),
        Column("method", String(64), nullable=False),
        Column("request_id", String(128), nullable=False),
        Column("card_id", String(64), nullable=False),
        Column("account_id", String(64), nullable=False),
        Column("outcome", String(64), nullable=False),
        Column("rule", String(16), nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        Index("ix_audit_trail_card", "card_id"),
        Index("ix_audit_trail_person", "person_id"),
    )
    head = Table(
        HEAD,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seq", BigInteger, nullable=False),
        Column("hash", String(64), nullable=False),
    )
    return trail, head


@dataclass(frozen=True)
class Entry:
    """One audited call, before it takes its place in the chain."""

    at: dt.datetime
    client_id: str
    channel: str
    operator_id: str
    outlet_id: str
    person_id: str
    method: str
    request_id: str
    card_id: str
    account_id: str
    outcome: str
    rule: str


def _field(message: Message | None, name: str) -> str:
    """A top-level string field of a message, "" when the message has none by that name."""
    if message is None:
        return ""
    found = message.DESCRIPTOR.fields_by_name.get(name)
    if found is None or found.type != found.TYPE_STRING or found.is_repeated:
        return ""
    return str(getattr(message, name))


def entry(
    at: dt.datetime,
    caller: Caller,
    method: str,
    request_id: str,
    request: Message,
    response: Message | None = None,
    refusal: DomainError | None = None,
) -> Entry:
    """The audit entry of a call: who from the caller, what from the request (or, when the
    request does not name them, the response). Only opaque ids are taken, never a document."""

    def named(name: str) -> str:
        return _field(request, name) or _field(response, name)

    return Entry(
        at=as_utc(at),
        client_id=caller.client_id or caller.caller,
        channel=caller.channel.value,
        operator_id=caller.operator_id,
        outlet_id=caller.outlet_id,
        person_id=caller.person_id or named("person_id"),
        method=method,
        request_id=redact(request_id),
        card_id=named("card_id"),
        account_id=named("account_id"),
        outcome=refusal.reason if refusal is not None else OK,
        rule=refusal.rule if refusal is not None else "",
    )


def _fields(item: Entry) -> dict[str, str]:
    return {**asdict(item), "at": as_utc(item.at).isoformat(timespec="microseconds")}


def _canonical(seq: int, prev_hash: str, item: Entry) -> str:
    canonical = {"seq": seq, "prev_hash": prev_hash, **_fields(item)}
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(seq: int, prev_hash: str, item: Entry) -> str:
    """SHA-256 over the canonical encoding of a row: sorted-key compact JSON of its fields,
    its number and its predecessor's hash, the time in UTC ISO 8601 with microseconds."""
    return hashlib.sha256(_canonical(seq, prev_hash, item).encode()).hexdigest()


@dataclass(frozen=True)
class Template:
    """A row's canonical encoding around the two values only its place in the chain gives it,
    for a database function that appends it: ``before + prev_hash + between + str(seq) +
    after`` is what ``digest`` hashes; ``fields`` are its columns but those two and the hash,
    as JSON values."""

    fields: dict[str, str]
    before: str
    between: str
    after: str


def template(item: Entry) -> Template:
    """The canonical encoding of ``item`` with its predecessor's hash and its number left out."""
    encoded = _canonical(0, "", item)
    prev_key, seq_key = '"prev_hash":"', ',"seq":0}'
    start = encoded.index(prev_key) + len(prev_key)  # keys are unique, values are escaped
    if not encoded.endswith(seq_key):  # "seq" sorts last of the fields
        raise ValueError("the canonical encoding no longer ends with the row's number")
    return Template(_fields(item), encoded[:start], encoded[start:-2], "}")


@dataclass(frozen=True)
class Verdict:
    """The result of walking a chain: ``problem`` is empty when it is intact."""

    rows: int
    seq: int = 0
    problem: str = ""
    head: str = ""  # the hash of the last row of an intact chain, to keep elsewhere

    @property
    def intact(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Row:
    seq: int
    item: Entry
    prev_hash: str
    hash: str

    def masked(self) -> str:
        """One line for operators: opaque ids shortened, accounts masked."""
        i = self.item
        person = i.person_id[:6] + "…" if i.person_id else "-"
        return "  ".join(
            [
                f"#{self.seq}",
                as_utc(i.at).isoformat(timespec="seconds"),
                i.method,
                f"outcome={i.outcome}" + (f" rule={i.rule}" if i.rule else ""),
                f"client={i.client_id}",
                f"channel={i.channel}",
                f"operator={i.operator_id or '-'}",
                f"outlet={i.outlet_id or '-'}",
                f"person={person}",
                f"card={i.card_id or '-'}",
                f"account={mask_document_number(i.account_id) if i.account_id else '-'}",
                f"request={i.request_id}",
            ]
        )


class AuditTrail:
    """Appends to, walks and lists a service's audit trail (the only SQL on those tables)."""

    def __init__(self, metadata: MetaData) -> None:
        self.trail = metadata.tables[TRAIL]
        self.head = metadata.tables[HEAD]

    def append(self, session: Session, item: Entry) -> None:
        """Add ``item`` after the chain's head, inside the caller's transaction."""
        head = session.execute(
            select(self.head.c.seq, self.head.c.hash).where(self.head.c.id == 1).with_for_update()
        ).one_or_none()
        if head is None:
            raise DomainError(
                "AUDIT_TRAIL_BROKEN",
                "the audit trail has lost its head; operations must repair it",
                kind=Kind.UNAVAILABLE,
                rule="AUDIT",
            )
        seq = int(head.seq) + 1
        row_hash = digest(seq, head.hash, item)
        session.execute(
            self.trail.insert(),
            {**asdict(item), "seq": seq, "prev_hash": head.hash, "hash": row_hash},
        )
        session.execute(update(self.head).where(self.head.c.id == 1).values(seq=seq, hash=row_hash))

    def rows(
        self,
        session: Session,
        *,
        card_id: str = "",
        person_id: str = "",
        client_id: str = "",
        since: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """Rows in chain order, filtered by card, person, client and time."""
        t = self.trail
        query = select(t).order_by(t.c.seq)
        if card_id:
            query = query.where(t.c.card_id == card_id)
        if person_id:
            query = query.where(t.c.person_id == person_id)
        if client_id:
            query = query.where(t.c.client_id == client_id)
        if since is not None:
            query = query.where(t.c.at >= since)
        if limit is not None:
            query = query.limit(limit)
        return [_row(r) for r in session.execute(query).mappings()]

    def verify(self, session: Session) -> Verdict:
        """Walk the chain from its first row; the first row out of place is the verdict."""
        expected, prev_hash, count = 1, GENESIS, 0
        t = self.trail
        for found in session.execute(select(t).order_by(t.c.seq)).mappings().yield_per(1000):
            row = _row(found)
            count += 1
            if row.seq > expected:
                return Verdict(count, expected, f"rows {expected} to {row.seq - 1} were deleted")
            if row.hash != digest(row.seq, row.prev_hash, row.item):
                return Verdict(count, row.seq, f"row {row.seq} was modified")
            if row.prev_hash != prev_hash:
                return Verdict(
                    count,
                    row.seq,
                    f"row {row.seq} does not follow row {row.seq - 1} (inserted out of order)",
                )
            expected, prev_hash = row.seq + 1, row.hash
        head = session.execute(select(self.head.c.seq, self.head.c.hash)).one_or_none()
        last = expected - 1
        if head is None:
            return Verdict(count, last, "the chain's head was deleted")
        if head.seq > last:
            return Verdict(count, last + 1, f"rows {last + 1} to {head.seq} were deleted")
        if head.seq < last or head.hash != prev_hash:
            return Verdict(count, last, f"row {last} is not the head's (inserted out of order)")
        return Verdict(count, head=prev_hash)


def _row(found: object) -> Row:
    values = dict(found)  # type: ignore[call-overload]
    seq, prev_hash, row_hash = values.pop("seq"), values.pop("prev_hash"), values.pop("hash")
    values["at"] = as_utc(values["at"])
    return Row(int(seq), Entry(**values), prev_hash, row_hash)
