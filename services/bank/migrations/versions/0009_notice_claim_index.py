"""The notice claim's index: undelivered notices in the order they fall due, so a claim reads
the few rows it takes instead of sorting every due notice. It replaces the index on
``(delivered_at, next_attempt_at)``, which only that claim used.

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

UNDELIVERED = sa.text("delivered_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_card_notices_claim",
        "card_notices",
        ["next_attempt_at", "notice_id"],
        postgresql_where=UNDELIVERED,
        sqlite_where=UNDELIVERED,
    )
    op.drop_index("ix_card_notices_next_attempt", "card_notices")


def downgrade() -> None:
    op.create_index(
        "ix_card_notices_next_attempt", "card_notices", ["delivered_at", "next_attempt_at"]
    )
    op.drop_index("ix_card_notices_claim", "card_notices")
