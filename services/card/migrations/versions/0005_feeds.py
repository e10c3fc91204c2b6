"""Where the card service has read up to in the feeds it follows: the identity service's person
events (deaths, A21.2). The position moves in the same transaction as the changes an event
causes, so no event is lost or applied twice across a crash of either side.

Expand only: a new table, so replicas of the previous release keep working.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "feed_positions",
        sa.Column("feed", sa.String(40), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(table, [{"feed": "identity.person_events", "position": 0}])


def downgrade() -> None:
    op.drop_table("feed_positions")
