"""Alembic, per service: each service owns ``services/<name>/migrations`` and its own database.

A service's ``env.py`` is three lines that call ``run_env``; ``upgrade`` migrates a database to
head (used by ``make run``, deployment jobs and tests); ``at_head`` is the readiness check the
health service waits for.
"""

from __future__ import annotations

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


def head(service: str) -> str | None:
    script = ScriptDirectory.from_config(config_for(service))
    return script.get_current_head()


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
    script = ScriptDirectory.from_config(config_for(service))
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


def create_audit_trail(op: Any) -> None:
    """The platform's ``audit_trail`` and ``audit_head`` tables as first created, the head at
    the chain's start. Frozen, like ``create_idempotency_keys``."""
    import sqlalchemy as sa

    serial = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    text = [
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
    op.create_table(
        "audit_trail",
        sa.Column("seq", serial, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.String(length), nullable=False) for name, length in text),
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
