"""The counter business of the issuing bank: financial activation requests (A9.1, with the SS
function, A9.2), the financial profile of an account (reserved phone as ciphertext and masked
copy, A20.1; financial password hash, wrong tries and lock, A12.3) and home-service bookings
(A25.1; address and contact phone as ciphertexts).

Expand only: three new tables, so replicas of the previous release keep working.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "financial_activations",
        sa.Column("activation_id", sa.String(64), primary_key=True),
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.account_id"), nullable=False
        ),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_at", Moment, nullable=False),
        sa.Column("finished_at", Moment),
        sa.Column("refusal", sa.String(100), nullable=False),
    )
    op.create_index("ix_financial_activations_account", "financial_activations", ["account_id"])
    op.create_table(
        "financial_profiles",
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.account_id"), primary_key=True
        ),
        sa.Column("phone_cipher", sa.LargeBinary),
        sa.Column("phone_masked", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(200)),
        sa.Column("failures", sa.SmallInteger, nullable=False),
        sa.Column("locked", sa.Boolean, nullable=False),
        sa.Column("password_changed_at", Moment),
    )
    op.create_table(
        "home_services",
        sa.Column("home_service_id", sa.String(32), primary_key=True),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("bank_code", sa.String(16), nullable=False),
        sa.Column("branch_id", sa.String(64), nullable=False),
        sa.Column("address_cipher", sa.LargeBinary, nullable=False),
        sa.Column("visit_date", sa.Date, nullable=False),
        sa.Column("slot", sa.String(16), nullable=False),
        sa.Column("business", sa.String(32), nullable=False),
        sa.Column("contact_name", sa.String(100), nullable=False),
        sa.Column("phone_cipher", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("booked_by", sa.String(200), nullable=False),
        sa.Column("booked_at", Moment, nullable=False),
        sa.Column("updated_at", Moment, nullable=False),
    )
    op.create_index(
        "ix_home_services_branch",
        "home_services",
        ["branch_id", "status", "visit_date", "home_service_id"],
    )


def downgrade() -> None:
    op.drop_table("home_services")
    op.drop_table("financial_profiles")
    op.drop_table("financial_activations")
