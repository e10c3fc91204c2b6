"""Reissue and replacement: a card names the card it replaces and the account it carries.

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


def upgrade() -> None:
    with op.batch_alter_table("cards") as batch:
        batch.add_column(
            sa.Column("replaces_card_id", sa.String(40), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("account_id", sa.String(40), nullable=False, server_default=""))
    op.create_index("ix_cards_person", "cards", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_cards_person", "cards")
    with op.batch_alter_table("cards") as batch:
        batch.drop_column("account_id")
        batch.drop_column("replaces_card_id")
