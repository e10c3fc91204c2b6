"""Tables and repositories of the counter business (A9, A12.3, A20.1, A25.1).

``financial_activations``: one row per activation request (A9.1, A9.2), REQUESTED until the
card service answered. ``financial_profiles``: one row per account with the reserved phone
(ciphertext and masked copy, A20.1) and the financial password (Argon2id hash, wrong tries in
a row, lock; A12.3). ``home_services``: the home-service bookings (A25.1), address and phone
held as ciphertexts. The tables join the bank's metadata through ``define_tables``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
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
    select,
    update,
)
from sqlalchemy.orm import Session

from services.bank.domain.financial import ActivationRequest, ActivationState, PasswordState
from services.bank.domain.home_service import Booking, Business, Slot, Status
from services.platform.db import as_utc
from services.platform.masking import mask_phone
from services.platform.pii import PiiCipher


@dataclass(frozen=True)
class CounterTables:
    activations: Table
    profiles: Table
    home_services: Table


def define_tables(metadata: MetaData) -> CounterTables:
    activations = Table(
        "financial_activations",
        metadata,
        Column("activation_id", String(64), primary_key=True),
        Column("account_id", String(32), ForeignKey("accounts.account_id"), nullable=False),
        Column("card_id", String(64), nullable=False),
        Column("state", String(16), nullable=False),  # ActivationState name
        Column("requested_by", String(200), nullable=False),
        Column("requested_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True)),
        Column("refusal", String(100), nullable=False),
        Index("ix_financial_activations_account", "account_id"),
    )
    profiles = Table(
        "financial_profiles",
        metadata,
        Column("account_id", String(32), ForeignKey("accounts.account_id"), primary_key=True),
        Column("phone_cipher", LargeBinary),
        Column("phone_masked", String(20), nullable=False),
        Column("password_hash", String(200)),
        Column("failures", SmallInteger, nullable=False),
        Column("locked", Boolean, nullable=False),
        Column("password_changed_at", DateTime(timezone=True)),
    )
    home_services = Table(
        "home_services",
        metadata,
        Column("home_service_id", String(32), primary_key=True),
        Column("card_id", String(64), nullable=False),
        Column("bank_code", String(16), nullable=False),
        Column("branch_id", String(64), nullable=False),
        Column("address_cipher", LargeBinary, nullable=False),
        Column("visit_date", Date, nullable=False),
        Column("slot", String(16), nullable=False),  # Slot name
        Column("business", String(32), nullable=False),  # Business name
        Column("contact_name", String(100), nullable=False),
        Column("phone_cipher", LargeBinary, nullable=False),
        Column("note", String(500), nullable=False),
        Column("status", String(16), nullable=False),  # Status name
        Column("staff_id", String(64), nullable=False),
        Column("booked_by", String(200), nullable=False),
        Column("booked_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index("ix_home_services_branch", "branch_id", "status", "visit_date", "home_service_id"),
    )
    return CounterTables(activations, profiles, home_services)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


@dataclass(frozen=True)
class Profile:
    """An account's reserved phone (masked) and financial password."""

    phone_masked: str
    password: PasswordState


