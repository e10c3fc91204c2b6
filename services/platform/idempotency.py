"""Idempotent mutating calls (AIP-155 / Stripe style), kept in the service's own database.

Every mutating RPC carries a client-chosen ``request_id``. Same id + same request: the stored
answer (response or refusal) comes back and nothing runs twice. Same id + different request:
INVALID_ARGUMENT ``REQUEST_ID_REUSED``. Same id while the first call is still running:
ABORTED ``REQUEST_IN_PROGRESS`` (on PostgreSQL, through a transaction-scoped advisory lock; on
SQLite the write lock already serialises the two calls and the second gets the stored answer).
These refusals carry the rule ``IDEMPOTENCY`` (README, "Idempotency").

The key is written in the same transaction as the use case's effects, so a crash either keeps
both or neither. A refusal undoes the use case's effects (a savepoint) and is stored in that
same transaction: the key stays held until its answer is stored, so a concurrent retry of a
refused request gets the refusal back (or ABORTED while it is being stored), never a second run.
Keys are scoped by method and caller and kept for ``ttl`` (at least 24 hours).

Every stored answer, response or refusal, also appends the call's row to the service's audit
trail (``audit``) in that same transaction: the one place every state-changing call passes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Session

from services.platform import audit, logs
from services.platform.auth import current_caller
from services.platform.clock import Clock
from services.platform.db import Database, UnitOfWork, advisory_lock, as_utc, lock_key
from services.platform.errors import DomainError, FieldViolation, Kind, invalid
from services.platform.pii import PiiCipher

log = logging.getLogger("sscard.changes")

M = TypeVar("M", bound=Message)
U = TypeVar("U", bound=UnitOfWork)

# Refusals that depend on the moment, not on the request: never stored, a retry runs again.
TRANSIENT = frozenset({Kind.CONFLICT, Kind.UNAVAILABLE, Kind.UNAUTHENTICATED, Kind.EXHAUSTED})
MAX_REQUEST_ID = 128
# The rule a refusal about the request_id itself carries (README, "Idempotency").
RULE = "IDEMPOTENCY"


def define_table(metadata: MetaData) -> Table:
    """The ``idempotency_keys`` table, added to a service's metadata."""
    return Table(
        "idempotency_keys",
        metadata,
        Column("scope", String(200), primary_key=True),
        Column("request_id", String(MAX_REQUEST_ID), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("outcome", String(8), nullable=False),  # "response" or "error"
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )


def fingerprint(message: Message) -> str:
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()


@dataclass(frozen=True)
class Stored:
    outcome: str
    payload: bytes

    def replay(self, response_type: type[M]) -> M:
        if self.outcome == "error":
            raise _decode_error(self.payload)
        return response_type.FromString(self.payload)


def _encode_error(error: DomainError) -> bytes:
    return json.dumps(
        {
            "reason": error.reason,
            "message": error.message,
            "kind": error.kind.value,
            "rule": error.rule,
            "violations": [[v.field, v.description, v.reason] for v in error.violations],
            "metadata": error.metadata,
        }
    ).encode()


def _decode_error(payload: bytes) -> DomainError:
    data = json.loads(payload)
    return DomainError(
        data["reason"],
        data["message"],
        kind=Kind(data["kind"]),
        rule=data["rule"],
        violations=tuple(FieldViolation(*v) for v in data["violations"]),
        metadata=data["metadata"],
    )


def check_request_id(request_id: str) -> None:
    if not request_id or len(request_id) > MAX_REQUEST_ID:
        raise invalid(
            "REQUEST_ID_REQUIRED",
            [
                FieldViolation(
                    "request_id",
                    f"a client-chosen id of 1 to {MAX_REQUEST_ID} characters is required",
                )
            ],
            rule=RULE,
        )


def reused() -> DomainError:
    return invalid(
        "REQUEST_ID_REUSED",
        [FieldViolation("request_id", "this request_id was already used for a different request")],
        rule=RULE,
    )


def in_progress() -> DomainError:
    return DomainError(
        "REQUEST_IN_PROGRESS",
        "a call with this request_id is still running; retry shortly",
        kind=Kind.CONFLICT,
        rule=RULE,
    )


@dataclass(frozen=True)
class OneStatement:
    """What a call run as one database statement needs to claim its key and audit itself the
    way ``Idempotent.run`` does (a service's own database function does the rest)."""

    lock_key: str
    scope: str
    request_id: str
    fingerprint: str
    expires_at: dt.datetime
    audit: audit.Template


class IdempotencyStore:
    """Reads and writes keys inside the caller's transaction, and audits what they answer.

    The service's metadata, which holds ``table``, holds its audit trail's tables too.
    """

    def __init__(
        self, table: Table, clock: Clock, ttl: dt.timedelta, cipher: PiiCipher | None = None
    ) -> None:
        self.table = table
        self.clock = clock
        self.ttl = ttl
        held = (table.c.scope == bindparam("scope"), table.c.request_id == bindparam("request_id"))
        self._find = select(
            table.c.fingerprint, table.c.outcome, table.c.payload, table.c.expires_at
        ).where(*held)
        self._forget = delete(table).where(*held)
        # Stored answers may carry personal data; a service that holds any seals them.
        self._cipher = cipher
        self.trail = audit.AuditTrail(table.metadata)

    def _seal(self, payload: bytes) -> bytes:
        return self._cipher.encrypt_bytes(payload) if self._cipher else payload

    def _unseal(self, payload: bytes) -> bytes:
        return self._cipher.decrypt_bytes(payload) if self._cipher else payload

    def claim(
        self, session: Session, scope: str, request_id: str, fp: str, postgres: bool
    ) -> Stored | None:
        """The stored answer for this key, or None if the call should run now.

        Raises REQUEST_ID_REUSED for a different request under the same id, and (PostgreSQL)
        REQUEST_IN_PROGRESS while another transaction holds the same key.
        """
        if postgres and not advisory_lock(session, scope, request_id, wait=False):
            raise in_progress()
        found = self.find(session, scope, request_id)
        if found is None:
            return None
        stored_fp, stored = found
        if stored_fp != fp:
            raise reused()
        return stored

    def find(self, session: Session, scope: str, request_id: str) -> tuple[str, Stored] | None:
        """The fingerprint and answer stored under a key, if any and not expired."""
        key = {"scope": scope, "request_id": request_id}
        row = session.execute(self._find, key).one_or_none()
        if row is None:
            return None
        if as_utc(row.expires_at) <= self.clock.now():
            session.execute(self._forget, key)
            return None
        return row.fingerprint, Stored(row.outcome, self._unseal(row.payload))

    def remember(
        self, session: Session, scope: str, request_id: str, fp: str, outcome: str, payload: bytes
    ) -> None:
        now = self.clock.now()
        session.execute(
            self.table.insert(),
            {
                "scope": scope,
                "request_id": request_id,
                "fingerprint": fp,
                "outcome": outcome,
                "payload": self._seal(payload),
                "created_at": now,
                "expires_at": now + self.ttl,
            },
        )

    def count_live(self, session: Session) -> int:
        """Keys stored and not yet expired (an index range on ``expires_at``)."""
        return int(
            session.execute(
                select(func.count())
                .select_from(self.table)
                .where(self.table.c.expires_at > self.clock.now())
            ).scalar_one()
        )

    def record(
        self,
        session: Session,
        method: str,
        request_id: str,
        request: Message,
        response: Message | None = None,
        refusal: DomainError | None = None,
    ) -> None:
        """Append the current call's audit row. The last write before the commit: the chain's
        head stays locked from here until the transaction ends."""
        row = audit.entry(
            self.clock.now(), current_caller(), method, request_id, request, response, refusal
        )
        self.trail.append(session, row)

    def one_statement(
        self, method: str, request_id: str, request: Message, now: dt.datetime
    ) -> OneStatement:
        """The key, lock and audit row of the current caller's call, for a database function
        that claims, runs and records it in one statement (``settle`` reads its result)."""
        check_request_id(request_id)
        scope = scope_of(method)
        row = audit.entry(now, current_caller(), method, request_id, request)
        return OneStatement(
            lock_key(scope, request_id),
            scope,
            request_id,
            fingerprint(request),
            now + self.ttl,
            audit.template(row),
        )

    def settle(
        self, call: OneStatement, held: tuple[str, str, bytes] | None, response_type: type[M]
    ) -> M:
        """The answer stored under the call's key before (``held``: its fingerprint, outcome
        and payload), replayed as ``Idempotent.run`` replays it."""
        if held is None:
            raise in_progress()
        stored_fp, outcome, payload = held
        if stored_fp != call.fingerprint:
            raise reused()
        log.info("stored answer replayed", extra={logs.OUTCOME: "REPLAYED"})
        return Stored(outcome, self._unseal(payload)).replay(response_type)

    def purge_expired(self, db: Database) -> int:
        """Delete keys past their time; run periodically by the server's maintenance loop."""
        with db.writing() as session:
            result = session.execute(
                delete(self.table).where(self.table.c.expires_at < self.clock.now())
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]


def scope_of(method: str) -> str:
    """Keys are scoped by method and caller: two callers never collide on a request_id."""
    return f"{method}:{current_caller().caller}"


class Idempotent(Generic[U]):
    """Runs a use case at most once per (scope, request_id), inside one unit of work."""

    def __init__(self, store: IdempotencyStore, new_uow: Callable[[], U]) -> None:
        self.store = store
        self._new_uow = new_uow

    def call(self, method: str, request: Any, response_type: type[M], work: Callable[[U], M]) -> M:
        """Run ``work`` at most once for the current caller's ``request.request_id``."""
        return self.run(method, request.request_id, request, response_type, work)

    def replay(self, method: str, request: Any, response_type: type[M]) -> M | None:
        """The stored answer for the current caller's request, if this request_id ran before.

        For use cases that must do slow work (password hashing) before their transaction.
        """
        check_request_id(request.request_id)
        with self._new_uow() as uow:
            found = self.store.find(uow.session, scope_of(method), request.request_id)
        if found is None:
            return None
        stored_fp, stored = found
        if stored_fp != fingerprint(request):
            raise reused()
        return stored.replay(response_type)

    def run(
        self,
        method: str,
        request_id: str,
        request: Message,
        response_type: type[M],
        work: Callable[[U], M],
        fp: str | None = None,
    ) -> M:
        """Run ``work`` at most once for the current caller's ``request_id``. A request that
        is more than ``request`` (a client stream: ``request`` is its first message, which the
        audit trail reads) passes its own fingerprint ``fp`` of the whole."""
        check_request_id(request_id)
        scope = scope_of(method)
        fp = fingerprint(request) if fp is None else fp
        with self._new_uow() as uow:
            postgres = not uow.db.is_sqlite
            stored = self.store.claim(uow.session, scope, request_id, fp, postgres)
            if stored is not None:
                log.info("stored answer replayed", extra={logs.OUTCOME: "REPLAYED"})
                return stored.replay(response_type)
            attempt = uow.session.begin_nested()
            try:
                response = work(uow)
            except DomainError as exc:
                if exc.kind in TRANSIENT:
                    raise
                # Undo the work but keep the key held until its refusal is stored.
                attempt.rollback()
                self.store.remember(uow.session, scope, request_id, fp, "error", _encode_error(exc))
                self.store.record(uow.session, method, request_id, request, refusal=exc)
                uow.commit()
                log.info(
                    "refusal stored",
                    extra={logs.OUTCOME: "REFUSED", logs.REASON: exc.reason},
                )
                raise
            attempt.commit()
            self.store.remember(
                uow.session, scope, request_id, fp, "response", response.SerializeToString()
            )
            self.store.record(uow.session, method, request_id, request, response)
            uow.commit()
            log.info("state change committed", extra={logs.OUTCOME: "OK"})
            return response
