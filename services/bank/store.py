"""The bank service's tables and repositories: the only file here that speaks SQL.

Document numbers are stored as a blind index and a ciphertext (see ``platform.pii``), never in
the clear. Card numbers come from one counter row per bank. ``card_notices`` is the outbox of
"card made" notices to the card service (A7.1): written in the same transaction as the order,
claimed by the relay with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL). ``card_recalls``
holds one row per card taken back, and its destruction (A16.6, A21, A7.4).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
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
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from services.bank import counter_store, ledger_store
from services.bank.domain.account import Account, AccountStatus, IdentityFacts, LossKind
from services.bank.domain.branch import Branch
from services.bank.domain.card_number import card_number, next_bank_number
from services.bank.domain.production import (
    CardNotice,
    Delivery,
    OrderStatus,
    ProductionKind,
    ProductionOrder,
)
from services.bank.domain.recall import CardRecall, RecallReason
from services.platform import audit, idempotency
from services.platform.db import Database, Serial, UnitOfWork, advisory_lock, as_utc
from services.platform.masking import mask_document_number
from services.platform.pii import PiiCipher

metadata = MetaData()
idempotency_keys = idempotency.define_table(metadata)
audit.define_tables(metadata)  # README, "Audit trail"
counter_tables = counter_store.define_tables(metadata)  # A9, A12.3, A20.1, A25.1
ledger_tables = ledger_store.define_tables(metadata)  # A4.5, A19.1, A19.2

branches = Table(
    "branches",
    metadata,
    Column("branch_id", String(64), primary_key=True),
    Column("bank_code", String(16), nullable=False),
    Column("name", String(100), nullable=False),
    Column("instant", Boolean, nullable=False),
    Column("address", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_branches_bank", "bank_code", "branch_id"),
)

card_number_counters = Table(
    "card_number_counters",
    metadata,
    Column("bank_code", String(16), primary_key=True),
    Column("bank_number", SmallInteger, nullable=False, unique=True),
    Column("last_serial", BigInteger, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(32), primary_key=True),
    Column("card_id", String(64), nullable=False, unique=True),
    Column("bank_code", String(16), nullable=False),
    Column("holder_name", String(200), nullable=False),
    Column("doc_type", String(40), nullable=False),
    Column("doc_index", String(64), nullable=False),
    Column("doc_cipher", LargeBinary, nullable=False),
    Column("doc_masked", String(40), nullable=False),
    Column("document_valid_until", Date),
    Column("status", String(16), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("loss_kind", String(16)),  # LossKind name; NULL: not suspended (A13.2, A13.4)
    Column("suspended_at", DateTime(timezone=True)),
    Column("financial_activated_at", DateTime(timezone=True)),  # NULL: not activated (A9)
    Index("ix_accounts_doc_index", "doc_index"),
)

production_orders = Table(
    "production_orders",
    metadata,
    Column("order_id", String(32), primary_key=True),
    Column("card_id", String(64), nullable=False, unique=True),
    Column("bank_code", String(16), nullable=False),
    Column("account_id", String(32), ForeignKey("accounts.account_id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("applied_at_branch_id", String(64), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("instant", Boolean, nullable=False),
    Column("delivery", String(16), nullable=False),
    Column("pickup_branch_id", String(64), nullable=False),
    Column("card_number", String(19), unique=True),
    Column("produced_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_production_orders_status_due", "status", "due_date"),
)

# The claim's condition and its partial index's predicate: one clause, so PostgreSQL proves the
# predicate in any plan it caches.
_UNDELIVERED = text("delivered_at IS NULL")

card_notices = Table(
    "card_notices",
    metadata,
    Column("notice_id", Serial, primary_key=True, autoincrement=True),
    Column(
        "order_id",
        String(32),
        ForeignKey("production_orders.order_id"),
        nullable=False,
        unique=True,
    ),
    Column("card_id", String(64), nullable=False),
    Column("card_number", String(19), nullable=False),
    Column("produced_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("leased_until", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", String(200)),
    # The claim: undelivered notices in the order they fall due.
    Index(
        "ix_card_notices_claim",
        "next_attempt_at",
        "notice_id",
        postgresql_where=_UNDELIVERED,
        sqlite_where=_UNDELIVERED,
    ),
)

card_recalls = Table(
    "card_recalls",
    metadata,
    Column("card_id", String(64), ForeignKey("production_orders.card_id"), primary_key=True),
    Column("reason", String(24), nullable=False),  # RecallReason name
    Column("recalled_at", DateTime(timezone=True), nullable=False),
    Column("recalled_by", String(200), nullable=False),
    Column("destroyed_at", DateTime(timezone=True)),  # NULL: not destroyed yet
    Column("destroyed_by", String(200)),
)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


def _lookups(table: Table, *keys: str) -> dict[tuple[str, bool], Any]:
    """One row of ``table`` by each of ``keys``, plain and for update: statements built once
    per process, since building one per call costs more than running it."""
    found: dict[tuple[str, bool], Any] = {}
    for key in keys:
        query = select(table).where(table.c[key] == bindparam("key"))
        found[key, False], found[key, True] = query, query.with_for_update()
    return found


_BRANCH = select(branches).where(branches.c.branch_id == bindparam("branch_id"))
_BANK_KNOWN = (
    select(branches.c.branch_id).where(branches.c.bank_code == bindparam("bank_code")).limit(1)
)
_ACCOUNT = _lookups(accounts, "account_id", "card_id")
_ORDER = _lookups(production_orders, "order_id", "card_id")


class BranchRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    @staticmethod
    def _to_branch(row: Row[Any]) -> Branch:
        return Branch(row.bank_code, row.branch_id, row.name, row.instant, row.address)

    def get(self, branch_id: str) -> Branch | None:
        if not branch_id:
            return None
        row = self.session.execute(_BRANCH, {"branch_id": branch_id}).one_or_none()
        return None if row is None else self._to_branch(row)

    def list_branches(self, bank_code: str = "") -> list[Branch]:
        query = select(branches).order_by(branches.c.bank_code, branches.c.branch_id)
        if bank_code:
            query = query.where(branches.c.bank_code == bank_code)
        return [self._to_branch(row) for row in self.session.execute(query)]

    def bank_known(self, bank_code: str) -> bool:
        return self.session.execute(_BANK_KNOWN, {"bank_code": bank_code}).first() is not None

    def save(self, branch: Branch, now: dt.datetime) -> None:
        values = {
            "bank_code": branch.bank_code,
            "name": branch.name,
            "instant": branch.instant,
            "address": branch.address,
            "updated_at": now,
        }
        updated = self.session.execute(
            update(branches).where(branches.c.branch_id == branch.branch_id).values(**values)
        )
        if not updated.rowcount:  # type: ignore[attr-defined]
            self.session.execute(branches.insert().values(branch_id=branch.branch_id, **values))


class CardNumberRepository:
    """One counter row per bank: its 3-digit bank number and the last serial handed out."""

    def __init__(self, session: Session, lock: Callable[[str], None]) -> None:
        self.session = session
        self._lock = lock

    def ensure_bank(self, bank_code: str) -> None:
        """Give a bank its number the first time one of its branches is registered."""
        t = card_number_counters
        if self.session.execute(select(t.c.bank_code).where(t.c.bank_code == bank_code)).first():
            return
        self._lock("bank_numbers")  # new banks take turns for the next number
        if self.session.execute(select(t.c.bank_code).where(t.c.bank_code == bank_code)).first():
            return
        highest = self.session.execute(select(func.max(t.c.bank_number))).scalar_one_or_none()
        self.session.execute(
            t.insert(),
            dict(bank_code=bank_code, bank_number=next_bank_number(highest), last_serial=0),
        )

    def next_number(self, bank_code: str) -> str:
        """A new, never used card number of the bank (the counter row is locked until commit)."""
        t = card_number_counters
        statement = (
            update(t)
            .where(t.c.bank_code == bank_code)
            .values(last_serial=t.c.last_serial + 1)
            .returning(t.c.bank_number, t.c.last_serial)
        )
        row = self.session.execute(statement).one_or_none()
        if row is None:
            self.ensure_bank(bank_code)
            row = self.session.execute(statement).one()
        return card_number(row.bank_number, row.last_serial)


class AccountRepository:
    def __init__(self, session: Session, cipher: PiiCipher) -> None:
        self.session = session
        self.cipher = cipher

    def _to_account(self, row: Row[Any]) -> Account:
        holder = IdentityFacts(
            row.holder_name,
            row.doc_type,
            self.cipher.decrypt(row.doc_cipher),
            row.document_valid_until,
        )
        return Account(
            row.account_id,
            row.card_id,
            row.bank_code,
            holder,
            AccountStatus(row.status),
            as_utc(row.opened_at),
            _utc(row.closed_at),
            LossKind(row.loss_kind) if row.loss_kind else None,
            _utc(row.suspended_at),
            _utc(row.financial_activated_at),
        )

    def _one(self, key: str, value: str, for_update: bool) -> Account | None:
        row = self.session.execute(_ACCOUNT[key, for_update], {"key": value}).one_or_none()
        return None if row is None else self._to_account(row)

    def get(self, account_id: str, for_update: bool = False) -> Account | None:
        return self._one("account_id", account_id, for_update)

    def find_by_card(self, card_id: str, for_update: bool = False) -> Account | None:
        return self._one("card_id", card_id, for_update)

    def add(self, account: Account) -> None:
        h = account.holder
        self.session.execute(
            accounts.insert(),
            dict(
                account_id=account.account_id,
                card_id=account.card_id,
                bank_code=account.bank_code,
                holder_name=h.name,
                doc_type=h.document_type,
                doc_index=self.cipher.blind_index(h.document_type, h.document_number),
                doc_cipher=self.cipher.encrypt(h.document_number),
                doc_masked=mask_document_number(h.document_number),
                document_valid_until=h.valid_until,
                status=account.status.value,
                opened_at=account.opened_at,
                closed_at=account.closed_at,
                **self._loss(account),
            ),
        )

    def save_status(self, account: Account) -> None:
        self.session.execute(
            update(accounts)
            .where(accounts.c.account_id == account.account_id)
            .values(status=account.status.value, closed_at=account.closed_at)
        )

    @staticmethod
    def _loss(account: Account) -> dict[str, Any]:
        return {
            "loss_kind": account.loss.value if account.loss else None,
            "suspended_at": account.suspended_at,
        }

    def save_loss(self, account: Account) -> None:
        """Store the account's loss suspension (A13.2, A13.4, A14.1)."""
        self.session.execute(
            update(accounts)
            .where(accounts.c.account_id == account.account_id)
            .values(**self._loss(account))
        )

    def save_financial_activation(self, account: Account) -> None:
        """Store when the financial function was activated (A9.1, A9.2)."""
        self.session.execute(
            update(accounts)
            .where(accounts.c.account_id == account.account_id)
            .values(financial_activated_at=account.financial_activated_at)
        )


class OrderRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    @staticmethod
    def _to_order(row: Row[Any]) -> ProductionOrder:
        return ProductionOrder(
            order_id=row.order_id,
            card_id=row.card_id,
            bank_code=row.bank_code,
            account_id=row.account_id,
            kind=ProductionKind(row.kind),
            status=OrderStatus(row.status),
            applied_at=as_utc(row.applied_at),
            applied_at_branch_id=row.applied_at_branch_id,
            due_date=row.due_date,
            instant=row.instant,
            delivery=Delivery(row.delivery),
            pickup_branch_id=row.pickup_branch_id,
            created_at=as_utc(row.created_at),
            card_number=row.card_number or "",
            produced_at=_utc(row.produced_at),
            cancelled_at=_utc(row.cancelled_at),
        )

    def _one(self, key: str, value: str, for_update: bool) -> ProductionOrder | None:
        row = self.session.execute(_ORDER[key, for_update], {"key": value}).one_or_none()
        return None if row is None else self._to_order(row)

    def get(self, order_id: str, for_update: bool = False) -> ProductionOrder | None:
        return self._one("order_id", order_id, for_update)

    def find_by_card(self, card_id: str, for_update: bool = False) -> ProductionOrder | None:
        return self._one("card_id", card_id, for_update)

    @staticmethod
    def _state(order: ProductionOrder) -> dict[str, Any]:
        return {
            "status": order.status.value,
            "card_number": order.card_number or None,
            "produced_at": order.produced_at,
            "cancelled_at": order.cancelled_at,
        }

    def add(self, order: ProductionOrder) -> None:
        self.session.execute(
            production_orders.insert(),
            dict(
                order_id=order.order_id,
                card_id=order.card_id,
                bank_code=order.bank_code,
                account_id=order.account_id,
                kind=order.kind.value,
                applied_at=order.applied_at,
                applied_at_branch_id=order.applied_at_branch_id,
                due_date=order.due_date,
                instant=order.instant,
                delivery=order.delivery.value,
                pickup_branch_id=order.pickup_branch_id,
                created_at=order.created_at,
                **self._state(order),
            ),
        )

    def save_state(self, order: ProductionOrder) -> None:
        self.session.execute(
            update(production_orders)
            .where(production_orders.c.order_id == order.order_id)
            .values(**self._state(order))
        )


