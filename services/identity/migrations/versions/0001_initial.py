"""The identity registry: persons, basic-information history, the event feed.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from services.platform.migrations import create_idempotency_keys

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Serial = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    create_idempotency_keys(op)
    op.create_table(
        "persons",
        sa.Column("person_id", sa.String(32), primary_key=True),
        sa.Column("doc_type", sa.String(40), nullable=False),
        sa.Column("doc_index", sa.String(64), nullable=False, unique=True),
        sa.Column("doc_cipher", sa.LargeBinary, nullable=False),
        sa.Column("doc_masked", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sex", sa.String(8)),
        sa.Column("birth_date", sa.Date),
        sa.Column("document_valid_until", sa.Date),
        sa.Column("insured_in_beijing", sa.Boolean, nullable=False),
        sa.Column("public_service_entitled", sa.Boolean, nullable=False),
        sa.Column("date_of_death", sa.Date),
        sa.Column("preferential", sa.String(100), nullable=False),
        sa.Column("legacy_card_generation", sa.SmallInteger, nullable=False),
        sa.Column("source", sa.String(24), nullable=False),
        sa.Column("registered_card_id", sa.String(64), unique=True),
        sa.Column("registration_kind", sa.String(16)),
        sa.Column("registered_since", sa.DateTime(timezone=True)),
        sa.Column("previous_card_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "basic_info_changes",
        sa.Column("id", Serial, primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.String(32), sa.ForeignKey("persons.person_id"), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("old_name", sa.String(200), nullable=False),
        sa.Column("new_name", sa.String(200), nullable=False),
        sa.Column("old_doc_type", sa.String(40), nullable=False),
        sa.Column("old_doc_cipher", sa.LargeBinary, nullable=False),
        sa.Column("new_doc_type", sa.String(40), nullable=False),
        sa.Column("new_doc_cipher", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
    )
    op.create_index("ix_basic_info_changes_person", "basic_info_changes", ["person_id", "id"])
    op.create_table(
        "person_events",
        sa.Column("sequence", Serial, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("person_id", sa.String(32), sa.ForeignKey("persons.person_id"), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_card_id", sa.String(64)),
        sa.Column("date_of_death", sa.Date),
    )


def downgrade() -> None:
    op.drop_table("person_events")
    op.drop_index("ix_basic_info_changes_person", "basic_info_changes")
    op.drop_table("basic_info_changes")
    op.drop_table("persons")
    op.drop_table("idempotency_keys")
