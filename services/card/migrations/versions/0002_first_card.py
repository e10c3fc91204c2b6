"""Cards, their transitions, notices and photos, employer batches, and sagas.

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
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cards",
        sa.Column("card_id", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_since", TZ, nullable=False),
        sa.Column("generation", sa.SmallInteger, nullable=False),
        sa.Column("person_id", sa.String(32)),
        sa.Column("holder_name", sa.String(200), nullable=False),
        sa.Column("doc_type", sa.String(40), nullable=False),
        sa.Column("doc_index", sa.String(64), nullable=False),
        sa.Column("doc_cipher", sa.LargeBinary, nullable=False),
        sa.Column("doc_masked", sa.String(40), nullable=False),
        sa.Column("mobile_cipher", sa.LargeBinary, nullable=False),
        sa.Column("mobile_masked", sa.String(20), nullable=False),
        sa.Column("address_cipher", sa.LargeBinary, nullable=False),
        sa.Column("occupation", sa.String(50), nullable=False),
        sa.Column("bank_code", sa.String(12), nullable=False),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("pickup_branch_id", sa.String(40), nullable=False),
        sa.Column("employer_id", sa.String(18), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("applied_at", TZ, nullable=False),
        sa.Column("applied_channel", sa.String(20), nullable=False),
        sa.Column("applied_outlet_id", sa.String(40), nullable=False),
        sa.Column("due_date", sa.Date),
        sa.Column("card_number_cipher", sa.LargeBinary),
        sa.Column("card_number_masked", sa.String(24), nullable=False),
        sa.Column("refusal_reason", sa.String(64), nullable=False),
        sa.Column("refusal_rule", sa.String(16), nullable=False),
        sa.Column("refusal_message", sa.String(300), nullable=False),
    )
    op.create_index("ix_cards_doc_index", "cards", ["doc_index", "applied_at"])
    op.create_index("ix_cards_batch", "cards", ["batch_id"])
    op.create_table(
        "card_photos",
        sa.Column("card_id", sa.String(40), sa.ForeignKey("cards.card_id"), primary_key=True),
        sa.Column("photo", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "card_transitions",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("card_id", sa.String(40), sa.ForeignKey("cards.card_id"), nullable=False),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("outlet_id", sa.String(40), nullable=False),
        sa.Column("operator_id", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
    )
    op.create_index("ix_card_transitions_card", "card_transitions", ["card_id", "id"])
    op.create_table(
        "card_notices",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("card_id", sa.String(40), sa.ForeignKey("cards.card_id"), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("recipient", sa.String(16), nullable=False),
        sa.Column("text", sa.String(500), nullable=False),
        sa.Column("rule", sa.String(16), nullable=False),
    )
    op.create_index("ix_card_notices_card", "card_notices", ["card_id", "id"])
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(128), primary_key=True),
        sa.Column("employer_id", sa.String(18), nullable=False),
        sa.Column("employer_name", sa.String(200), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("refused_at_submission", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "sagas",
        sa.Column("saga_id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("card_id", sa.String(40), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.SmallInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(200), nullable=False),
        sa.Column("refusal_reason", sa.String(64), nullable=False),
        sa.Column("refusal_rule", sa.String(16), nullable=False),
        sa.Column("refusal_message", sa.String(300), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=False),
        sa.Column("lease_until", TZ),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_sagas_runnable", "sagas", ["state", "next_attempt_at"])
    op.create_index("ix_sagas_card", "sagas", ["card_id"])
    op.create_index("ix_sagas_batch", "sagas", ["batch_id", "state"])


def downgrade() -> None:
    for table in ("sagas", "batches", "card_notices", "card_transitions", "card_photos", "cards"):
        op.drop_table(table)
