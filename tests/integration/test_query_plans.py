"""Every hot statement keeps its index as the tables grow (PostgreSQL only).

Each service's schema is built by its migrations and filled with tens of thousands of rows in one
``INSERT ... SELECT generate_series`` per table; then each hot path's repository method runs as
the service runs it, the statement it sends is caught at the driver, and its plan is read with
``EXPLAIN``. A plan that reads a whole table (``Seq Scan``) or sorts more than a few rows (the
index already holds the order asked for) fails the test. Plans are checked twice: with the
call's values (the first executions) and generic (what PostgreSQL caches once the driver
prepares a statement).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from psycopg.sql import Literal
from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    LargeBinary,
    String,
    Table,
    event,
    literal_column,
    select,
    text,
)

from services.bank.store import BankUnitOfWork
from services.bank.store import metadata as bank_metadata
from services.card.store import CardUnitOfWork
from services.card.store import metadata as card_metadata
from services.identity.store import IdentityUnitOfWork
from services.identity.store import metadata as identity_metadata
from services.platform import migrations
from services.platform.clock import SystemClock
from services.platform.db import Database, UnitOfWork, make_engine
from services.platform.documents import DocumentType
from services.platform.idempotency import IdempotencyStore
from services.platform.pii import PiiCipher
from services.transit.store import TransitUnitOfWork
from services.transit.store import metadata as transit_metadata

ROWS = 20_000
FEW = 100  # rows a plan may sort
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """PostgreSQL alone (skipped without ``SSCARD_TEST_PG_URL``): the plans are its own."""
    return str(request.param)


class Caught(Exception):
    """Raised at the driver in place of running the statement: the statement was what we
    wanted."""

    def __init__(self, statement: str, parameters: Any) -> None:
        self.statement = statement
        self.parameters = parameters


@contextlib.contextmanager
def service_db(
    new_db_url: Callable[[str], str], service: str, tables: Mapping[Table, Mapping[str, str]]
) -> Iterator[Database]:
    """The service's schema by migration, each table filled with ``ROWS`` rows (a table's
    mapping gives SQL for some of its columns in terms of the row number ``g``), analysed."""
    engine = make_engine(new_db_url(service))
    try:
        migrations.upgrade(service, engine)
        with engine.begin() as conn:
            for table, columns in tables.items():
                conn.execute(_fill(table, columns))
                conn.execute(text(f"ANALYZE {table.name}"))
        yield Database(engine)
    finally:
        engine.dispose()


def _fill(table: Table, given: Mapping[str, str]) -> Any:
    """``INSERT INTO table SELECT ... FROM generate_series(1, ROWS) g``: the given columns as
    given, keys and unique columns numbered, every other required column a constant."""
    values: dict[str, Any] = {}
    for column in table.columns:
        if column.name in given:
            values[column.name] = literal_column(given[column.name])
        elif column.autoincrement is True or (column.primary_key and column.server_default):
            continue
        elif isinstance(column.type, String):
            unique = column.primary_key or column.unique or column.foreign_keys
            values[column.name] = literal_column(
                f"'{column.name[:6]}-' || g"
                if unique
                else "'x'"
                if column.nullable is False
                else "NULL"
            )
        elif column.nullable:
            continue
        elif isinstance(column.type, DateTime):
            values[column.name] = literal_column("now()")
        elif isinstance(column.type, Date):
            values[column.name] = literal_column("current_date")
        elif isinstance(column.type, Boolean):
            values[column.name] = literal_column("false")
        elif isinstance(column.type, LargeBinary):
            values[column.name] = literal_column("'\\x00'::bytea")
        else:
            values[column.name] = literal_column("0")
    rows = select(*(v.label(k) for k, v in values.items())).select_from(
        text(f"generate_series(1, {ROWS}) AS g")
    )
    return table.insert().from_select(list(values), rows)


def first_statement(uow: UnitOfWork, run: Callable[[Any], Any]) -> tuple[str, Any]:
    """The first statement ``run`` sends to the database in ``uow``, caught before it runs."""

    def catch(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        raise Caught(statement, parameters)

    event.listen(uow.db.engine, "before_cursor_execute", catch)
    try:
        with uow:
            run(uow)
    except Caught as caught:
        return caught.statement, caught.parameters
    finally:
        event.remove(uow.db.engine, "before_cursor_execute", catch)
    raise AssertionError("no statement reached the database")


def _plans(db: Database, statement: str, parameters: Any) -> dict[str, Any]:
    """The custom plan (the call's values) and the generic plan of one statement."""
    if isinstance(parameters, list | tuple):
        parameters = parameters[0]  # an executemany: every row has the same plan
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    prepared = re.sub(r"%\((\w+)\)s", number, statement)
    with db.engine.connect() as conn:
        custom = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
        plans = {"custom": custom.scalar_one()}
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE hot AS {prepared}")
        # EXECUTE takes no bound parameters under EXPLAIN: its arguments go in as literals.
        raw = conn.connection.driver_connection
        arguments = ", ".join(Literal(parameters[name]).as_string(raw) for name in numbers)
        execute = f"EXECUTE hot({arguments})" if numbers else "EXECUTE hot"
        plans["generic"] = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + execute).scalar_one()
        conn.exec_driver_sql("DEALLOCATE hot")  # prepared statements outlive the transaction
        conn.rollback()
    return {k: (json.loads(v) if isinstance(v, str) else v)[0]["Plan"] for k, v in plans.items()}


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def assert_indexed(uow: UnitOfWork, run: Callable[[Any], Any], uses: str) -> None:
    """The statement ``run`` sends reads index ``uses``, never a whole table, and sorts no more
    than a few rows (the planner may rather sort a card's ten rows than read them in order)."""
    statement, parameters = first_statement(uow, run)
    for kind, plan in _plans(uow.db, statement, parameters).items():
        nodes = list(_nodes(plan))
        shown = json.dumps(plan, indent=1)
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], f"{kind}: {shown}"
        sorts = [n for n in nodes if "Sort" in n["Node Type"]]
        assert not [n for n in sorts if n["Plans"][0]["Plan Rows"] > FEW], f"{kind}: {shown}"
        assert uses in {n.get("Index Name") for n in nodes}, f"{kind}: {shown}"


