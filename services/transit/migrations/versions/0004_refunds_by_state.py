"""An index for operations' list of refunds by state, oldest first (ListRefunds).

Expand only: a new index, so replicas of the previous release keep working.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_refunds_state_created", "refunds", ["state", "created_at", "refund_id"])


def downgrade() -> None:
    op.drop_index("ix_refunds_state_created", table_name="refunds")
