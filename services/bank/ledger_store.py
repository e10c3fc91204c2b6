"""The ledger's tables and repositories (A4.5, A19.1, A19.2): defined on the bank's metadata by
``store.py`` (``define_tables``), so the bank's one schema holds them.

``ledger_accounts`` holds one balance row per account that has moved money or been given a
class or a suspension; ``ledger_entries`` the immutable entries; ``alerts`` the monitoring
alerts, unique on their dedupe key so a pattern is raised once. A balance row is written in the
same transaction as its entry, while the account row is locked (``FOR UPDATE``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Row,
    String,
    Table,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from services.bank.domain.ledger import (
    AccountLedger,
    Alert,
    AlertStatus,
    Entry,
    EntrySource,
    NonCounterReason,
    PaymentChannel,
)
from services.bank.domain.tiers import Tier
from services.platform.db import Serial, as_utc

_TRANSIT_REFUND = text("source = 'TRANSIT_REFUND' AND reference <> ''")


@dataclass(frozen=True)
class LedgerTables:
    accounts: Table
    entries: Table
    alerts: Table


def define_tables(metadata: MetaData) -> LedgerTables:
    """The ledger's tables, added to the bank's metadata."""
    ledger_accounts = Table(
        "ledger_accounts",
        metadata,
        Column("account_id", String(32), ForeignKey("accounts.account_id"), primary_key=True),
        Column("card_id", String(64), nullable=False),
        Column("balance_fen", BigInteger, nullable=False),
        Column("tier", String(4), nullable=False),  # Tier value: I, II, III (A4.5)
        Column("non_counter_reasons", String(100), nullable=False),  # comma-separated, A19.2
        Column("non_counter_since", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    entries = Table(
        "ledger_entries",
        metadata,
        Column("entry_no", Serial, primary_key=True, autoincrement=True),
        Column("entry_id", String(32), nullable=False, unique=True),
        Column("account_id", String(32), ForeignKey("accounts.account_id"), nullable=False),
        Column("card_id", String(64), nullable=False),
        Column("amount_fen", BigInteger, nullable=False),
        Column("balance_after_fen", BigInteger, nullable=False),
        Column("source", String(16), nullable=False),
        Column("channel", String(16)),
        Column("non_counter", Boolean, nullable=False),
        Column("reference", String(128), nullable=False),
        Column("counterparty", String(128), nullable=False),
        Column("transfer_id", String(32), nullable=False),
        Column("booked_at", DateTime(timezone=True), nullable=False),
        Column("booked_by", String(200), nullable=False),
        Index("ix_ledger_entries_account", "account_id", "entry_no"),
        Index("ix_ledger_entries_account_booked", "account_id", "booked_at"),
        # A transit refund is booked once, however late its retry (the refund id is its
        # reference): the relay's request-id key lives for its TTL only.
        Index(
            "ux_ledger_entries_transit_refund",
            "reference",
            unique=True,
            postgresql_where=_TRANSIT_REFUND,
            sqlite_where=_TRANSIT_REFUND,
        ),
    )
    alerts = Table(
        "alerts",
        metadata,
        Column("alert_no", Serial, primary_key=True, autoincrement=True),
        Column("alert_id", String(32), nullable=False, unique=True),
        Column("account_id", String(32), ForeignKey("accounts.account_id"), nullable=False),
        Column("card_id", String(64), nullable=False),
        Column("rule", String(64), nullable=False),
        Column("summary", String(500), nullable=False),
        Column("entry_ids", Text, nullable=False),
        Column("freeze", Boolean, nullable=False),
        Column("dedupe_key", String(200), nullable=False, unique=True),
        Column("status", String(16), nullable=False),
        Column("assignee", String(200), nullable=False),
        Column("resolution", String(1000), nullable=False),
        Column("raised_at", DateTime(timezone=True), nullable=False),
        Column("assigned_at", DateTime(timezone=True)),
        Column("resolved_at", DateTime(timezone=True)),
        Column("resolved_by", String(200), nullable=False),
        Index("ix_alerts_status", "status", "alert_no"),
        Index("ix_alerts_account", "account_id", "alert_no"),
    )
    return LedgerTables(ledger_accounts, entries, alerts)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


def _reasons(raw: str) -> frozenset[NonCounterReason]:
    return frozenset(NonCounterReason(r) for r in raw.split(",") if r)


class LedgerRepository:
    """Balance rows and entries. Callers lock the account row first (``accounts`` FOR UPDATE)."""

    def __init__(self, session: Session, tables: LedgerTables) -> None:
        self.session = session
        self.t = tables

    # -- balance rows

    def find(self, account_id: str, for_update: bool = False) -> AccountLedger | None:
        t = self.t.accounts
        query = select(t).where(t.c.account_id == account_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).one_or_none()
        if row is None:
            return None
        return AccountLedger(
            row.account_id,
            row.card_id,
            int(row.balance_fen),
            Tier(row.tier),
            _reasons(row.non_counter_reasons),
            _utc(row.non_counter_since),
        )

    def save(self, ledger: AccountLedger, now: dt.datetime, existed: bool) -> None:
        t = self.t.accounts
        values = {
            "card_id": ledger.card_id,
            "balance_fen": ledger.balance_fen,
            "tier": ledger.tier.value,
            "non_counter_reasons": ",".join(sorted(r.value for r in ledger.non_counter)),
            "non_counter_since": ledger.non_counter_since,
            "updated_at": now,
        }
        if existed:
            self.session.execute(
                update(t).where(t.c.account_id == ledger.account_id).values(**values)
            )
        else:
            self.session.execute(t.insert().values(account_id=ledger.account_id, **values))

    # -- entries

    def add_entry(self, entry: Entry) -> None:
        self.session.execute(
            self.t.entries.insert(),
            dict(
                entry_id=entry.entry_id,
                account_id=entry.account_id,
                card_id=entry.card_id,
                amount_fen=entry.amount_fen,
                balance_after_fen=entry.balance_after_fen,
                source=entry.source.value,
                channel=entry.channel.value if entry.channel else None,
                non_counter=entry.non_counter,
                reference=entry.reference,
                counterparty=entry.counterparty,
                transfer_id=entry.transfer_id,
                booked_at=entry.booked_at,
                booked_by=entry.booked_by,
            ),
        )

    def transit_refund(self, refund_id: str) -> Entry | None:
        """The entry that booked transit refund ``refund_id``, if it was booked."""
        t = self.t.entries
        row = self.session.execute(
            # the index's own predicate, as literal SQL: a prepared generic plan keeps the index
            select(t).where(_TRANSIT_REFUND, t.c.reference == refund_id)
        ).one_or_none()
        return None if row is None else self._to_entry(row)

    @staticmethod
    def _to_entry(row: Row[Any]) -> Entry:
        return Entry(
            entry_id=row.entry_id,
            account_id=row.account_id,
            card_id=row.card_id,
            amount_fen=int(row.amount_fen),
            balance_after_fen=int(row.balance_after_fen),
            source=EntrySource(row.source),
            booked_at=as_utc(row.booked_at),
            reference=row.reference,
            counterparty=row.counterparty,
            channel=PaymentChannel(row.channel) if row.channel else None,
            transfer_id=row.transfer_id,
            booked_by=row.booked_by,
        )

    def page(self, account_id: str, before_no: int | None, size: int) -> tuple[list[Entry], int]:
        """Up to ``size`` entries older than entry number ``before_no``, newest first, and the
        number of the last one returned (0 when there is no more)."""
        t = self.t.entries
        query = select(t).where(t.c.account_id == account_id)
        if before_no is not None:
            query = query.where(t.c.entry_no < before_no)
        rows = self.session.execute(query.order_by(t.c.entry_no.desc()).limit(size + 1)).all()
        more = len(rows) > size
        rows = rows[:size]
        return [self._to_entry(r) for r in rows], (int(rows[-1].entry_no) if more else 0)

    def since(self, account_id: str, start: dt.datetime) -> list[Entry]:
        """The account's entries booked at or after ``start``, oldest first."""
        t = self.t.entries
        rows = self.session.execute(
            select(t)
            .where(t.c.account_id == account_id, t.c.booked_at >= start)
            .order_by(t.c.entry_no)
        ).all()
        return [self._to_entry(r) for r in rows]

    def non_counter_paid(self, account_id: str, start: dt.datetime, end: dt.datetime) -> int:
        """Fen paid out through non-counter channels in [start, end) (positive)."""
        t = self.t.entries
        total = self.session.execute(
            select(func.coalesce(func.sum(t.c.amount_fen), 0)).where(
                t.c.account_id == account_id,
                t.c.non_counter.is_(True),
                t.c.amount_fen < 0,
                t.c.booked_at >= start,
                t.c.booked_at < end,
            )
        ).scalar_one()
        return -int(total)

    def entry_sum(self, account_id: str) -> int:
        t = self.t.entries
        total = self.session.execute(
            select(func.coalesce(func.sum(t.c.amount_fen), 0)).where(t.c.account_id == account_id)
        ).scalar_one()
        return int(total)

    def count_entries(self, account_id: str) -> int:
        t = self.t.entries
        return int(
            self.session.execute(
                select(func.count()).select_from(t).where(t.c.account_id == account_id)
            ).scalar_one()
        )


