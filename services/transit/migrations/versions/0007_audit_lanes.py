"""The audit trail in lanes: 16 independent chains, a row in the lane of its card, account or
person (else of its request), each lane with its own head, so audited writes about different
cards no longer queue at one head row. The chain kept so far carries on as lane 0.

PostgreSQL: ``transit_top_up`` (0006) appends its audit row to the head of the row's lane, given
with the row's fields (``lane`` in ``p_audit``); its signature is unchanged.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import importlib.util
from pathlib import Path

from alembic import op

from services.platform.migrations import add_audit_lanes, drop_audit_lanes

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TOP_UP = r"""
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
    SELECT c.status INTO v_status FROM card_status c WHERE c.card_id = p_card_id;
    IF v_status IS NULL OR NOT v_status = ANY (p_usable) THEN
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


def upgrade() -> None:
    add_audit_lanes(op)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TOP_UP)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        path = Path(__file__).with_name("0006_top_up_function.py")
        spec = importlib.util.spec_from_file_location("transit_0006", path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {path}")
        previous = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(previous)
        op.execute(previous.TOP_UP.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    drop_audit_lanes(op)