CIPHER = PiiCipher(secrets.token_bytes(32))
SAGA_STATES = "(ARRAY['COMPLETED','COMPLETED','FAILED','RUNNING','COMPENSATING'])[1 + g % 5]"
TIMER_STATES = "(ARRAY['FIRED','CANCELLED','PENDING'])[1 + g % 3]"
SPREAD = f"now() + (g - {ROWS // 2}) * interval '1 second'"


@pytest.fixture
def card_db(new_db_url: Callable[[str], str]) -> Iterator[Database]:
    t = card_metadata.tables
    with service_db(
        new_db_url,
        "card",
        {
            t["cards"]: {"status": "'ACTIVE'", "applied_at": SPREAD},
            # Two in five running or compensating, due over the whole range, some leased.
            t["sagas"]: {
                "state": SAGA_STATES,
                "next_attempt_at": SPREAD,
                "lease_until": "CASE WHEN g % 7 = 0 THEN now() + interval '1 minute' END",
            },
            t["timers"]: {"state": TIMER_STATES, "due_at": SPREAD},
            t["idempotency_keys"]: {"expires_at": "now() + interval '1 day'"},
        },
    ) as db:
        yield db


def test_the_saga_claim_reads_the_runnable_sagas_in_order(card_db: Database) -> None:
    assert_indexed(
        CardUnitOfWork(card_db, CIPHER),
        lambda uow: uow.sagas.claim("me", NOW, dt.timedelta(seconds=15), 4),
        uses="ix_sagas_claim",
    )


def test_the_timer_claim_reads_the_pending_timers_in_order(card_db: Database) -> None:
    assert_indexed(
        CardUnitOfWork(card_db, CIPHER),
        lambda uow: uow.timers.claim_due("me", NOW, NOW, dt.timedelta(seconds=30), 100),
        uses="ix_timers_claim",
    )


def test_get_card_reads_one_card_by_its_key(card_db: Database) -> None:
    for read in (lambda uow: uow.cards.get("card_i-77"), lambda uow: uow.cards.view("card_i-77")):
        assert_indexed(CardUnitOfWork(card_db, CIPHER, readonly=True), read, uses="cards_pkey")


def test_query_status_by_document_reads_the_latest_card_by_blind_index(card_db: Database) -> None:
    assert_indexed(
        CardUnitOfWork(card_db, CIPHER, readonly=True),
        lambda uow: uow.cards.latest_for_document("RESIDENT_ID", "110101199003077777"),
        uses="ix_cards_doc_index",
    )


def test_an_idempotency_key_is_found_by_its_key(card_db: Database) -> None:
    store = IdempotencyStore(
        card_metadata.tables["idempotency_keys"], SystemClock(), dt.timedelta(days=1)
    )
    assert_indexed(
        CardUnitOfWork(card_db, CIPHER),
        lambda uow: store.find(uow.session, "scope-77", "reques-77"),
        uses="idempotency_keys_pkey",
    )


def test_identity_finds_a_person_by_blind_index(new_db_url: Callable[[str], str]) -> None:
    persons = identity_metadata.tables["persons"]
    with service_db(new_db_url, "identity", {persons: {}}) as db:
        assert_indexed(
            IdentityUnitOfWork(db, CIPHER),
            lambda uow: uow.persons.find_by_document(
                DocumentType.RESIDENT_ID, "110101199003077777"
            ),
            uses="persons_doc_index_key",
        )


def test_the_bank_finds_an_account_by_card_and_claims_notices_in_order(
    new_db_url: Callable[[str], str],
) -> None:
    t = bank_metadata.tables
    with service_db(
        new_db_url,
        "bank",
        {
            t["accounts"]: {},
            t["production_orders"]: {},
            # One in ten still to deliver, due over the whole range.
            t["card_notices"]: {
                "next_attempt_at": SPREAD,
                "delivered_at": "CASE WHEN g % 10 <> 0 THEN now() END",
            },
        },
    ) as db:
        for read, index in (
            (lambda uow: uow.accounts.find_by_card("card_i-77"), "accounts_card_id_key"),
            (lambda uow: uow.accounts.get("accoun-77"), "accounts_pkey"),
            (
                lambda uow: uow.notices.claim(NOW, dt.timedelta(seconds=30), 50),
                "ix_card_notices_claim",
            ),
        ):
            assert_indexed(BankUnitOfWork(db, CIPHER), read, uses=index)


def test_transit_reads_a_wallet_and_its_entries_by_card(new_db_url: Callable[[str], str]) -> None:
    t = transit_metadata.tables
    # Ten entries a card.
    entries = {"card_id": f"'card_i-' || g % {ROWS // 10}"}
    with service_db(new_db_url, "transit", {t["wallets"]: {}, t["wallet_entries"]: entries}) as db:
        for read, index in (
            (lambda uow: uow.wallets.get("card_i-77"), "wallets_pkey"),
            (lambda uow: uow.wallets.entries("card_i-77", 0, 20), "ix_wallet_entries_card"),
            # The top-up's statement joins them here: (lambda uow: <the top-up>, "wallets_pkey").
        ):
            assert_indexed(TransitUnitOfWork(db), read, uses=index)