class NoticeRepository:
    """The outbox of A7.1 notices to the card service."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, order: ProductionOrder, now: dt.datetime) -> None:
        if order.produced_at is None:
            raise RuntimeError("order.produced_at must be known here")
        self.session.execute(
            card_notices.insert(),
            dict(
                order_id=order.order_id,
                card_id=order.card_id,
                card_number=order.card_number,
                produced_at=order.produced_at,
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            ),
        )

    def claim(self, now: dt.datetime, lease: dt.timedelta, limit: int) -> list[CardNotice]:
        """Lease up to ``limit`` notices that are due and leased by no one.

        On PostgreSQL ``SKIP LOCKED`` lets replicas claim side by side without waiting for or
        taking each other's rows; on SQLite the unit of work's write lock serialises claims.
        """
        t = card_notices
        rows = self.session.execute(
            select(t)
            .where(
                _UNDELIVERED,
                t.c.next_attempt_at <= now,
                or_(t.c.leased_until.is_(None), t.c.leased_until <= now),
            )
            .order_by(t.c.next_attempt_at, t.c.notice_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return []
        ids = [row.notice_id for row in rows]
        self.session.execute(
            update(t).where(t.c.notice_id.in_(ids)).values(leased_until=now + lease)
        )
        return [
            CardNotice(
                row.notice_id,
                row.order_id,
                row.card_id,
                row.card_number,
                as_utc(row.produced_at),
                row.attempts,
            )
            for row in rows
        ]

    def release(self, notice_ids: Sequence[int], until: dt.datetime) -> None:
        """Hand back the leases taken until ``until`` of those notices not yet delivered."""
        t = card_notices
        self.session.execute(
            update(t)
            .where(t.c.notice_id.in_(notice_ids), _UNDELIVERED, t.c.leased_until == until)
            .values(leased_until=None)
        )

    def delivered(self, notice_id: int, now: dt.datetime) -> None:
        t = card_notices
        self.session.execute(
            update(t)
            .where(t.c.notice_id == notice_id, t.c.delivered_at.is_(None))
            .values(delivered_at=now, leased_until=None, last_error=None)
        )

    def failed(self, notice_id: int, attempts: int, retry_at: dt.datetime, error: str) -> None:
        t = card_notices
        self.session.execute(
            update(t)
            .where(t.c.notice_id == notice_id, t.c.delivered_at.is_(None))
            .values(
                attempts=attempts,
                next_attempt_at=retry_at,
                leased_until=None,
                last_error=error[:200],
            )
        )


class RecallRepository:
    """Cards taken back and destroyed (A16.6, A21, A7.4)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def find(self, card_id: str, for_update: bool = False) -> CardRecall | None:
        query = select(card_recalls).where(card_recalls.c.card_id == card_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).one_or_none()
        if row is None:
            return None
        return CardRecall(
            card_id=row.card_id,
            reason=RecallReason(row.reason),
            recalled_at=as_utc(row.recalled_at),
            recalled_by=row.recalled_by,
            destroyed_at=_utc(row.destroyed_at),
            destroyed_by=row.destroyed_by or "",
        )

    def add(self, recall: CardRecall) -> None:
        self.session.execute(
            card_recalls.insert(),
            dict(
                card_id=recall.card_id,
                reason=recall.reason.value,
                recalled_at=recall.recalled_at,
                recalled_by=recall.recalled_by,
                **self._destruction(recall),
            ),
        )

    @staticmethod
    def _destruction(recall: CardRecall) -> dict[str, Any]:
        return {
            "destroyed_at": recall.destroyed_at,
            "destroyed_by": recall.destroyed_by or None,
        }

    def save_destruction(self, recall: CardRecall) -> None:
        self.session.execute(
            update(card_recalls)
            .where(card_recalls.c.card_id == recall.card_id)
            .values(**self._destruction(recall))
        )


