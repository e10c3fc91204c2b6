"""Transit's view of the cards: the ``card_status`` table, defined on transit's metadata by
``store.py`` (``define_table``), and the PostgreSQL top-up that decides on it in one statement.

``card_status`` holds each card's status as the card service pushes it, with its version (only a
newer version replaces an older one), and the card's holder, which never changes: kept once,
from a push or from the card service's answer, and never replaced.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.platform import idempotency
from services.platform.db import Database
from services.transit.domain.wallet import CardView, Entry


def define_table(metadata: MetaData) -> Table:
    """``card_status``, added to transit's metadata."""
    return Table(
        "card_status",
        metadata,
        Column("card_id", String(64), primary_key=True),
        Column("status", String(20), nullable=False),  # the card service's CardStatus name
        Column("version", BigInteger, nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        Column("person_id", String(64)),  # the card's holder; NULL until transit knows it
    )


class CardStatusRepository:
    """Transit's view of each card's status and holder (``card_status``)."""

    def __init__(self, session: Session, postgres: bool, table: Table) -> None:
        self.session = session
        self._get = select(table.c.status, table.c.version, table.c.person_id).where(
            table.c.card_id == bindparam("card_id")
        )
        insert = (postgresql.insert if postgres else sqlite.insert)(table)
        newer = table.c.version < insert.excluded.version
        # A push or an answer older than the view changes its status in nothing; a holder is
        # kept where none was, whatever the version.
        self._record = insert.on_conflict_do_update(
            index_elements=["card_id"],
            set_={
                "status": case((newer, insert.excluded.status), else_=table.c.status),
                "version": case((newer, insert.excluded.version), else_=table.c.version),
                "recorded_at": insert.excluded.recorded_at,
                "person_id": func.coalesce(table.c.person_id, insert.excluded.person_id),
            },
            where=or_(
                newer, and_(table.c.person_id.is_(None), insert.excluded.person_id.is_not(None))
            ),
        )

    def get(self, card_id: str) -> CardView | None:
        row = self.session.execute(self._get, {"card_id": card_id}).one_or_none()
        if row is None:
            return None
        return CardView(card_id, row.status, int(row.version), row.person_id or "")

    def record(self, view: CardView, now: dt.datetime) -> CardView:
        """Keep ``view``'s status unless the card's view is as new or newer, and its holder
        unless the view names one already; the view kept."""
        self.session.execute(
            self._record,
            {
                "card_id": view.card_id,
                "status": view.status,
                "version": view.version,
                "recorded_at": now,
                "person_id": view.person_id or None,
            },
        )
        kept = self.get(view.card_id)
        return view if kept is None else kept


@dataclass(frozen=True)
class OneTrip:
    """What ``transit_top_up`` did: OK (booked), STORED (the request id's earlier answer),
    IN_PROGRESS (held by another transaction) or SLOW (nothing changed: the ordinary path
    decides)."""

    result: str
    entry_id: int
    balance_after_fen: int
    held: tuple[str, str, bytes] | None  # STORED: fingerprint, outcome, payload


_TOP_UP_IN_ONE = text(
    "SELECT * FROM transit_top_up(:lock_key, :scope, :request_id, :fingerprint, :expires_at,"
    " :card_id, :usable, :amount, :cap, :kind, :channel, :outlet_id, :at, :answer,"
    " CAST(:audit AS jsonb), :audit_before, :audit_between, :audit_after,"
    " CAST(:holder AS text))"
)


def top_up_in_one(
    db: Database,
    call: idempotency.OneStatement,
    entry: Entry,
    usable: frozenset[str],
    cap_fen: int,
    answer: bytes,
    holder: str,
) -> OneTrip:
    """PostgreSQL: a top-up in one round trip to the database (migrations 0006 and 0008): the
    key claimed, the card's view read (naming ``holder`` as the card's holder, unless ``holder``
    is "": a system caller's top-up), the wallet credited within ``cap_fen``, ``entry`` booked,
    ``answer`` (completed with the entry id and balance) stored under the key and the audit row
    appended, in the one statement's own transaction."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        row = connection.execute(
            _TOP_UP_IN_ONE,
            {
                "lock_key": call.lock_key,
                "scope": call.scope,
                "request_id": call.request_id,
                "fingerprint": call.fingerprint,
                "expires_at": call.expires_at,
                "card_id": entry.card_id,
                "usable": sorted(usable),
                "amount": entry.amount_fen,
                "cap": cap_fen,
                "kind": entry.kind.value,
                "channel": entry.channel,
                "outlet_id": entry.outlet_id,
                "at": entry.booked_at,
                "answer": answer,
                "audit": json.dumps(call.audit.fields),
                "audit_before": call.audit.before,
                "audit_between": call.audit.between,
                "audit_after": call.audit.after,
                "holder": holder or None,
            },
        ).one()
    held = None
    if row.result == "STORED":
        held = (row.stored_fingerprint, row.stored_outcome, bytes(row.stored_payload))
    return OneTrip(row.result, int(row.entry_id or 0), int(row.balance_after or 0), held)