class AlertRepository:
    """Monitoring alerts (A4.5)."""

    def __init__(self, session: Session, tables: LedgerTables) -> None:
        self.session = session
        self.t = tables.alerts

    @staticmethod
    def _to_alert(row: Row[Any]) -> Alert:
        return Alert(
            alert_id=row.alert_id,
            account_id=row.account_id,
            card_id=row.card_id,
            rule=row.rule,
            summary=row.summary,
            entry_ids=tuple(e for e in row.entry_ids.split(",") if e),
            freeze=bool(row.freeze),
            dedupe_key=row.dedupe_key,
            status=AlertStatus(row.status),
            raised_at=as_utc(row.raised_at),
            assignee=row.assignee,
            resolution=row.resolution,
            assigned_at=_utc(row.assigned_at),
            resolved_at=_utc(row.resolved_at),
            resolved_by=row.resolved_by,
        )

    def known(self, dedupe_key: str) -> bool:
        t = self.t
        found = self.session.execute(select(t.c.alert_no).where(t.c.dedupe_key == dedupe_key))
        return found.first() is not None

    def add(self, alert: Alert) -> None:
        self.session.execute(self.t.insert(), dict(alert_id=alert.alert_id, **self._state(alert)))

    @staticmethod
    def _state(alert: Alert) -> dict[str, Any]:
        return {
            "account_id": alert.account_id,
            "card_id": alert.card_id,
            "rule": alert.rule,
            "summary": alert.summary[:500],
            "entry_ids": ",".join(alert.entry_ids),
            "freeze": alert.freeze,
            "dedupe_key": alert.dedupe_key[:200],
            "status": alert.status.value,
            "assignee": alert.assignee,
            "resolution": alert.resolution,
            "raised_at": alert.raised_at,
            "assigned_at": alert.assigned_at,
            "resolved_at": alert.resolved_at,
            "resolved_by": alert.resolved_by,
        }

    def save(self, alert: Alert) -> None:
        self.session.execute(
            update(self.t).where(self.t.c.alert_id == alert.alert_id).values(**self._state(alert))
        )

    def get(self, alert_id: str, for_update: bool = False) -> Alert | None:
        query = select(self.t).where(self.t.c.alert_id == alert_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).one_or_none()
        return None if row is None else self._to_alert(row)

    def open_freezing(self, account_id: str) -> int:
        """Freezing alerts of the account not resolved yet."""
        t = self.t
        return int(
            self.session.execute(
                select(func.count())
                .select_from(t)
                .where(
                    t.c.account_id == account_id,
                    t.c.freeze.is_(True),
                    t.c.status != AlertStatus.RESOLVED.value,
                )
            ).scalar_one()
        )

    def page(
        self,
        status: AlertStatus | None,
        account_id: str,
        rule: str,
        before_no: int | None,
        size: int,
    ) -> tuple[list[Alert], int]:
        t = self.t
        query = select(t)
        if status is not None:
            query = query.where(t.c.status == status.value)
        if account_id:
            query = query.where(t.c.account_id == account_id)
        if rule:
            query = query.where(t.c.rule == rule)
        if before_no is not None:
            query = query.where(t.c.alert_no < before_no)
        rows = self.session.execute(query.order_by(t.c.alert_no.desc()).limit(size + 1)).all()
        more = len(rows) > size
        rows = rows[:size]
        return [self._to_alert(r) for r in rows], (int(rows[-1].alert_no) if more else 0)


def unresolved_alerts(session: Session, tables: LedgerTables) -> dict[AlertStatus, int]:
    """Suspicious-transaction alerts not yet resolved, by status (an index range on status)."""
    t = tables.alerts
    open_states = [AlertStatus.OPEN.value, AlertStatus.ASSIGNED.value]
    rows = session.execute(
        select(t.c.status, func.count()).where(t.c.status.in_(open_states)).group_by(t.c.status)
    ).all()
    found = {AlertStatus(status): int(count) for status, count in rows}
    return {status: found.get(status, 0) for status in (AlertStatus.OPEN, AlertStatus.ASSIGNED)}
