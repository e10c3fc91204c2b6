"""The ledger of card accounts: one balance row per account with its class (A4.5) and its
non-counter suspensions (A19.2, A4.5); the immutable entries (A19.1 payouts, A16.3 / A19.1
transit refunds, counter and non-counter payments); and the transaction monitoring alerts
(A4.5).

Expand only: three new tables, so replicas of the previous release keep working.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Serial = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.account_id"), primary_key=True
        ),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("balance_fen", sa.BigInteger, nullable=False),
        sa.Column("tier", sa.String(4), nullable=False),
        sa.Column("non_counter_reasons", sa.String(100), nullable=False),
        sa.Column("non_counter_since", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("entry_no", Serial, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(32), nullable=False, unique=True),
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.account_id"), nullable=False
        ),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("balance_after_fen", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16)),
        sa.Column("non_counter", sa.Boolean, nullable=False),
        sa.Column("reference", sa.String(128), nullable=False),
        sa.Column("counterparty", sa.String(128), nullable=False),
        sa.Column("transfer_id", sa.String(32), nullable=False),
        sa.Column("booked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("booked_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_ledger_entries_account", "ledger_entries", ["account_id", "entry_no"])
    op.create_index(
        "ix_ledger_entries_account_booked", "ledger_entries", ["account_id", "booked_at"]
    )
    op.create_table(
        "alerts",
        sa.Column("alert_no", Serial, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(32), nullable=False, unique=True),
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.account_id"), nullable=False
        ),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.Column("entry_ids", sa.Text, nullable=False),
        sa.Column("freeze", sa.Boolean, nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(200), nullable=False),
        sa.Column("resolution", sa.String(1000), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_alerts_status", "alerts", ["status", "alert_no"])
    op.create_index("ix_alerts_account", "alerts", ["account_id", "alert_no"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_accounts")
