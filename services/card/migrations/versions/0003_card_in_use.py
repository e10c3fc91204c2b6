"""The card in use: loss state, service passwords, and durable timers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cards") as batch:
        batch.add_column(sa.Column("status_before_loss", sa.String(20)))
        batch.add_column(sa.Column("replaced_by", sa.String(40), nullable=False, server_default=""))
    op.create_table(
        "service_passwords",
        sa.Column("card_id", sa.String(64), primary_key=True),
        sa.Column("hash", sa.String(200)),
        sa.Column("failures", sa.SmallInteger, nullable=False),
        sa.Column("locked_until", TZ),
        sa.Column("changed_at", TZ),
    )
    op.create_table(
        "timers",
        sa.Column("timer_id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(16), nullable=False),
        sa.Column("due_at", TZ, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("outcome", sa.String(200), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=False),
        sa.Column("lease_until", TZ),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("fired_at", TZ),
    )
    op.create_index("ix_timers_due", "timers", ["state", "due_at"])
    op.create_index("ix_timers_target", "timers", ["kind", "target"])


def downgrade() -> None:
    op.drop_table("timers")
    op.drop_table("service_passwords")
    with op.batch_alter_table("cards") as batch:
        batch.drop_column("replaced_by")
        batch.drop_column("status_before_loss")
