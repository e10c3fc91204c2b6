"""When the card's financial function was activated at the issuing bank's counter (A9.1, with the
SS function, A9.2); NULL while it is not.

Expand only: one nullable column, so replicas of the previous release keep working.

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
    op.add_column("accounts", sa.Column("financial_activated_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("financial_activated_at")
