"""The audit trail: every state-changing call, kept in the service's own database, hash-chained.

Each stored answer of a mutating call (``idempotency``) appends one row in the same transaction
as the call's effects, so a row commits with its change or not at all: when, which client, on
which channel, which operator and outlet, for which person (the opaque person id, never a
document number), which method and request id, which card or account, and the outcome (``OK``
or the refusal's reason) with its rule.

The trail is ``LANES`` independent chains ("lanes"). A row goes into the lane of its target
(``lane_of``: a stable hash of its card, account or person id, else of its request id), so the
writes about one card stay in one ordered chain while writes about different cards do not wait
for each other. In its lane a row is numbered 1, 2, 3, ... and chained: it carries the hash of
the one before (the first follows ``GENESIS``) and its own hash, SHA-256 over a canonical
encoding of its fields, its number and that predecessor hash. ``audit_head`` holds the number
and hash of the last row of each lane, one row per lane, locked (``FOR UPDATE``) by every append
to that lane: concurrent writers on PostgreSQL to one lane queue at its head for the moment
between their audit row and their commit and never fork it, writers to other lanes go by (on
SQLite the write lock already serialises everything). ``verify`` walks every lane and names
the first row of each that was modified, deleted or inserted out of order; a deleted tail shows
against the lane's head. The lane itself is not hashed: a row's place is proven by its link to
its predecessor and, outside lane 0, by its target's lane, so a row moved between lanes breaks
both.

The lane count is fixed when the lanes are created (each service's audit-lane migration); the
chain kept before lanes existed carries on as lane 0, unchanged, and verifies as before (its
rows are the only ones allowed in a lane that is not their target's).

The chain makes tampering evident to whoever did not also recompute every later hash; the signed
anchors the service writes outside the database (``anchors``) catch whoever did.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

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
    bindparam,
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
LANES = 16  # as created by each service's audit-lane migration; a new count needs a migration


def define_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The ``audit_trail`` and ``audit_head`` tables, added to a service's metadata."""
    trail = Table(
        TRAIL,
        metadata,
        Column("lane", Integer, primary_key=True, autoincrement=False),
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
        Column("lane", Integer, primary_key=True, autoincrement=False),
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


def lane_of(item: Entry) -> int:
    """The lane of a row: a stable hash of its target, the card, account or person it is about,
    or its request when it names none (the same in every process and in the database)."""
    return lane_for(item.card_id or item.account_id or item.person_id or item.request_id)


def lane_for(target: str) -> int:
    """The lane of the rows about ``target``: the first 8 bytes of its SHA-256, modulo
    ``LANES``."""
    return int.from_bytes(hashlib.sha256(target.encode()).digest()[:8], "big") % LANES


@dataclass(frozen=True)
class Template:
    """A row's canonical encoding around the two values only its place in its lane's chain
    gives it, for a database function that appends it: ``before + prev_hash + between +
    str(seq) + after`` is what ``digest`` hashes; ``fields`` are its columns but those two and
    the hash, as JSON values (its ``lane`` among them)."""

    fields: dict[str, str | int]
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
    fields: dict[str, str | int] = {**_fields(item), "lane": lane_of(item)}
    return Template(fields, encoded[:start], encoded[start:-2], "}")


@dataclass(frozen=True)
class Break:
    """The first row of a lane out of place, and how."""

    lane: int
    seq: int
    problem: str


@dataclass(frozen=True)
class Verdict:
    """The result of walking every lane: ``breaks`` is empty when the trail is intact."""

    rows: int
    breaks: tuple[Break, ...] = ()
    heads: tuple[str, ...] = ()  # the hash of each lane's last row, in lane order, when intact

    @property
    def intact(self) -> bool:
        return not self.breaks

    @property
    def head(self) -> str:
        """One hash over every lane's head, to keep elsewhere as the trail's anchor."""
        return hashlib.sha256("".join(self.heads).encode()).hexdigest() if self.heads else ""


@dataclass(frozen=True)
class Row:
    lane: int
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
                f"#{self.lane}.{self.seq}",
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


def _broken() -> DomainError:
    return DomainError(
        "AUDIT_TRAIL_BROKEN",
        "the audit trail has lost its head; operations must repair it",
        kind=Kind.UNAVAILABLE,
        rule="AUDIT",
    )


class _Walk:
    """One lane's chain as ``verify`` walks it: the next number and hash it expects."""

    def __init__(self, lane: int) -> None:
        self.lane, self.expected, self.prev_hash = lane, 1, GENESIS
        self.problem: Break | None = None

    def follow(self, row: Row) -> None:
        if self.problem is not None:
            return
        seq = row.seq
        if seq > self.expected:
            self.problem = Break(
                self.lane, self.expected, f"rows {self.expected} to {seq - 1} were deleted"
            )
        elif row.hash != digest(seq, row.prev_hash, row.item):
            self.problem = Break(self.lane, seq, f"row {seq} was modified")
        elif row.prev_hash != self.prev_hash or (self.lane and lane_of(row.item) != self.lane):
            self.problem = Break(
                self.lane, seq, f"row {seq} does not follow row {seq - 1} (inserted out of order)"
            )
        else:
            self.expected, self.prev_hash = seq + 1, row.hash

    def end(self, head: Any) -> Break | None:
        """The lane's verdict against its head row (None: the head was deleted)."""
        if self.problem is not None:
            return self.problem
        last = self.expected - 1
        if head is None:
            return Break(self.lane, last, "the lane's head was deleted")
        if head.seq > last:
            return Break(self.lane, last + 1, f"rows {last + 1} to {head.seq} were deleted")
        if head.seq < last or head.hash != self.prev_hash:
            return Break(self.lane, last, f"row {last} is not the head's (inserted out of order)")
        return None


class AuditTrail:
    """Appends to, walks and lists a service's audit trail (the only SQL on those tables)."""

    def __init__(self, metadata: MetaData) -> None:
        self.trail = metadata.tables[TRAIL]
        self.head = metadata.tables[HEAD]
        h = self.head.c
        self._lock_head = select(h.seq, h.hash).where(h.lane == bindparam("lane")).with_for_update()

    def append(self, session: Session, item: Entry) -> None:
        """Add ``item`` after the head of its lane, inside the caller's transaction (the lane's
        head stays locked until the transaction ends)."""
        lane = lane_of(item)
        head = session.execute(self._lock_head, {"lane": lane}).one_or_none()
        if head is None:
            raise _broken()
        seq = int(head.seq) + 1
        row_hash = digest(seq, head.hash, item)
        session.execute(
            self.trail.insert(),
            {**asdict(item), "lane": lane, "seq": seq, "prev_hash": head.hash, "hash": row_hash},
        )
        session.execute(
            update(self.head).where(self.head.c.lane == lane).values(seq=seq, hash=row_hash)
        )

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
        """Rows in time order across lanes (in a lane's order at the same instant), filtered by
        card, person, client and time."""
        t = self.trail
        query = select(t).order_by(t.c.at, t.c.lane, t.c.seq)
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

    def heads(self, session: Session) -> list[tuple[int, int, str]]:
        """Every lane's head, number and hash of its last row, in lane order (what an anchor
        keeps, ``anchors``)."""
        h = self.head.c
        query = select(h.lane, h.seq, h.hash).order_by(h.lane)
        return [(int(r.lane), int(r.seq), str(r.hash)) for r in session.execute(query)]

    def links(self, session: Session) -> Iterator[tuple[int, int, str]]:
        """Lane, number and hash of every row, in lane and chain order."""
        t = self.trail.c
        query = select(t.lane, t.seq, t.hash).order_by(t.lane, t.seq)
        for r in session.execute(query).yield_per(5000):
            yield int(r.lane), int(r.seq), str(r.hash)

    def verify(self, session: Session) -> Verdict:
        """Walk every lane from its first row; the first row of each out of place is a break."""
        t, h = self.trail, self.head
        heads = {int(r.lane): r for r in session.execute(select(h.c.lane, h.c.seq, h.c.hash))}
        walks = {lane: _Walk(lane) for lane in range(LANES)}
        count = 0
        query = select(t).order_by(t.c.lane, t.c.seq)
        for found in session.execute(query).mappings().yield_per(1000):
            row = _row(found)
            count += 1
            walks.setdefault(row.lane, _Walk(row.lane)).follow(row)
        breaks = [w.end(heads.get(lane)) for lane, w in sorted(walks.items())]
        found_breaks = tuple(b for b in breaks if b is not None)
        if found_breaks:
            return Verdict(count, found_breaks)
        return Verdict(count, heads=tuple(w.prev_hash for _, w in sorted(walks.items())))


def _row(found: object) -> Row:
    values = dict(found)  # type: ignore[call-overload]
    lane, seq = values.pop("lane"), values.pop("seq")
    prev_hash, row_hash = values.pop("prev_hash"), values.pop("hash")
    values["at"] = as_utc(values["at"])
    return Row(int(lane), int(seq), Entry(**values), prev_hash, row_hash)
