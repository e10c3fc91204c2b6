"""When the social security function of a person's 1st / 2nd generation card stopped: the
person's 3rd-generation card was activated (A27.3).

Expand only: one nullable column, so replicas of the previous release keep working.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("persons", sa.Column("legacy_ss_stopped_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("persons", "legacy_ss_stopped_at")
