"""The transit service's tables and repositories: the only file here that speaks SQL.

``wallets`` holds one row per card with its balance, locked (``FOR UPDATE``) by every movement;
``wallet_entries`` is the ledger, insert-only; the balance row and its entry are written in one
transaction, so the balance always equals the sum of the card's entries. ``refunds`` is the
outbox of money on its way to a bank account: written in the transaction that debits the
wallet, claimed by the relay with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL).
``park_passes`` holds one row per card and year (A11.1). ``card_status`` is transit's view of
each card's status and holder (``card_view_store``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.platform import audit, idempotency
from services.platform.db import Database, Serial, UnitOfWork, advisory_lock, as_utc
from services.transit import card_view_store
from services.transit.domain.park_pass import ParkPass
from services.transit.domain.wallet import (
    Entry,
    EntryKind,
    Refund,
    RefundReason,
    RefundState,
    Wallet,
    WalletStatus,
)

metadata = MetaData()
idempotency_keys = idempotency.define_table(metadata)
audit.define_tables(metadata)  # README, "Audit trail"

wallets = Table(
    "wallets",
    metadata,
    Column("card_id", String(64), primary_key=True),
    Column("balance_fen", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),  # WalletStatus name
    Column("closed_reason", String(16)),  # RefundReason name; NULL while open
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("balance_fen >= 0", name="ck_wallets_balance_not_negative"),
)

wallet_entries = Table(
    "wallet_entries",
    metadata,
    Column("entry_id", Serial, primary_key=True, autoincrement=True),
    Column("card_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # EntryKind name
    Column("amount_fen", BigInteger, nullable=False),  # signed
    Column("balance_after_fen", BigInteger, nullable=False),
    Column("reference", String(128), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("outlet_id", String(64), nullable=False),
    Column("booked_at", DateTime(timezone=True), nullable=False),
    Index("ix_wallet_entries_card", "card_id", "entry_id"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(40), primary_key=True),
    Column("card_id", String(64), nullable=False),
    Column("to_card_id", String(64), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("reason", String(16), nullable=False),  # RefundReason name
    Column("state", String(20), nullable=False),  # RefundState name
    Column("balance_after_fen", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("leased_until", DateTime(timezone=True)),
    Column("arrived_at", DateTime(timezone=True)),
    Column("bank_entry_id", String(64)),
    Column("last_error", String(200)),
    Index("ix_refunds_due", "state", "next_attempt_at"),
    Index("ix_refunds_card", "card_id"),
    Index("ix_refunds_state_created", "state", "created_at", "refund_id"),
)

park_passes = Table(
    "park_passes",
    metadata,
    Column("pass_id", String(40), primary_key=True),
    Column("card_id", String(64), nullable=False),
    Column("year", Integer, nullable=False),
    Column("purchased_at", DateTime(timezone=True), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("outlet_id", String(64), nullable=False),
    Column("original_card_id", String(64), nullable=False),
    Column("transferred_at", DateTime(timezone=True)),
    UniqueConstraint("card_id", "year", name="uq_park_passes_card_year"),
)


card_status = card_view_store.define_table(metadata)  # transit's view of the cards


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


class WalletRepository:
    """Wallet rows and their ledger entries. Statements are built once per process."""

    _get = select(wallets).where(wallets.c.card_id == bindparam("card_id"))
    _lock = _get.with_for_update()
    _save = (
        update(wallets)
        .where(wallets.c.card_id == bindparam("key"))
        .values(
            balance_fen=bindparam("balance_fen"),
            status=bindparam("status"),
            closed_reason=bindparam("closed_reason"),
            updated_at=bindparam("updated_at"),
        )
    )
    _credit = (
        update(wallets)
        .where(wallets.c.card_id == bindparam("key"))
        .values(
            balance_fen=wallets.c.balance_fen + bindparam("amount_fen"),
            updated_at=bindparam("updated_at"),
        )
        .returning(*wallets.c)
    )
    _add_entry = wallet_entries.insert().returning(wallet_entries.c.entry_id)
    _sum = select(func.coalesce(func.sum(wallet_entries.c.amount_fen), 0)).where(
        wallet_entries.c.card_id == bindparam("card_id")
    )

    def __init__(self, session: Session, postgres: bool) -> None:
        self.session = session
        self._postgres = postgres
        dialect_insert = postgresql.insert if postgres else sqlite.insert
        self._create = dialect_insert(wallets).on_conflict_do_nothing(index_elements=["card_id"])

    @staticmethod
    def _to_wallet(row: Row[Any]) -> Wallet:
        return Wallet(
            row.card_id,
            int(row.balance_fen),
            WalletStatus(row.status),
            RefundReason(row.closed_reason) if row.closed_reason else None,
            as_utc(row.updated_at),
        )

    def get(self, card_id: str) -> Wallet | None:
        row = self.session.execute(self._get, {"card_id": card_id}).one_or_none()
        return None if row is None else self._to_wallet(row)

    def lock(self, card_id: str, now: dt.datetime) -> Wallet:
        """The card's wallet, locked until commit; created open and empty on first use."""
        row = self.session.execute(self._lock, {"card_id": card_id}).one_or_none()
        if row is None:
            self.session.execute(
                self._create,
                dict(
                    card_id=card_id,
                    balance_fen=0,
                    status=WalletStatus.OPEN.value,
                    closed_reason=None,
                    created_at=now,
                    updated_at=now,
                ),
            )
            row = self.session.execute(self._lock, {"card_id": card_id}).one()
        return self._to_wallet(row)

    def credit_locked(self, card_id: str, amount_fen: int, now: dt.datetime) -> Wallet | None:
        """Add ``amount_fen`` to the card's existing wallet, locking its row until commit, and
        return the wallet as it now is (None if the card has no wallet yet). One statement
        where lock-then-update takes two: the caller checks the rules on the result and rolls
        the transaction back if they refuse."""
        row = self.session.execute(
            self._credit, {"key": card_id, "amount_fen": amount_fen, "updated_at": now}
        ).one_or_none()
        return None if row is None else self._to_wallet(row)

    # PostgreSQL: credit the wallet row (locking it) and book the entry in one round trip.
    _credit_and_book = text(
        "WITH w AS ("
        " UPDATE wallets SET balance_fen = balance_fen + :amount_fen, updated_at = :booked_at"
        " WHERE card_id = :card_id"
        " RETURNING card_id, balance_fen, status, closed_reason, updated_at"
        "), e AS ("
        " INSERT INTO wallet_entries (card_id, kind, amount_fen, balance_after_fen, reference,"
        " channel, outlet_id, booked_at)"
        " SELECT card_id, :kind, :amount_fen, balance_fen, :reference, :channel, :outlet_id,"
        " :booked_at FROM w RETURNING entry_id"
        ") SELECT w.card_id, w.balance_fen, w.status, w.closed_reason, w.updated_at, e.entry_id"
        " FROM w, e"
    )

    def credit_and_book(self, entry: Entry) -> tuple[Wallet, Entry] | None:
        """Add ``entry.amount_fen`` to the card's existing wallet, locking its row until commit,
        and book ``entry`` with the balance that results; the wallet as it now is and the
        booked entry, or None if the card has no wallet yet. The caller checks the rules on the
        result and rolls the transaction back if they refuse."""
        if self._postgres:
            row = self.session.execute(
                self._credit_and_book,
                dict(
                    card_id=entry.card_id,
                    kind=entry.kind.value,
                    amount_fen=entry.amount_fen,
                    reference=entry.reference,
                    channel=entry.channel,
                    outlet_id=entry.outlet_id,
                    booked_at=entry.booked_at,
                ),
            ).one_or_none()
            if row is None:
                return None
            wallet = self._to_wallet(row)
            return wallet, replace(
                entry, balance_after_fen=wallet.balance_fen, entry_id=int(row.entry_id)
            )
        credited = self.credit_locked(entry.card_id, entry.amount_fen, entry.booked_at)
        if credited is None:
            return None
        return credited, self.add_entry(replace(entry, balance_after_fen=credited.balance_fen))

    def save(self, wallet: Wallet) -> None:
        self.session.execute(
            self._save,
            {
                "key": wallet.card_id,
                "balance_fen": wallet.balance_fen,
                "status": wallet.status.value,
                "closed_reason": wallet.closed_reason.value if wallet.closed_reason else None,
                "updated_at": wallet.updated_at,
            },
        )

    def add_entry(self, entry: Entry) -> Entry:
        entry_id = self.session.execute(
            self._add_entry,
            dict(
                card_id=entry.card_id,
                kind=entry.kind.value,
                amount_fen=entry.amount_fen,
                balance_after_fen=entry.balance_after_fen,
                reference=entry.reference,
                channel=entry.channel,
                outlet_id=entry.outlet_id,
                booked_at=entry.booked_at,
            ),
        ).scalar_one()
        return Entry(
            entry.card_id,
            entry.kind,
            entry.amount_fen,
            entry.balance_after_fen,
            entry.reference,
            entry.channel,
            entry.outlet_id,
            entry.booked_at,
            int(entry_id),
        )

    def entries(self, card_id: str, before_id: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries of the card, newest first, older than ``before_id`` (0: all)."""
        t = wallet_entries
        query = select(t).where(t.c.card_id == card_id)
        if before_id:
            query = query.where(t.c.entry_id < before_id)
        rows = self.session.execute(query.order_by(t.c.entry_id.desc()).limit(limit))
        return [
            Entry(
                row.card_id,
                EntryKind(row.kind),
                int(row.amount_fen),
                int(row.balance_after_fen),
                row.reference,
                row.channel,
                row.outlet_id,
                as_utc(row.booked_at),
                int(row.entry_id),
            )
            for row in rows
        ]

    def entry_sum(self, card_id: str) -> int:
        """The sum of the card's entries: what its balance must equal."""
        return int(self.session.execute(self._sum, {"card_id": card_id}).scalar_one())


class RefundRepository:
    """The outbox of refunds to bank accounts."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @staticmethod
    def _to_refund(row: Row[Any]) -> Refund:
        return Refund(
            refund_id=row.refund_id,
            card_id=row.card_id,
            to_card_id=row.to_card_id,
            amount_fen=int(row.amount_fen),
            reason=RefundReason(row.reason),
            state=RefundState(row.state),
            balance_after_fen=int(row.balance_after_fen),
            created_at=as_utc(row.created_at),
            arrived_at=_utc(row.arrived_at),
            bank_entry_id=row.bank_entry_id or "",
            last_error=row.last_error or "",
            attempts=int(row.attempts),
        )

    def add(self, refund: Refund) -> None:
        self.session.execute(
            refunds.insert(),
            dict(
                refund_id=refund.refund_id,
                card_id=refund.card_id,
                to_card_id=refund.to_card_id,
                amount_fen=refund.amount_fen,
                reason=refund.reason.value,
                state=refund.state.value,
                balance_after_fen=refund.balance_after_fen,
                created_at=refund.created_at,
                attempts=0,
                next_attempt_at=refund.created_at,
            ),
        )

    def get(self, refund_id: str, for_update: bool = False) -> Refund | None:
        query = select(refunds).where(refunds.c.refund_id == refund_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).one_or_none()
        return None if row is None else self._to_refund(row)

    def page(
        self, state: RefundState | None, after: tuple[dt.datetime, str] | None, limit: int
    ) -> list[Refund]:
        """Up to ``limit`` refunds in ``state`` (any if None), oldest first, after the
        ``(created_at, refund_id)`` of a previous page's last one."""
        t = refunds
        query = select(t).order_by(t.c.created_at, t.c.refund_id).limit(limit)
        if state is not None:
            query = query.where(t.c.state == state.value)
        if after is not None:
            created, refund_id = after
            query = query.where(
                or_(
                    t.c.created_at > created,
                    and_(t.c.created_at == created, t.c.refund_id > refund_id),
                )
            )
        return [self._to_refund(row) for row in self.session.execute(query)]

    def in_flight_from(self, card_id: str) -> int:
        """How many of the card's refunds are still on their way to the bank."""
        t = refunds
        return int(
            self.session.execute(
                select(func.count())
                .select_from(t)
                .where(t.c.card_id == card_id, t.c.state == RefundState.SENDING.value)
            ).scalar_one()
        )

    def claim(self, now: dt.datetime, lease: dt.timedelta, limit: int) -> list[Refund]:
        """Lease up to ``limit`` refunds still SENDING that are due and leased by no one."""
        t = refunds
        rows = self.session.execute(
            select(t)
            .where(
                t.c.state == RefundState.SENDING.value,
                t.c.next_attempt_at <= now,
                or_(t.c.leased_until.is_(None), t.c.leased_until <= now),
            )
            .order_by(t.c.next_attempt_at, t.c.refund_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return []
        ids = [row.refund_id for row in rows]
        self.session.execute(
            update(t).where(t.c.refund_id.in_(ids)).values(leased_until=now + lease)
        )
        return [self._to_refund(row) for row in rows]

    def release(self, refund_ids: Sequence[str], until: dt.datetime) -> None:
        """Hand back the leases taken until ``until`` of those refunds still SENDING."""
        t = refunds
        self.session.execute(
            update(t)
            .where(
                t.c.refund_id.in_(refund_ids),
                t.c.state == RefundState.SENDING.value,
                t.c.leased_until == until,
            )
            .values(leased_until=None)
        )

    def arrived(self, refund_id: str, bank_entry_id: str, now: dt.datetime) -> None:
        t = refunds
        self.session.execute(
            update(t)
            .where(t.c.refund_id == refund_id, t.c.state == RefundState.SENDING.value)
            .values(
                state=RefundState.ARRIVED.value,
                arrived_at=now,
                bank_entry_id=bank_entry_id,
                leased_until=None,
                last_error=None,
            )
        )

    def failed(self, refund_id: str, attempts: int, retry_at: dt.datetime, error: str) -> None:
        t = refunds
        self.session.execute(
            update(t)
            .where(t.c.refund_id == refund_id, t.c.state == RefundState.SENDING.value)
            .values(
                attempts=attempts,
                next_attempt_at=retry_at,
                leased_until=None,
                last_error=error[:200],
            )
        )

    def returned(self, refund_id: str, error: str) -> None:
        t = refunds
        self.session.execute(
            update(t)
            .where(t.c.refund_id == refund_id, t.c.state == RefundState.SENDING.value)
            .values(
                state=RefundState.RETURNED_TO_WALLET.value,
                leased_until=None,
                last_error=error[:200],
            )
        )


class ParkPassRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    @staticmethod
    def _to_pass(row: Row[Any]) -> ParkPass:
        return ParkPass(
            pass_id=row.pass_id,
            card_id=row.card_id,
            year=int(row.year),
            purchased_at=as_utc(row.purchased_at),
            channel=row.channel,
            outlet_id=row.outlet_id,
            original_card_id=row.original_card_id,
            transferred_at=_utc(row.transferred_at),
        )

    def find(self, card_id: str, year: int) -> ParkPass | None:
        t = park_passes
        row = self.session.execute(
            select(t).where(and_(t.c.card_id == card_id, t.c.year == year))
        ).one_or_none()
        return None if row is None else self._to_pass(row)

    def held_from(self, card_id: str, year: int, for_update: bool = False) -> list[ParkPass]:
        """The card's passes for ``year`` and later."""
        t = park_passes
        query = select(t).where(t.c.card_id == card_id, t.c.year >= year).order_by(t.c.year)
        if for_update:
            query = query.with_for_update()
        return [self._to_pass(row) for row in self.session.execute(query)]

    def add(self, held: ParkPass) -> None:
        self.session.execute(
            park_passes.insert(),
            dict(
                pass_id=held.pass_id,
                card_id=held.card_id,
                year=held.year,
                purchased_at=held.purchased_at,
                channel=held.channel,
                outlet_id=held.outlet_id,
                original_card_id=held.original_card_id,
                transferred_at=held.transferred_at,
            ),
        )

    def save_holder(self, held: ParkPass) -> None:
        self.session.execute(
            update(park_passes)
            .where(park_passes.c.pass_id == held.pass_id)
            .values(
                card_id=held.card_id,
                original_card_id=held.original_card_id,
                transferred_at=held.transferred_at,
            )
        )


class TransitUnitOfWork(UnitOfWork):
    wallets: WalletRepository
    refunds: RefundRepository
    passes: ParkPassRepository
    cards: card_view_store.CardStatusRepository

    def __init__(self, db: Database, readonly: bool = False) -> None:
        super().__init__(db, readonly)

    def _open(self, session: Session) -> None:
        self.wallets = WalletRepository(session, not self.db.is_sqlite)
        self.refunds = RefundRepository(session)
        self.passes = ParkPassRepository(session)
        self.cards = card_view_store.CardStatusRepository(
            session, not self.db.is_sqlite, card_status
        )

    def lock(self, *parts: str) -> None:
        """Take turns with other transactions on the same key until commit (PostgreSQL; on
        SQLite a writing unit of work already holds the database's write lock)."""
        if not self.db.is_sqlite:
            advisory_lock(self.session, "transit", *parts)


def pending_refunds(session: Session) -> tuple[int, dt.datetime | None]:
    """Refunds still on their way to a bank account, and when the oldest was started (an index
    range on state)."""
    count, oldest = session.execute(
        select(func.count(), func.min(refunds.c.created_at)).where(
            refunds.c.state == RefundState.SENDING.value
        )
    ).one()
    return int(count), as_utc(oldest) if oldest is not None else None
