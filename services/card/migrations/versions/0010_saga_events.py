"""Every saga keeps the list of what happened to it, numbered per saga, so a caller can follow
it as it happens and resume after a lost stream (CardService.WatchSaga).

Expand only: a new table, filled with each existing saga's state as its first event, so replicas
of the previous release keep working (the steps they drive during the upgrade add no events).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saga_events",
        sa.Column("saga_id", sa.String(40), sa.ForeignKey("sagas.saga_id"), primary_key=True),
        sa.Column("sequence", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.SmallInteger, nullable=False),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(200), nullable=False),
        sa.Column("refusal_reason", sa.String(64), nullable=False),
        sa.Column("refusal_rule", sa.String(16), nullable=False),
        sa.Column("refusal_message", sa.String(300), nullable=False),
    )
    # Sagas already recorded start their log with where they stand now.
    op.execute(
        "INSERT INTO saga_events (saga_id, sequence, at, state, step, retries, last_error,"
        " refusal_reason, refusal_rule, refusal_message)"
        " SELECT saga_id, 1, updated_at, state, step, retries, last_error, refusal_reason,"
        " refusal_rule, refusal_message FROM sagas"
    )


def downgrade() -> None:
    op.drop_table("saga_events")
