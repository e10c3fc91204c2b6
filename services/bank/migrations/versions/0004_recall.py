"""Cards taken back by the bank and destroyed: one row per card with why it was taken back
(A16.6 replaced, A21.1 not handed out, A21.2 holder deceased, A7.4 returned by an employer),
when and by whom, and when and by whom it was destroyed (both NULL until it is, A16.6).

Expand only: a new table, so replicas of the previous release keep working.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "card_recalls",
        sa.Column(
            "card_id",
            sa.String(64),
            sa.ForeignKey("production_orders.card_id"),
            primary_key=True,
        ),
        sa.Column("reason", sa.String(24), nullable=False),
        sa.Column("recalled_at", Moment, nullable=False),
        sa.Column("recalled_by", sa.String(200), nullable=False),
        sa.Column("destroyed_at", Moment),
        sa.Column("destroyed_by", sa.String(200)),
    )


def downgrade() -> None:
    op.drop_table("card_recalls")