class FinancialRepository:
    def __init__(self, session: Session, cipher: PiiCipher, tables: CounterTables) -> None:
        self.session = session
        self.cipher = cipher
        self.t = tables

    # -- activation requests (A9.1, A9.2)

    def find_activation(self, activation_id: str) -> ActivationRequest | None:
        t = self.t.activations
        row = self.session.execute(
            select(t).where(t.c.activation_id == activation_id)
        ).one_or_none()
        if row is None:
            return None
        return ActivationRequest(
            row.activation_id,
            row.account_id,
            row.card_id,
            ActivationState(row.state),
            row.requested_by,
            as_utc(row.requested_at),
            _utc(row.finished_at),
            row.refusal,
        )

    def add_activation(self, request: ActivationRequest) -> None:
        self.session.execute(
            self.t.activations.insert(),
            dict(
                activation_id=request.activation_id,
                account_id=request.account_id,
                card_id=request.card_id,
                requested_by=request.requested_by[:200],
                requested_at=request.requested_at,
                **self._outcome(request),
            ),
        )

    @staticmethod
    def _outcome(request: ActivationRequest) -> dict[str, Any]:
        return {
            "state": request.state.value,
            "finished_at": request.finished_at,
            "refusal": request.refusal,
        }

    def save_activation(self, request: ActivationRequest) -> None:
        t = self.t.activations
        self.session.execute(
            update(t)
            .where(t.c.activation_id == request.activation_id)
            .values(**self._outcome(request))
        )

    # -- profile: reserved phone and financial password (A20.1, A12.3)

    def profile(self, account_id: str, for_update: bool = False) -> Profile:
        t = self.t.profiles
        query = select(t).where(t.c.account_id == account_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).one_or_none()
        if row is None:
            return Profile("", PasswordState(account_id))
        return Profile(
            row.phone_masked,
            PasswordState(
                account_id,
                row.password_hash,
                row.failures,
                row.locked,
                _utc(row.password_changed_at),
            ),
        )

    def _upsert(self, account_id: str, values: dict[str, Any]) -> None:
        t = self.t.profiles
        updated = self.session.execute(
            update(t).where(t.c.account_id == account_id).values(**values)
        )
        if not updated.rowcount:  # type: ignore[attr-defined]
            row: dict[str, Any] = {
                "account_id": account_id,
                "phone_cipher": None,
                "phone_masked": "",
                "password_hash": None,
                "failures": 0,
                "locked": False,
                "password_changed_at": None,
            }
            row.update(values)
            self.session.execute(t.insert(), row)

    def save_phone(self, account_id: str, phone: str) -> None:
        self._upsert(
            account_id,
            {"phone_cipher": self.cipher.encrypt(phone), "phone_masked": mask_phone(phone)},
        )

    def save_password(self, state: PasswordState) -> None:
        self._upsert(
            state.account_id,
            {
                "password_hash": state.hash,
                "failures": state.failures,
                "locked": state.locked,
                "password_changed_at": state.changed_at,
            },
        )


class HomeServiceRepository:
    def __init__(self, session: Session, cipher: PiiCipher, tables: CounterTables) -> None:
        self.session = session
        self.cipher = cipher
        self.t = tables.home_services

    def _to_booking(self, row: Row[Any]) -> Booking:
        return Booking(
            home_service_id=row.home_service_id,
            card_id=row.card_id,
            bank_code=row.bank_code,
            branch_id=row.branch_id,
            address=self.cipher.decrypt(row.address_cipher),
            date=row.visit_date,
            slot=Slot(row.slot),
            business=Business(row.business),
            contact_name=row.contact_name,
            contact_phone=self.cipher.decrypt(row.phone_cipher),
            note=row.note,
            status=Status(row.status),
            staff_id=row.staff_id,
            booked_by=row.booked_by,
            booked_at=as_utc(row.booked_at),
            updated_at=as_utc(row.updated_at),
        )

    def get(self, home_service_id: str, for_update: bool = False) -> Booking | None:
        query = select(self.t).where(self.t.c.home_service_id == home_service_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).one_or_none()
        return None if row is None else self._to_booking(row)

    def add(self, booking: Booking) -> None:
        self.session.execute(
            self.t.insert(),
            dict(
                home_service_id=booking.home_service_id,
                card_id=booking.card_id,
                bank_code=booking.bank_code,
                branch_id=booking.branch_id,
                address_cipher=self.cipher.encrypt(booking.address),
                visit_date=booking.date,
                slot=booking.slot.value,
                business=booking.business.value,
                contact_name=booking.contact_name,
                phone_cipher=self.cipher.encrypt(booking.contact_phone),
                booked_by=booking.booked_by[:200],
                booked_at=booking.booked_at,
                **self._state(booking),
            ),
        )

    @staticmethod
    def _state(booking: Booking) -> dict[str, Any]:
        return {
            "status": booking.status.value,
            "staff_id": booking.staff_id,
            "note": booking.note,
            "updated_at": booking.updated_at,
        }

    def save_state(self, booking: Booking) -> None:
        self.session.execute(
            update(self.t)
            .where(self.t.c.home_service_id == booking.home_service_id)
            .values(**self._state(booking))
        )

    def list_branch(
        self, branch_id: str, status: Status | None, offset: int, limit: int
    ) -> list[Booking]:
        t = self.t
        query = select(t).where(t.c.branch_id == branch_id)
        if status is not None:
            query = query.where(t.c.status == status.value)
        query = (
            query.order_by(t.c.visit_date, t.c.booked_at, t.c.home_service_id)
            .offset(offset)
            .limit(limit)
        )
        return [self._to_booking(row) for row in self.session.execute(query)]
