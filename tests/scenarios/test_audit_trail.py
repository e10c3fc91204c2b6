"""The audit trail: every state-changing call leaves a hash-chained row in its service's
database (README, "Audit trail"), and tampering with the rows shows on ``sscard audit verify``."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import io
import itertools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.orm import Session

from services.bank import store as bank_store
from services.bank.main import build as build_bank
from services.platform import logs, migrations
from services.platform.anchors import sign
from services.platform.audit import (
    GENESIS,
    LANES,
    OK,
    AuditTrail,
    Entry,
    Row,
    digest,
    lane_for,
    template,
)
from services.platform.auth import Channel, Role
from services.platform.db import Database, make_engine
from services.platform.idempotency import OneStatement
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc
from tests.cardsuite import BANK, Suite, reason_rule, rpc_error, wait_until
from tests.support import sscard, wait_serving
from tests.trust import TestTrust


def _rows(engine: Engine, metadata: Any, **filters: str) -> list[Row]:
    with Session(engine) as session:
        return AuditTrail(metadata).rows(session, **filters)


def test_audit_A4_an_application_is_recorded_with_who_what_and_which_card(
    suite: Suite, service_env: dict[str, str]
) -> None:
    """第四条: "市人力资源社会保障局应指导监督线上和线下渠道严格规范制卡申请信息采集" — an
    application leaves a row naming its client, channel, person and card, never the document
    number; activating the card before it is handed over is refused, and the refusal is recorded
    with its reason and rule."""
    from services.card import store as card_store
    from services.identity import store as identity_store

    person = suite.person()
    started = suite.apply(person)
    card_db = suite.card_server.deps.db.engine

    applied = _rows(card_db, card_store.metadata, card_id=started.card_id)
    first = next(r.item for r in applied if r.item.method == "Apply")
    assert first.outcome == OK
    assert first.channel == Channel.ONLINE.value
    assert first.person_id == person.person_id
    assert first.client_id  # the registered client the person's credential came through

    refused = rpc_error(lambda: suite.activate(started.card_id, person))
    reason, rule = reason_rule(refused)
    mine = _rows(card_db, card_store.metadata, person_id=person.person_id)
    last = mine[-1].item
    assert (last.method, last.card_id, last.outcome, last.rule) == (
        "ActivateCard",
        started.card_id,
        reason,
        rule,
    )
    assert rule

    feed = _rows(suite.identity_server.deps.db.engine, identity_store.metadata, client_id="hr-feed")
    assert [r.item.method for r in feed] == ["ImportPersons"]
    document = person.document().number
    for engine, metadata in (
        (card_db, card_store.metadata),
        (suite.identity_server.deps.db.engine, identity_store.metadata),
    ):
        for row in _rows(engine, metadata):
            assert document not in repr(row)

    listed = sscard(service_env, "audit", "list", "card", "--card", started.card_id)
    assert listed.returncode == 0, listed.stderr
    assert "Apply" in listed.stdout and person.person_id not in listed.stdout
    assert document not in listed.stdout


@pytest.fixture
def bank(start_service: Callable[..., Any], trust: TestTrust) -> Any:
    running = start_service("bank", build_bank)
    wait_serving(running.channel)
    wait_until(trust.anchor_file("bank").exists)  # the anchor of the trail it started with
    return running


def _upsert(
    bank: Any, token: Any, request_id: str, branch_id: str, timeout: float | None = None
) -> None:
    bank_pb2_grpc.BankServiceStub(bank.channel).UpsertBranch(
        bank_pb2.UpsertBranchRequest(
            request_id=request_id,
            branch=bank_pb2.Branch(bank_code=BANK, branch_id=branch_id, name=branch_id),
        ),
        metadata=token,
        timeout=timeout,
    )


def _request_ids_in(lane: int, count: int, prefix: str = "branch") -> list[str]:
    """Request ids whose rows fall into ``lane`` (a call naming no card, account or person)."""
    ids = (f"{prefix}-{n}" for n in itertools.count())
    return list(itertools.islice((i for i in ids if lane_for(i) == lane), count))


def _broken_lanes(output: str) -> list[str]:
    return [
        line.split(" at row")[0].split()[-1] for line in output.splitlines() if "BROKEN" in line
    ]


def test_audit_a_changed_or_deleted_row_in_any_lane_is_found_by_verify(
    bank: Any, token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    """A row goes into the lane of its target (here, naming no card or account, of its
    request). Appending a row behind a lane head's back, editing one field of a row, moving a
    row to another lane or deleting rows breaks that lane's chain at that row, and only that
    lane's; ``verify`` reports the first bad row of every broken lane."""
    ops = token(roles=(Role.OPS,), caller="ops")
    lane = 7
    for i, request_id in enumerate(_request_ids_in(lane, 4)):
        _upsert(bank, ops, request_id, f"ICBC-01{i:02d}")
    _upsert(bank, ops, _request_ids_in(0, 1)[0], "ICBC-0999")
    intact = sscard(service_env, "audit", "verify", "bank")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "intact, 5 rows in 16 lanes" in intact.stdout

    trail = bank_store.metadata.tables["audit_trail"]
    engine = bank.deps.db.engine
    mine = [r for r in _rows(engine, bank_store.metadata) if r.lane == lane]
    assert [r.seq for r in mine] == [1, 2, 3, 4]
    fourth = mine[-1]
    forged = replace(fourth.item, request_id=_request_ids_in(lane, 1, "forged")[0])
    in_lane = trail.c.lane == lane
    with engine.begin() as conn:
        conn.execute(
            trail.insert(),
            {
                **asdict(forged),
                "lane": lane,
                "seq": 5,
                "prev_hash": fourth.hash,
                "hash": digest(5, fourth.hash, forged),
            },
        )
    inserted = sscard(service_env, "audit", "verify", "bank")
    assert inserted.returncode == 1
    assert "lane 7 at row 5: row 5 is not the head's (inserted out of order)" in inserted.stdout
    assert _broken_lanes(inserted.stdout) == ["7"]
    with engine.begin() as conn:
        conn.execute(delete(trail).where(in_lane, trail.c.seq == 5))

    with engine.begin() as conn:
        conn.execute(update(trail).where(in_lane, trail.c.seq == 4).values(lane=3, seq=1))
    moved = sscard(service_env, "audit", "verify", "bank")
    assert moved.returncode == 1
    assert "lane 3 at row 1: row 1 was modified" in moved.stdout
    assert "lane 7 at row 4: rows 4 to 4 were deleted" in moved.stdout
    with engine.begin() as conn:
        conn.execute(
            update(trail).where(trail.c.lane == 3, trail.c.seq == 1).values(lane=lane, seq=4)
        )

    with engine.begin() as conn:
        conn.execute(update(trail).where(in_lane, trail.c.seq == 2).values(client_id="someone"))
    modified = sscard(service_env, "audit", "verify", "bank")
    assert modified.returncode == 1
    assert "lane 7 at row 2: row 2 was modified" in modified.stdout
    assert _broken_lanes(modified.stdout) == ["7"]

    with engine.begin() as conn:
        conn.execute(delete(trail).where(in_lane, trail.c.seq == 2))
    deleted = sscard(service_env, "audit", "verify", "bank")
    assert deleted.returncode == 1
    assert "lane 7 at row 2: rows 2 to 2 were deleted" in deleted.stdout

    with engine.begin() as conn:
        conn.execute(delete(trail).where(in_lane, trail.c.seq >= 3))
        conn.execute(update(trail).where(trail.c.lane == 0).values(outcome="FORGED"))
    both = sscard(service_env, "audit", "verify", "bank")
    assert both.returncode == 1
    assert "lane 0 at row 1: row 1 was modified" in both.stdout
    assert "lane 7 at row 2: rows 2 to 4 were deleted" in both.stdout


