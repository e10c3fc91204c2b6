"""The audit trail: every state-changing call leaves a hash-chained row in its service's
database (README, "Audit trail"), and tampering with the rows shows on ``sscard audit verify``."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.orm import Session

from services.bank import store as bank_store
from services.bank.main import build as build_bank
from services.platform import migrations
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
from services.platform.config import REPO_ROOT
from services.platform.db import Database, make_engine
from services.platform.idempotency import OneStatement
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc
from tests.cardsuite import BANK, Suite, reason_rule, rpc_error, wait_until
from tests.support import wait_serving


def _rows(engine: Engine, metadata: Any, **filters: str) -> list[Row]:
    with Session(engine) as session:
        return AuditTrail(metadata).rows(session, **filters)


def _sscard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The ``sscard`` command as operations run it, against the services' configured databases."""
    path = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "gen")])
    return subprocess.run(
        [sys.executable, "-m", "services.platform.cli", *args],
        env={**os.environ, **env, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )


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

    listed = _sscard(service_env, "audit", "list", "card", "--card", started.card_id)
    assert listed.returncode == 0, listed.stderr
    assert "Apply" in listed.stdout and person.person_id not in listed.stdout
    assert document not in listed.stdout


@pytest.fixture
def bank(start_service: Callable[..., Any]) -> Any:
    running = start_service("bank", build_bank)
    wait_serving(running.channel)
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
    intact = _sscard(service_env, "audit", "verify", "bank")
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
    inserted = _sscard(service_env, "audit", "verify", "bank")
    assert inserted.returncode == 1
    assert "lane 7 at row 5: row 5 is not the head's (inserted out of order)" in inserted.stdout
    assert _broken_lanes(inserted.stdout) == ["7"]
    with engine.begin() as conn:
        conn.execute(delete(trail).where(in_lane, trail.c.seq == 5))

    with engine.begin() as conn:
        conn.execute(update(trail).where(in_lane, trail.c.seq == 4).values(lane=3, seq=1))
    moved = _sscard(service_env, "audit", "verify", "bank")
    assert moved.returncode == 1
    assert "lane 3 at row 1: row 1 was modified" in moved.stdout
    assert "lane 7 at row 4: rows 4 to 4 were deleted" in moved.stdout
    with engine.begin() as conn:
        conn.execute(
            update(trail).where(trail.c.lane == 3, trail.c.seq == 1).values(lane=lane, seq=4)
        )

    with engine.begin() as conn:
        conn.execute(update(trail).where(in_lane, trail.c.seq == 2).values(client_id="someone"))
    modified = _sscard(service_env, "audit", "verify", "bank")
    assert modified.returncode == 1
    assert "lane 7 at row 2: row 2 was modified" in modified.stdout
    assert _broken_lanes(modified.stdout) == ["7"]

    with engine.begin() as conn:
        conn.execute(delete(trail).where(in_lane, trail.c.seq == 2))
    deleted = _sscard(service_env, "audit", "verify", "bank")
    assert deleted.returncode == 1
    assert "lane 7 at row 2: rows 2 to 2 were deleted" in deleted.stdout

    with engine.begin() as conn:
        conn.execute(delete(trail).where(in_lane, trail.c.seq >= 3))
        conn.execute(update(trail).where(trail.c.lane == 0).values(outcome="FORGED"))
    both = _sscard(service_env, "audit", "verify", "bank")
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
    verdict = _sscard(service_env, "audit", "verify", "bank")
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
