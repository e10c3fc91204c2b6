"""Idempotency keys and schemas on both databases: replays, reuse, calls in flight, expiry, and
migrations that match the code's tables exactly."""

from __future__ import annotations

import contextvars
import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from google.protobuf.wrappers_pb2 import StringValue
from sqlalchemy import func, select, text

from services.platform import migrations
from services.platform.auth import Caller, Channel, bind_caller, unbind_caller
from services.platform.clock import ManualClock
from services.platform.config import SERVICES
from services.platform.db import Database, UnitOfWork, make_engine
from services.platform.errors import DomainError, Kind
from services.platform.idempotency import IdempotencyStore, Idempotent
from services.transit import store as transit_store


def _ok(uow: UnitOfWork) -> StringValue:
    return StringValue(value="ok")


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(make_engine(db_url))
    migrations.upgrade("transit", database.engine)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def once(db: Database, clock: ManualClock) -> Iterator[Idempotent[UnitOfWork]]:
    """The helper as a call of client ``c`` reaches it (keys and audit rows name the caller)."""
    keys = IdempotencyStore(transit_store.idempotency_keys, clock, dt.timedelta(hours=24))
    bound = bind_caller(Caller("c", Channel.INTERNAL, client_id="c"))
    yield Idempotent(keys, lambda: UnitOfWork(db))
    unbind_caller(bound)


def _count(db: Database) -> int:
    with db.reader() as session:
        table = transit_store.idempotency_keys
        return int(session.execute(select(func.count()).select_from(table)).scalar_one())


def test_same_id_and_request_returns_the_stored_answer_and_runs_once(
    once: Idempotent[UnitOfWork],
) -> None:
    runs: list[int] = []

    def work(uow: UnitOfWork) -> StringValue:
        runs.append(1)
        return StringValue(value=f"run {len(runs)}")

    first = once.run("M:c", "r-1", StringValue(value="a"), StringValue, work)
    again = once.run("M:c", "r-1", StringValue(value="a"), StringValue, work)
    assert first == again == StringValue(value="run 1")
    assert runs == [1]


def test_same_id_with_a_different_request_is_refused(once: Idempotent[UnitOfWork]) -> None:
    once.run("M:c", "r-1", StringValue(value="a"), StringValue, lambda uow: StringValue())
    with pytest.raises(DomainError) as excinfo:
        once.run("M:c", "r-1", StringValue(value="b"), StringValue, lambda uow: StringValue())
    error = excinfo.value
    assert (error.reason, error.kind, error.rule) == (
        "REQUEST_ID_REUSED",
        Kind.INVALID,
        "IDEMPOTENCY",
    )


def test_keys_are_scoped_by_method_and_caller(once: Idempotent[UnitOfWork]) -> None:
    for scope in ("M:a", "M:b", "N:a"):
        answer = once.run(
            scope,
            "r-1",
            StringValue(value="a"),
            StringValue,
            lambda u: StringValue(value=(u.readonly and "") or "ok"),
        )
        assert answer.value == "ok"


def test_a_refusal_is_stored_and_replayed(once: Idempotent[UnitOfWork]) -> None:
    calls: list[int] = []

    def refuse(uow: UnitOfWork) -> StringValue:
        calls.append(1)
        raise DomainError("NOT_FORMALLY_LOST", "not lost", rule="A14.3")

    for _ in range(2):
        with pytest.raises(DomainError) as excinfo:
            once.run("M:c", "r-2", StringValue(), StringValue, refuse)
        assert (excinfo.value.reason, excinfo.value.rule) == ("NOT_FORMALLY_LOST", "A14.3")
    assert calls == [1]


def test_a_transient_failure_is_not_stored(once: Idempotent[UnitOfWork], db: Database) -> None:
    def unavailable(uow: UnitOfWork) -> StringValue:
        raise DomainError("BANK_UNAVAILABLE", "down", kind=Kind.UNAVAILABLE)

    with pytest.raises(DomainError):
        once.run("M:c", "r-3", StringValue(), StringValue, unavailable)
    assert _count(db) == 0
    assert once.run("M:c", "r-3", StringValue(), StringValue, lambda u: StringValue(value="ok"))


def test_keys_expire_after_their_time_and_are_purged(
    once: Idempotent[UnitOfWork], db: Database, clock: ManualClock
) -> None:
    once.run("M:c", "r-4", StringValue(), StringValue, lambda u: StringValue(value="first"))
    clock.advance(dt.timedelta(hours=23))
    assert (
        once.run("M:c", "r-4", StringValue(), StringValue, lambda u: StringValue()).value == "first"
    )
    clock.advance(dt.timedelta(hours=2))
    assert once.store.purge_expired(db) == 1
    assert (
        once.run("M:c", "r-4", StringValue(), StringValue, lambda u: StringValue(value="2")).value
        == "2"
    )


def test_a_second_call_while_the_first_runs_is_aborted_or_waits_for_its_answer(
    once: Idempotent[UnitOfWork], db: Database
) -> None:
    """PostgreSQL answers ABORTED REQUEST_IN_PROGRESS at once; SQLite's write lock makes the
    second call wait and then replay the first one's answer. Either way it runs once."""
    inside, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def slow(uow: UnitOfWork) -> StringValue:
        runs.append(1)
        inside.set()
        release.wait(10)
        return StringValue(value="done")

    call = (once.run, "M:c", "r-5", StringValue(), StringValue, slow)
    first = threading.Thread(target=contextvars.copy_context().run, args=call)
    first.start()
    assert inside.wait(10)
    if db.is_sqlite:
        threading.Timer(0.3, release.set).start()
        assert once.run("M:c", "r-5", StringValue(), StringValue, slow).value == "done"
    else:
        with pytest.raises(DomainError) as excinfo:
            once.run("M:c", "r-5", StringValue(), StringValue, slow)
        assert (excinfo.value.reason, excinfo.value.kind) == ("REQUEST_IN_PROGRESS", Kind.CONFLICT)
        release.set()
    first.join(10)
    assert runs == [1]


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_build_exactly_the_tables_the_code_uses(db_url: str, service: str) -> None:
    import importlib

    metadata = importlib.import_module(f"services.{service}.store").metadata
    engine = make_engine(db_url)
    try:
        migrations.upgrade(service, engine)
        assert migrations.at_head(service, engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        migrations.upgrade(service, engine, "head")
        from alembic import command

        command.downgrade(migrations.config_for(service, engine), "base")
        assert migrations.current(engine) is None
    finally:
        engine.dispose()


def test_readiness_follows_the_schema_and_tolerates_a_newer_release(db_url: str) -> None:
    """Behind: not ready. At head: ready. Migrated by a newer release: still ready, so old
    replicas keep serving during a rolling deployment (migrations are expand-then-contract)."""
    engine = make_engine(db_url)
    try:
        assert not migrations.at_head("card", engine)
        migrations.upgrade("card", engine)
        assert migrations.at_head("card", engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_newer_release'"))
        assert migrations.at_head("card", engine)
    finally:
        engine.dispose()
