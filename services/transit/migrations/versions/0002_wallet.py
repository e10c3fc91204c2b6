"""The transit wallet as a ledger (A10), the outbox of refunds to bank accounts (A16.3, A19.1)
and the park annual pass (A11).

Expand only: new tables, so replicas of the previous release keep working.

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

Moment = sa.DateTime(timezone=True)
Serial = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "wallets",
        sa.Column("card_id", sa.String(64), primary_key=True),
        sa.Column("balance_fen", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("closed_reason", sa.String(16)),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("updated_at", Moment, nullable=False),
        sa.CheckConstraint("balance_fen >= 0", name="ck_wallets_balance_not_negative"),
    )
    op.create_table(
        "wallet_entries",
        sa.Column("entry_id", Serial, primary_key=True, autoincrement=True),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("balance_after_fen", sa.BigInteger, nullable=False),
        sa.Column("reference", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("outlet_id", sa.String(64), nullable=False),
        sa.Column("booked_at", Moment, nullable=False),
    )
    op.create_index("ix_wallet_entries_card", "wallet_entries", ["card_id", "entry_id"])
    op.create_table(
        "refunds",
        sa.Column("refund_id", sa.String(40), primary_key=True),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("to_card_id", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("balance_after_fen", sa.BigInteger, nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", Moment, nullable=False),
        sa.Column("leased_until", Moment),
        sa.Column("arrived_at", Moment),
        sa.Column("bank_entry_id", sa.String(64)),
        sa.Column("last_error", sa.String(200)),
    )
    op.create_index("ix_refunds_due", "refunds", ["state", "next_attempt_at"])
    op.create_index("ix_refunds_card", "refunds", ["card_id"])
    op.create_table(
        "park_passes",
        sa.Column("pass_id", sa.String(40), primary_key=True),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("purchased_at", Moment, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("outlet_id", sa.String(64), nullable=False),
        sa.Column("original_card_id", sa.String(64), nullable=False),
        sa.Column("transferred_at", Moment),
        sa.UniqueConstraint("card_id", "year", name="uq_park_passes_card_year"),
    )


def downgrade() -> None:
    op.drop_table("park_passes")
    op.drop_table("refunds")
    op.drop_table("wallet_entries")
    op.drop_table("wallets")
