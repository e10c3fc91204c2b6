"""The day a person's HR and medical insurance business was settled, as the registry feed
reports it; a card is cancelled only after that (A19.1).

Expand only: one nullable column, so replicas of the previous release keep working.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("persons", sa.Column("business_settled_on", sa.Date))


def downgrade() -> None:
    op.drop_column("persons", "business_settled_on")
