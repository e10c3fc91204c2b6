"""The audit trail: every state-changing call, hash-chained (README, "Audit trail").

Expand only: new tables, so replicas of the previous release keep working.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-14
"""

from alembic import op

from services.platform.migrations import create_audit_trail, drop_audit_trail

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_trail(op)


def downgrade() -> None:
    drop_audit_trail(op)
