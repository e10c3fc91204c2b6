"""The bank's side of a first card: branches, accounts (A4.4), card number counters,
production orders (A22) and the outbox of "card made" notices to the card service (A7.1).

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

Serial = sa.BigInteger().with_variant(sa.Integer, "sqlite")
Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "branches",
        sa.Column("branch_id", sa.String(64), primary_key=True),
        sa.Column("bank_code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("instant", sa.Boolean, nullable=False),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("updated_at", Moment, nullable=False),
    )
    op.create_index("ix_branches_bank", "branches", ["bank_code", "branch_id"])
    op.create_table(
        "card_number_counters",
        sa.Column("bank_code", sa.String(16), primary_key=True),
        sa.Column("bank_number", sa.SmallInteger, nullable=False, unique=True),
        sa.Column("last_serial", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(32), primary_key=True),
        sa.Column("card_id", sa.String(64), nullable=False, unique=True),
        sa.Column("bank_code", sa.String(16), nullable=False),
        sa.Column("holder_name", sa.String(200), nullable=False),
        sa.Column("doc_type", sa.String(40), nullable=False),
        sa.Column("doc_index", sa.String(64), nullable=False),
        sa.Column("doc_cipher", sa.LargeBinary, nullable=False),
        sa.Column("doc_masked", sa.String(40), nullable=False),
        sa.Column("document_valid_until", sa.Date),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", Moment, nullable=False),
        sa.Column("closed_at", Moment),
    )
    op.create_index("ix_accounts_doc_index", "accounts", ["doc_index"])
    op.create_table(
        "production_orders",
        sa.Column("order_id", sa.String(32), primary_key=True),
        sa.Column("card_id", sa.String(64), nullable=False, unique=True),
        sa.Column("bank_code", sa.String(16), nullable=False),
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.account_id"), nullable=False
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("applied_at", Moment, nullable=False),
        sa.Column("applied_at_branch_id", sa.String(64), nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("instant", sa.Boolean, nullable=False),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("pickup_branch_id", sa.String(64), nullable=False),
        sa.Column("card_number", sa.String(19), unique=True),
        sa.Column("produced_at", Moment),
        sa.Column("cancelled_at", Moment),
        sa.Column("created_at", Moment, nullable=False),
    )
    op.create_index("ix_production_orders_status_due", "production_orders", ["status", "due_date"])
    op.create_table(
        "card_notices",
        sa.Column("notice_id", Serial, primary_key=True, autoincrement=True),
        sa.Column(
            "order_id",
            sa.String(32),
            sa.ForeignKey("production_orders.order_id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("card_number", sa.String(19), nullable=False),
        sa.Column("produced_at", Moment, nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", Moment, nullable=False),
        sa.Column("leased_until", Moment),
        sa.Column("delivered_at", Moment),
        sa.Column("last_error", sa.String(200)),
    )
    op.create_index(
        "ix_card_notices_next_attempt", "card_notices", ["delivered_at", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_card_notices_next_attempt", "card_notices")
    op.drop_table("card_notices")
    op.drop_index("ix_production_orders_status_due", "production_orders")
    op.drop_table("production_orders")
    op.drop_index("ix_accounts_doc_index", "accounts")
    op.drop_table("accounts")
    op.drop_table("card_number_counters")
    op.drop_index("ix_branches_bank", "branches")
    op.drop_table("branches")
