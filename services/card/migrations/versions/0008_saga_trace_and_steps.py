"""A saga keeps the W3C trace context (traceparent) of the call that started it, so its later
steps join that call's trace, and when each of its steps was done and undone (for operations).

Expand only: new columns with defaults, so replicas of the previous release keep working.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        batch.add_column(
            sa.Column("trace_parent", sa.String(64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("step_times", sa.Text, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("sagas") as batch:
        batch.drop_column("step_times")
        batch.drop_column("trace_parent")
