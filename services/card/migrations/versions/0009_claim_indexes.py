"""Partial indexes for the saga and timer claims: the unfinished sagas and the pending timers in
the order they fall due, so a claim reads the few rows it takes instead of sorting every
runnable saga (PostgreSQL cannot read ``(state, next_attempt_at)`` in order for two states).

Expand only: new indexes, so replicas of the previous release keep working.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ACTIVE_SAGA = sa.text("state IN ('RUNNING', 'COMPENSATING')")
PENDING_TIMER = sa.text("state = 'PENDING'")


def upgrade() -> None:
    op.create_index(
        "ix_sagas_claim",
        "sagas",
        ["next_attempt_at"],
        postgresql_where=ACTIVE_SAGA,
        sqlite_where=ACTIVE_SAGA,
    )
    op.create_index(
        "ix_timers_claim",
        "timers",
        ["due_at"],
        postgresql_where=PENDING_TIMER,
        sqlite_where=PENDING_TIMER,
    )


def downgrade() -> None:
    op.drop_index("ix_timers_claim", table_name="timers")
    op.drop_index("ix_sagas_claim", table_name="sagas")
