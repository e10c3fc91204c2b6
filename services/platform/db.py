"""Database engines and the unit of work.

One engine per service process, built in the composition root. On SQLite the engine runs WAL,
foreign keys on, and transactions that really begin when the unit of work starts (SQLAlchemy's
pysqlite recipe): a writing unit of work takes the write lock up front with ``BEGIN IMMEDIATE``,
so SQLite is never silently weaker than PostgreSQL's row locks; a read-only one uses a deferred
``BEGIN`` and reads a consistent snapshot without blocking writers. Parameters are hidden from
SQL errors and logs: they can hold personal data.

On PostgreSQL, pooled connections are not pinged on checkout (a round trip on every call): a
connection the server dropped fails the one call that meets it, SQLAlchemy then invalidates
the pool, and the call guard answers that call UNAVAILABLE, which clients retry with the same
``request_id``. Connections are recycled after half an hour, ahead of idle timeouts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from sqlalchemy import BigInteger, Engine, Integer, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

READONLY = "sscard_readonly"
RECYCLE_SECONDS = 1800
# Auto-increment keys: BIGINT on PostgreSQL; on SQLite an INTEGER primary key is the rowid.
Serial = BigInteger().with_variant(Integer, "sqlite")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, pool_size: int = 8) -> Engine:
    """An engine for ``url`` with the settings every service uses."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _sqlite_recipe(engine)
        return engine
    return create_engine(
        url,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=RECYCLE_SECONDS,
    )


def _sqlite_recipe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get(READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every stored one is UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def advisory_lock(session: Session, *parts: str, wait: bool = True) -> bool:
    """A PostgreSQL advisory lock held until the transaction ends (``wait=False``: only if free
    now; returns whether it is held). Advisory locks belong to the whole database, so the key
    includes the connection's schema: services or tests sharing a database never block each
    other."""
    function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    held = session.execute(
        text(f"SELECT {function}(hashtextextended(current_schema() || :k, 0))"),
        {"k": lock_key(*parts)},
    ).scalar_one()
    return wait or bool(held)


def lock_key(*parts: str) -> str:
    """The text an advisory lock on ``parts`` is keyed by, within the connection's schema (for
    a database function that takes the same lock as ``advisory_lock``)."""
    return "\x1f" + "\x1f".join(parts)


def ping(engine: Engine) -> None:
    """Raise unless the database answers."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


class Database:
    """A service's engine and its two session factories (read-write and read-only).

    On SQLite, writing transactions of one process also queue at an in-process gate: SQLite
    admits one writer at a time anyway, and its busy handler makes waiting writers sleep and
    poll, which wastes most of the time under load. Other processes still queue at SQLite's
    own lock.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.writer = sessionmaker(bind=engine, expire_on_commit=False)
        self.reader = sessionmaker(
            bind=engine.execution_options(**{READONLY: True}), expire_on_commit=False
        )
        self.write_gate: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if is_sqlite(engine) else contextlib.nullcontext()
        )

    @contextlib.contextmanager
    def writing(self) -> Iterator[Session]:
        """A session for one writing transaction outside a unit of work (maintenance tasks)."""
        with self.write_gate, self.writer() as session, session.begin():
            yield session

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


class UnitOfWork:
    """One business transaction: ``with uow: ...; uow.commit()``; rollback unless committed.

    Services subclass it to attach their repositories in ``_open``. A unit of work is used by
    one thread at a time and never spans a call to another service.
    """

    def __init__(self, db: Database, readonly: bool = False) -> None:
        self.db = db
        self.readonly = readonly
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._session

    def __enter__(self) -> Self:
        if not self.readonly:
            self.db.write_gate.__enter__()
        factory = self.db.reader if self.readonly else self.db.writer
        self._session = factory()
        self._open(self._session)
        return self

    def _open(self, session: Session) -> None:
        """Attach repositories to the session; overridden by each service."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()
            self._session = None
            if not self.readonly:
                self.db.write_gate.__exit__(None, None, None)

    def commit(self) -> None:
        if self.readonly:
            raise RuntimeError("a read-only unit of work cannot commit")
        self.session.commit()

    def flush(self) -> None:
        self.session.flush()