def test_audit_concurrent_writers_never_fork_the_chain(
    bank: Any, token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    """8 writers x 50 calls at once: 400 rows spread over the lanes, each lane one chain, each
    row following the one before in its lane."""
    ops = token(roles=(Role.OPS,), caller="ops")

    def writer(w: int) -> None:
        for i in range(50):
            _upsert(bank, ops, f"w{w}-{i}", f"ICBC-{w}{i:03d}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    verdict = sscard(service_env, "audit", "verify", "bank")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "intact, 400 rows in 16 lanes" in verdict.stdout
    lanes = {r.lane for r in _rows(bank.deps.db.engine, bank_store.metadata)}
    assert lanes == set(range(LANES))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_audit_a_write_waits_only_for_writers_in_its_own_lane(
    bank: Any, token: Callable[..., Any]
) -> None:
    """While a transaction holds lane 5's head, a write whose row goes to lane 9 commits, and
    a write whose row goes to lane 5 waits for that lane's head, then commits after it."""
    ops = token(roles=(Role.OPS,), caller="ops")
    engine = bank.deps.db.engine
    head = bank_store.metadata.tables["audit_head"]
    (same,) = _request_ids_in(5, 1, "lane")
    (other,) = _request_ids_in(9, 1, "lane")
    with engine.connect() as holder, concurrent.futures.ThreadPoolExecutor(1) as pool:
        with holder.begin():
            holder.execute(select(head).where(head.c.lane == 5).with_for_update())
            holder_pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
            _upsert(bank, ops, other, "ICBC-0901", timeout=30)  # another lane: not held up
            waiting = pool.submit(_upsert, bank, ops, same, "ICBC-0905")
            blocked = text(
                "SELECT count(*) FROM pg_stat_activity WHERE :holder = ANY (pg_blocking_pids(pid))"
            )

            def queued() -> bool:  # a new transaction each time: activity is read once in one
                with engine.connect() as watcher:
                    return watcher.execute(blocked, {"holder": holder_pid}).scalar_one() == 1

            wait_until(queued)
            assert not waiting.done()
        waiting.result(timeout=30)
    rows = {r.item.request_id: r.lane for r in _rows(engine, bank_store.metadata)}
    assert rows == {other: 9, same: 5}


def test_audit_the_chain_kept_before_lanes_carries_on_as_lane_0(db_url: str) -> None:
    """A database whose single chain predates lanes: migrated, its rows are lane 0 unchanged,
    every lane verifies, and new rows chain on in their lanes (lane 0 after its old head)."""
    engine = make_engine(db_url)
    try:
        migrations.upgrade("bank", engine, "0009")
        old = [replace(_entry(), request_id=r) for r in [*_request_ids_in(0, 1), "a", "b"]]
        prev = GENESIS
        with engine.begin() as conn:
            for seq, item in enumerate(old, start=1):
                row_hash = digest(seq, prev, item)
                conn.execute(
                    text(
                        "INSERT INTO audit_trail (seq, at, client_id, channel, operator_id,"
                        " outlet_id, person_id, method, request_id, card_id, account_id, outcome,"
                        " rule, prev_hash, hash) VALUES (:seq, :at, :client_id, :channel,"
                        " :operator_id, :outlet_id, :person_id, :method, :request_id, :card_id,"
                        " :account_id, :outcome, :rule, :prev_hash, :hash)"
                    ),
                    {**asdict(item), "seq": seq, "prev_hash": prev, "hash": row_hash},
                )
                prev = row_hash
            conn.execute(text("UPDATE audit_head SET seq = 3, hash = :h WHERE id = 1"), {"h": prev})
        migrations.upgrade("bank", engine)
        trail = AuditTrail(bank_store.metadata)
        new = [replace(_entry(), request_id=r) for r in _request_ids_in(0, 1, "new")]
        new += [replace(_entry(), request_id=r) for r in _request_ids_in(4, 1, "new")]
        with Session(engine) as session, session.begin():
            assert [(r.lane, r.seq) for r in trail.rows(session)] == [(0, 1), (0, 2), (0, 3)]
            assert trail.verify(session).intact
            for item in new:
                trail.append(session, item)
        with Session(engine) as session:
            verdict = trail.verify(session)
            placed = {r.item.request_id: (r.lane, r.seq) for r in trail.rows(session)}
        assert verdict.intact and verdict.rows == 5
        assert placed[new[0].request_id] == (0, 4) and placed[new[1].request_id] == (4, 1)
    finally:
        engine.dispose()


def _entry() -> Entry:
    return Entry(
        at=dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC),
        client_id="ops",
        channel="OPS",
        operator_id="",
        outlet_id="",
        person_id="",
        method="UpsertBranch",
        request_id="",
        card_id="",
        account_id="",
        outcome=OK,
        rule="",
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_audit_transits_one_statement_top_up_chains_its_row_in_its_cards_lane_as_python_would(
    db_url: str,
) -> None:
    """``transit_top_up`` computes each row's hash in PostgreSQL: top-ups of cards in two
    different lanes each land, settled by the function alone, in their card's lane, and the
    trail verifies with the hashes Python computes."""
    from services.transit import card_view_store
    from services.transit import store as transit_store
    from services.transit.domain import rules
    from services.transit.domain.wallet import Entry as Booking
    from services.transit.domain.wallet import EntryKind

    engine = make_engine(db_url)
    try:
        migrations.upgrade("transit", engine)
        db = Database(engine)
        at = _entry().at
        cards = [_request_ids_in(3, 1, "card")[0], _request_ids_in(11, 1, "card")[0]]
        wallets, statuses = transit_store.wallets, transit_store.card_status
        with engine.begin() as conn:
            for card_id in cards:
                conn.execute(
                    wallets.insert(),
                    {
                        "card_id": card_id,
                        "balance_fen": 100,
                        "status": "OPEN",
                        "created_at": at,
                        "updated_at": at,
                    },
                )
                conn.execute(
                    statuses.insert(),
                    {
                        "card_id": card_id,
                        "status": sorted(rules.COLLECTED_STATES)[0],
                        "version": 1,
                        "recorded_at": at,
                    },
                )
        for n, card_id in enumerate(cards * 2):
            item = replace(_entry(), method="TopUp", card_id=card_id, request_id=f"kiosk-{n}")
            call = OneStatement(
                f"lock-{n}",
                "TopUp",
                f"kiosk-{n}",
                "f" * 64,
                at + dt.timedelta(days=1),
                template(item),
            )
            booking = Booking(
                card_id, EntryKind.TOP_UP, 100, 0, f"kiosk-{n}", "TRANSIT_OUTLET", "K-1", at
            )
            trip = card_view_store.top_up_in_one(
                db, call, booking, rules.COLLECTED_STATES, 10**6, b"", ""
            )
            assert trip.result == "OK"
        trail = AuditTrail(transit_store.metadata)
        with Session(engine) as session:
            verdict = trail.verify(session)
            placed = [(r.item.card_id, r.lane, r.seq) for r in trail.rows(session)]
        assert verdict.intact, verdict.breaks
        assert sorted(placed) == sorted(
            [(cards[0], 3, 1), (cards[0], 3, 2), (cards[1], 11, 1), (cards[1], 11, 2)]
        )
    finally:
        engine.dispose()


def _anchor(bank: Any) -> dict[str, Any]:
    """Anchor the bank's trail now, as its periodic loop does; the anchor written."""
    assert bank.deps.anchoring.anchor()
    return dict(json.loads(bank.deps.anchoring.path.read_text().splitlines()[-1]))


def _rewrite(engine: Engine, lane: int, seq: int, **changes: str) -> None:
    """What a dishonest operator with database access does: change row ``seq`` of ``lane``, then
    recompute the hash of every later row of the lane and the lane's head, so the chain holds."""
    trail = bank_store.metadata.tables["audit_trail"]
    head = bank_store.metadata.tables["audit_head"]
    mine = [r for r in _rows(engine, bank_store.metadata) if r.lane == lane]
    prev = mine[seq - 2].hash if seq > 1 else GENESIS
    with engine.begin() as conn:
        for row in mine[seq - 1 :]:
            item = replace(row.item, **changes) if row.seq == seq else row.item
            row_hash = digest(row.seq, prev, item)
            conn.execute(
                update(trail)
                .where(trail.c.lane == lane, trail.c.seq == row.seq)
                .values(**asdict(item), prev_hash=prev, hash=row_hash)
            )
            prev = row_hash
        conn.execute(update(head).where(head.c.lane == lane).values(hash=prev))


def test_audit_a_lane_rewritten_and_rehashed_by_someone_with_database_access_fails_its_anchors(
    bank: Any, token: Callable[..., Any], service_env: dict[str, str], trust: TestTrust
) -> None:
    """A row edited and every later hash of its lane recomputed: the chain alone verifies, but
    the anchors written outside the database show the lane rewritten, from the row after the
    last anchored one that still matches."""
    ops = token(roles=(Role.OPS,), caller="ops")
    lane, anchors = 7, str(trust.anchor_file("bank"))
    ids = _request_ids_in(lane, 4)
    _upsert(bank, ops, ids[0], "ICBC-0100")
    first = _anchor(bank)
    for i, request_id in enumerate(ids[1:], start=1):
        _upsert(bank, ops, request_id, f"ICBC-01{i:02d}")
    second = _anchor(bank)
    assert [lane, 1] == first["heads"][lane][:2] and [lane, 4] == second["heads"][lane][:2]
    held = sscard(service_env, "audit", "verify", "bank", "--anchors", anchors)
    assert held.returncode == 0, held.stdout + held.stderr
    assert "anchors hold" in held.stdout

    _rewrite(bank.deps.db.engine, lane, 2, client_id="someone")
    alone = sscard(service_env, "audit", "verify", "bank")
    assert alone.returncode == 0, alone.stdout  # what the hash chain alone cannot tell
    found = sscard(service_env, "audit", "verify", "bank", "--anchors", anchors)
    assert found.returncode == 1
    assert (
        f"lane 7 at row 2: row 4 is not the one in the anchor of {second['at']} (line "
        in found.stdout
    )
    assert "rows 2 to 4 were rewritten" in found.stdout
    assert _broken_lanes(found.stdout) == ["7"]


def test_audit_a_lanes_tail_deleted_after_an_anchor_is_found(
    bank: Any, token: Callable[..., Any], service_env: dict[str, str], trust: TestTrust
) -> None:
    """Rows deleted from a lane's end and its head set back to the last one left: the chain
    verifies, the anchor names the rows that are gone."""
    ops = token(roles=(Role.OPS,), caller="ops")
    lane, anchors = 7, str(trust.anchor_file("bank"))
    for i, request_id in enumerate(_request_ids_in(lane, 4)):
        _upsert(bank, ops, request_id, f"ICBC-01{i:02d}")
    anchored = _anchor(bank)
    engine = bank.deps.db.engine
    trail = bank_store.metadata.tables["audit_trail"]
    head = bank_store.metadata.tables["audit_head"]
    second = next(r for r in _rows(engine, bank_store.metadata) if (r.lane, r.seq) == (lane, 2))
    with engine.begin() as conn:
        conn.execute(delete(trail).where(trail.c.lane == lane, trail.c.seq > 2))
        conn.execute(update(head).where(head.c.lane == lane).values(seq=2, hash=second.hash))
    assert sscard(service_env, "audit", "verify", "bank").returncode == 0
    found = sscard(service_env, "audit", "verify", "bank", "--anchors", anchors)
    assert found.returncode == 1
    assert (
        f"lane 7 at row 3: rows 3 to 4 of the anchor of {anchored['at']} (line 2) were deleted"
        in found.stdout
    )


def test_audit_a_forged_or_edited_anchor_is_reported_and_a_torn_last_line_tolerated(
    bank: Any, token: Callable[..., Any], service_env: dict[str, str], trust: TestTrust
) -> None:
    """An anchor line edited (heads moved back to fit a shortened lane) or signed with another
    key fails verify, naming the line; a line a crash cut short is reported as torn and verify
    still holds, and the next anchor starts on a line of its own."""
    ops = token(roles=(Role.OPS,), caller="ops")
    path = trust.anchor_file("bank")
    _upsert(bank, ops, _request_ids_in(7, 1)[0], "ICBC-0100")
    anchored = _anchor(bank)
    good = path.read_text()

    with path.open("a") as out:
        out.write(json.dumps(anchored)[:40])  # a write cut off by a crash
    torn = sscard(service_env, "audit", "verify", "bank", "--anchors", str(path))
    assert torn.returncode == 0, torn.stdout
    assert "bank: anchor line 3 is torn (a write cut off by a crash); ignored" in torn.stdout
    _upsert(bank, ops, _request_ids_in(7, 2)[1], "ICBC-0101")
    _anchor(bank)  # after the torn line, on a line of its own
    after = sscard(service_env, "audit", "verify", "bank", "--anchors", str(path))
    assert after.returncode == 0, after.stdout
    assert "anchor line 3 is torn" in after.stdout and "(line 4)" in after.stdout

    edited = {**anchored, "heads": [[lane, 0, GENESIS] for lane in range(LANES)]}
    path.write_text(good + json.dumps(edited) + "\n")
    found = sscard(service_env, "audit", "verify", "bank", "--anchors", str(path))
    assert found.returncode == 1
    assert "anchor line 3 does not match its signature (forged or edited)" in found.stdout

    foreign = sign(os.urandom(32), "bank", dt.datetime.now(dt.UTC), [(7, 1, GENESIS)])
    path.write_text(good + json.dumps(foreign) + "\n")
    forged = sscard(service_env, "audit", "verify", "bank", "--anchors", str(path))
    assert forged.returncode == 1
    assert "anchor line 3 does not match its signature (forged or edited)" in forged.stdout
    assert "lane 7" not in forged.stdout  # a forged anchor is not held against the chain


def test_audit_each_anchor_is_also_one_log_line_that_verifies_like_the_file(
    bank: Any, token: Callable[..., Any], service_env: dict[str, str], trust: TestTrust
) -> None:
    """The log carries every anchor whole and unmasked in its ``anchor`` field (a hash may hold a
    run of digits that looks like a phone number): the anchors a log pipeline kept verify."""
    ops = token(roles=(Role.OPS,), caller="ops")
    written_at_start = trust.anchor_file("bank")
    # the anchor the service writes as it starts comes first, and is not this test's to log
    wait_until(lambda: written_at_start.exists() and bool(written_at_start.read_text().strip()))
    stream = io.StringIO()
    handler = logs.handler("bank", "json", stream)
    audit_log = logging.getLogger("sscard.audit")
    audit_log.addHandler(handler)
    audit_log.setLevel(logging.INFO)
    try:
        for i, request_id in enumerate(_request_ids_in(3, 3)):
            _upsert(bank, ops, request_id, f"ICBC-03{i:02d}")
            _anchor(bank)
    finally:
        audit_log.removeHandler(handler)
    logged = [json.loads(line)["anchor"] for line in stream.getvalue().splitlines()]
    written = [json.loads(line) for line in trust.anchor_file("bank").read_text().splitlines()]
    assert logged == written[-3:]
    kept = trust.anchor_file("bank").with_name("from-the-log.jsonl")
    kept.write_text("".join(json.dumps(anchor) + "\n" for anchor in logged))
    verified = sscard(service_env, "audit", "verify", "bank", "--anchors", str(kept))
    assert verified.returncode == 0, verified.stdout
    assert "3 anchors hold" in verified.stdout
