"""Alembic, per service: each service owns ``services/<name>/migrations`` and its own database.

A service's ``env.py`` is three lines that call ``run_env``; ``upgrade`` migrates a database to
head (used by ``make run``, deployment jobs and tests); ``at_head`` is the readiness check the
health service waits for.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, MetaData

SERVICES_DIR = Path(__file__).resolve().parents[1]


def config_for(service: str, engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(service: str, engine: Engine, revision: str = "head") -> None:
    """Migrate the service's database to ``revision``."""
    command.upgrade(config_for(service, engine), revision)


@functools.cache
def _scripts(service: str) -> ScriptDirectory:
    """The service's migration scripts, read once per process: they do not change under a
    running release, and readiness asks for them on every health check."""
    return ScriptDirectory.from_config(config_for(service))


def head(service: str) -> str | None:
    return _scripts(service).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def at_head(service: str, engine: Engine) -> bool:
    """True when the database answers and carries this code's latest migration.

    A database already migrated by a newer release (a revision this code does not know) counts
    as ready too: migrations are written expand-then-contract, so old code keeps working on a
    newer schema and a rolling deployment never takes the old replicas out of service.
    """
    revision = current(engine)
    if revision is None:
        return False
    script = _scripts(service)
    if revision == script.get_current_head():
        return True
    try:
        script.get_revision(revision)
    except CommandError:
        return True  # newer than this code
    return False


def run_env(context: Any, target_metadata: MetaData) -> None:
    """Body of every service's alembic ``env.py`` (online migrations only)."""
    engine: Engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


def create_idempotency_keys(op: Any) -> None:
    """The platform's ``idempotency_keys`` table as first created (revision 0001 of each service).

    Frozen: a later change to the table is a new migration in each service, not an edit here.
    """
    import sqlalchemy as sa

    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


_AUDIT_TEXT = [
    ("client_id", 64),
    ("channel", 20),
    ("operator_id", 64),
    ("outlet_id", 64),
    ("person_id", 64),
    ("method", 64),
    ("request_id", 128),
    ("card_id", 64),
    ("account_id", 64),
    ("outcome", 64),
    ("rule", 16),
    ("prev_hash", 64),
    ("hash", 64),
]


def create_audit_trail(op: Any) -> None:
    """The platform's ``audit_trail`` and ``audit_head`` tables as first created, the head at
    the chain's start. Frozen, like ``create_idempotency_keys``."""
    import sqlalchemy as sa

    serial = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    op.create_table(
        "audit_trail",
        sa.Column("seq", serial, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.String(length), nullable=False) for name, length in _AUDIT_TEXT),
    )
    op.create_index("ix_audit_trail_card", "audit_trail", ["card_id"])
    op.create_index("ix_audit_trail_person", "audit_trail", ["person_id"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def drop_audit_trail(op: Any) -> None:
    op.drop_table("audit_head")
    op.drop_index("ix_audit_trail_person", table_name="audit_trail")
    op.drop_index("ix_audit_trail_card", table_name="audit_trail")
    op.drop_table("audit_trail")


AUDIT_LANES = 16  # frozen: the lane count ``add_audit_lanes`` creates (``audit.LANES``)


def add_audit_lanes(op: Any) -> None:
    """Split the audit trail into ``AUDIT_LANES`` chains: ``audit_trail`` gains ``lane`` (its
    primary key becomes lane and number), ``audit_head`` one row per lane, keyed by ``lane``.
    The chain kept so far becomes lane 0 as it is, its rows and head unchanged, so it verifies
    as before; the other lanes start empty at ``GENESIS``. Frozen, like
    ``create_idempotency_keys``.

    Not expand-only: the previous release keys the head by ``id``, so its replicas are stopped
    before this runs (they would refuse audited writes, never fork a chain).
    """
    import sqlalchemy as sa

    lane = sa.Column("lane", sa.Integer, nullable=False, server_default="0")
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("audit_trail", lane)
        op.drop_constraint("audit_trail_pkey", "audit_trail", type_="primary")
        op.create_primary_key("audit_trail_pkey", "audit_trail", ["lane", "seq"])
    else:
        _rebuild_audit_trail(op, lanes=True)
    with op.batch_alter_table("audit_head") as batch:
        batch.alter_column("id", new_column_name="lane", existing_type=sa.Integer)
    op.execute("UPDATE audit_head SET lane = 0 WHERE lane = 1")
    head = sa.table(
        "audit_head",
        sa.column("lane", sa.Integer),
        sa.column("seq", sa.BigInteger),
        sa.column("hash", sa.String),
    )
    op.bulk_insert(head, [{"lane": n, "seq": 0, "hash": "0" * 64} for n in range(1, AUDIT_LANES)])


def drop_audit_lanes(op: Any) -> None:
    """Back to one chain, possible only while every lane but 0 is empty."""
    import sqlalchemy as sa

    bind = op.get_bind()
    used = bind.execute(sa.text("SELECT count(*) FROM audit_trail WHERE lane <> 0")).scalar_one()
    if used:
        raise RuntimeError("audit lanes other than 0 hold rows; they cannot fold into one chain")
    op.execute("DELETE FROM audit_head WHERE lane <> 0")
    op.execute("UPDATE audit_head SET lane = 1 WHERE lane = 0")
    with op.batch_alter_table("audit_head") as batch:
        batch.alter_column("lane", new_column_name="id", existing_type=sa.Integer)
    if bind.dialect.name == "postgresql":
        op.drop_constraint("audit_trail_pkey", "audit_trail", type_="primary")
        op.create_primary_key("audit_trail_pkey", "audit_trail", ["seq"])
        op.drop_column("audit_trail", "lane")
    else:
        _rebuild_audit_trail(op, lanes=False)


def _rebuild_audit_trail(op: Any, lanes: bool) -> None:
    """SQLite: ``audit_trail`` copied into a table with (``lanes``) or without the lane column
    and keyed accordingly (SQLite cannot change a primary key in place)."""
    import sqlalchemy as sa

    serial = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    key = [sa.Column("lane", sa.Integer, nullable=False, server_default="0")] if lanes else []
    op.create_table(
        "_audit_trail_rebuilt",
        *key,
        sa.Column("seq", serial, nullable=False, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.String(length), nullable=False) for name, length in _AUDIT_TEXT),
        sa.PrimaryKeyConstraint(*(["lane", "seq"] if lanes else ["seq"])),
    )
    names = ", ".join(["seq", "at", *(name for name, _ in _AUDIT_TEXT)])
    lane_to, lane_from = ("lane, ", "0, ") if lanes else ("", "")
    op.execute(
        f"INSERT INTO _audit_trail_rebuilt ({lane_to}{names}) "
        f"SELECT {lane_from}{names} FROM audit_trail"
    )
    op.drop_index("ix_audit_trail_person", table_name="audit_trail")
    op.drop_index("ix_audit_trail_card", table_name="audit_trail")
    op.drop_table("audit_trail")
    op.rename_table("_audit_trail_rebuilt", "audit_trail")
    op.create_index("ix_audit_trail_card", "audit_trail", ["card_id"])
    op.create_index("ix_audit_trail_person", "audit_trail", ["person_id"])