class BankUnitOfWork(UnitOfWork):
    branches: BranchRepository
    card_numbers: CardNumberRepository
    accounts: AccountRepository
    orders: OrderRepository
    notices: NoticeRepository
    recalls: RecallRepository
    financial: counter_store.FinancialRepository
    home_services: counter_store.HomeServiceRepository
    ledger: ledger_store.LedgerRepository
    alerts: ledger_store.AlertRepository

    def __init__(self, db: Database, cipher: PiiCipher, readonly: bool = False) -> None:
        super().__init__(db, readonly)
        self._cipher = cipher

    def _open(self, session: Session) -> None:
        self.branches = BranchRepository(session)
        self.card_numbers = CardNumberRepository(session, self.lock)
        self.accounts = AccountRepository(session, self._cipher)
        self.orders = OrderRepository(session)
        self.notices = NoticeRepository(session)
        self.recalls = RecallRepository(session)
        self.financial = counter_store.FinancialRepository(session, self._cipher, counter_tables)
        self.home_services = counter_store.HomeServiceRepository(
            session, self._cipher, counter_tables
        )
        self.ledger = ledger_store.LedgerRepository(session, ledger_tables)
        self.alerts = ledger_store.AlertRepository(session, ledger_tables)

    def lock(self, *parts: str) -> None:
        """Take turns with other transactions on the same key until commit (PostgreSQL; on
        SQLite a writing unit of work already holds the database's write lock)."""
        if not self.db.is_sqlite:
            advisory_lock(self.session, "bank", *parts)
