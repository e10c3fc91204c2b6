"""The transit service's first schema: the platform's idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op

from services.platform.migrations import create_idempotency_keys

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_idempotency_keys(op)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
