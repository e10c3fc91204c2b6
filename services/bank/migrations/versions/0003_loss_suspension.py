"""The suspension of an account's financial function while its card is reported lost: the loss
it is suspended for (A13.2 temporary, A13.4 formal) and since when; both NULL when the function
is not suspended (never suspended, or lifted on unlock, A14.1).

Expand only: two nullable columns, so replicas of the previous release keep working.

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


def upgrade() -> None:
    op.add_column("accounts", sa.Column("loss_kind", sa.String(16)))
    op.add_column("accounts", sa.Column("suspended_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("suspended_at")
        batch.drop_column("loss_kind")
