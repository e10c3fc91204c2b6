"""The audit trail in lanes: 16 independent chains, a row in the lane of its card, account or
person (else of its request), each lane with its own head, so audited writes about different
targets no longer queue at one head row. The chain kept so far carries on as lane 0.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op

from services.platform.migrations import add_audit_lanes, drop_audit_lanes

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_audit_lanes(op)


def downgrade() -> None:
    drop_audit_lanes(op)
