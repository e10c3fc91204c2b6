"""A transit refund is booked once, however late its retry: a unique index on the refund's
reference among TRANSIT_REFUND entries. The request-id key of a Credit lives for its TTL only; a
refund whose answer was lost and whose relay retries after that would otherwise be booked again.

Expand only: a new index, so replicas of the previous release keep working.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TRANSIT_REFUND = sa.text("source = 'TRANSIT_REFUND' AND reference <> ''")


def upgrade() -> None:
    op.create_index(
        "ux_ledger_entries_transit_refund",
        "ledger_entries",
        ["reference"],
        unique=True,
        postgresql_where=TRANSIT_REFUND,
        sqlite_where=TRANSIT_REFUND,
    )


def downgrade() -> None:
    op.drop_index("ux_ledger_entries_transit_refund", "ledger_entries")
