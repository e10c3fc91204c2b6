"""Transit's view of each card names its holder (``card_status.person_id``, sent by the card
service with every push, or asked of it once), so that a person's top-up in the transit app is
decided on the view as a kiosk's is, with no call to the card service.

PostgreSQL: ``transit_top_up`` takes the caller's holder as a last argument (``p_holder``; NULL
for a system caller): a person's top-up is settled by the function only when the card's view
names them as its holder; anything else (no holder known yet, another person's card) answers
``SLOW`` and changes nothing. The function of 0007's signature stays, for replicas of the
previous release, which use it for system callers only: it calls the new one with no holder.

Expand only: a new nullable column and a new function.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TOP_UP = r"""
CREATE FUNCTION transit_top_up(
    p_lock_key text,
    p_scope text,
    p_request_id text,
    p_fingerprint text,
    p_expires_at timestamptz,
    p_card_id text,
    p_usable text[],
    p_amount bigint,
    p_cap bigint,
    p_kind text,
    p_channel text,
    p_outlet_id text,
    p_at timestamptz,
    p_answer bytea,
    p_audit jsonb,
    p_audit_before text,
    p_audit_between text,
    p_audit_after text,
    p_holder text
) RETURNS TABLE (
    result text,
    entry_id bigint,
    balance_after bigint,
    stored_fingerprint text,
    stored_outcome text,
    stored_payload bytea
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_held record;
    v_status text;
    v_holder text;
    v_head record;
    v_balance bigint;
    v_booked bigint;
    v_seq bigint;
    v_hash text;
    v_lane int := (p_audit->>'lane')::int;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended(current_schema() || p_lock_key, 0)) THEN
        RETURN QUERY SELECT 'IN_PROGRESS'::text, NULL::bigint, NULL::bigint,
            NULL::text, NULL::text, NULL::bytea;
        RETURN;
    END IF;
    SELECT k.fingerprint, k.outcome, k.payload, k.expires_at INTO v_held
        FROM idempotency_keys k WHERE k.scope = p_scope AND k.request_id = p_request_id;
    IF FOUND THEN
        IF v_held.expires_at > p_at THEN
            RETURN QUERY SELECT 'STORED'::text, NULL::bigint, NULL::bigint,
                v_held.fingerprint::text,
                v_held.outcome::text, v_held.payload;
        ELSE
            RETURN QUERY SELECT 'SLOW'::text, NULL::bigint, NULL::bigint,
            NULL::text, NULL::text, NULL::bytea;
        END IF;
        RETURN;
    END IF;
    SELECT c.status, c.person_id INTO v_status, v_holder
        FROM card_status c WHERE c.card_id = p_card_id;
    IF v_status IS NULL OR NOT v_status = ANY (p_usable)
            OR (p_holder IS NOT NULL AND v_holder IS DISTINCT FROM p_holder) THEN
        RETURN QUERY SELECT 'SLOW'::text, NULL::bigint, NULL::bigint,
            NULL::text, NULL::text, NULL::bytea;
        RETURN;
    END IF;
    SELECT h.seq, h.hash INTO v_head FROM audit_head h WHERE h.lane = v_lane FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'SLOW'::text, NULL::bigint, NULL::bigint,
            NULL::text, NULL::text, NULL::bytea;
        RETURN;
    END IF;
    UPDATE wallets w SET balance_fen = w.balance_fen + p_amount, updated_at = p_at
        WHERE w.card_id = p_card_id AND w.status = 'OPEN' AND w.balance_fen + p_amount <= p_cap
        RETURNING w.balance_fen INTO v_balance;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'SLOW'::text, NULL::bigint, NULL::bigint,
            NULL::text, NULL::text, NULL::bytea;
        RETURN;
    END IF;
    INSERT INTO wallet_entries (card_id, kind, amount_fen, balance_after_fen, reference, channel,
            outlet_id, booked_at)
        VALUES (p_card_id, p_kind, p_amount, v_balance, p_request_id, p_channel, p_outlet_id,
            p_at)
        RETURNING wallet_entries.entry_id INTO v_booked;
    -- The answer: fields 1 (entry_id) and 5 (balance_after_fen) appended to the rest of it.
    INSERT INTO idempotency_keys (scope, request_id, fingerprint, outcome, payload, created_at,
            expires_at)
        VALUES (p_scope, p_request_id, p_fingerprint, 'response',
            p_answer || '\x08'::bytea || transit_varint(v_booked) || '\x28'::bytea
                || transit_varint(v_balance),
            p_at, p_expires_at);
    v_seq := v_head.seq + 1;
    v_hash := encode(sha256(convert_to(
        p_audit_before || v_head.hash || p_audit_between || v_seq::text || p_audit_after, 'UTF8'
    )), 'hex');
    INSERT INTO audit_trail
        SELECT * FROM jsonb_populate_record(NULL::audit_trail,
            p_audit || jsonb_build_object('seq', v_seq, 'prev_hash', v_head.hash, 'hash', v_hash)
        );
    UPDATE audit_head h SET seq = v_seq, hash = v_hash WHERE h.lane = v_lane;
    RETURN QUERY SELECT 'OK'::text, v_booked, v_balance, NULL::text, NULL::text, NULL::bytea;
END
$$
"""

RESULT = """RETURNS TABLE (
    result text,
    entry_id bigint,
    balance_after bigint,
    stored_fingerprint text,
    stored_outcome text,
    stored_payload bytea
)"""

ARGUMENTS = (
    "text, text, text, text, timestamptz, text, text[], bigint, bigint, text, text, text, "
    "timestamptz, bytea, jsonb, text, text, text"
)

# The previous release's signature: a system caller's top-up, no holder.
WITHOUT_HOLDER = f"""
CREATE OR REPLACE FUNCTION transit_top_up(
    p_lock_key text,
    p_scope text,
    p_request_id text,
    p_fingerprint text,
    p_expires_at timestamptz,
    p_card_id text,
    p_usable text[],
    p_amount bigint,
    p_cap bigint,
    p_kind text,
    p_channel text,
    p_outlet_id text,
    p_at timestamptz,
    p_answer bytea,
    p_audit jsonb,
    p_audit_before text,
    p_audit_between text,
    p_audit_after text
) {RESULT}
LANGUAGE sql AS $$
    SELECT * FROM transit_top_up(p_lock_key, p_scope, p_request_id, p_fingerprint, p_expires_at,
        p_card_id, p_usable, p_amount, p_cap, p_kind, p_channel, p_outlet_id, p_at, p_answer,
        p_audit, p_audit_before, p_audit_between, p_audit_after, NULL::text)
$$
"""


def upgrade() -> None:
    op.add_column("card_status", sa.Column("person_id", sa.String(64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TOP_UP)
        op.execute(WITHOUT_HOLDER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        path = Path(__file__).with_name("0007_audit_lanes.py")
        spec = importlib.util.spec_from_file_location("transit_0007", path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {path}")
        previous = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(previous)
        op.execute(previous.TOP_UP)
        op.execute(f"DROP FUNCTION transit_top_up({ARGUMENTS}, text)")
    op.drop_column("card_status", "person_id")
