"""A timer says when its due date was counted in working days through a year whose State Council
holiday schedule is only estimated, so operations see it in ListDeadlines (A21.2).

Expand only: a new column with a default, so replicas of the previous release keep working.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("timers") as batch:
        batch.add_column(
            sa.Column("estimated_calendar", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("timers") as batch:
        batch.drop_column("estimated_calendar")
