"""The audit trail: every state-changing call leaves a hash-chained row in its service's
database (README, "Audit trail"), and tampering with the rows shows on ``sscard audit verify``."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import pytest
from sqlalchemy import Engine, delete, update
from sqlalchemy.orm import Session

from services.bank import store as bank_store
from services.bank.main import build as build_bank
from services.platform.audit import OK, AuditTrail, Row, digest
from services.platform.auth import Channel, Role
from services.platform.config import REPO_ROOT
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc
from tests.cardsuite import BANK, Suite, reason_rule, rpc_error
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


def _upsert(bank: Any, token: Any, request_id: str, branch_id: str) -> None:
    bank_pb2_grpc.BankServiceStub(bank.channel).UpsertBranch(
        bank_pb2.UpsertBranchRequest(
            request_id=request_id,
            branch=bank_pb2.Branch(bank_code=BANK, branch_id=branch_id, name=branch_id),
        ),
        metadata=token,
    )


def test_audit_a_changed_or_deleted_row_is_found_by_verify(
    bank: Any, token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    """Appending a row behind the head's back, editing one field of a row, or deleting rows
    breaks the chain at that row."""
    ops = token(roles=(Role.OPS,), caller="ops")
    for i in range(4):
        _upsert(bank, ops, f"branch-{i}", f"ICBC-01{i:02d}")
    intact = _sscard(service_env, "audit", "verify", "bank")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "4 rows" in intact.stdout

    trail = bank_store.metadata.tables["audit_trail"]
    engine = bank.deps.db.engine
    fourth = _rows(engine, bank_store.metadata)[-1]
    forged = replace(fourth.item, request_id="forged")
    with engine.begin() as conn:
        conn.execute(
            trail.insert(),
            {
                **asdict(forged),
                "seq": 5,
                "prev_hash": fourth.hash,
                "hash": digest(5, fourth.hash, forged),
            },
        )
    inserted = _sscard(service_env, "audit", "verify", "bank")
    assert inserted.returncode == 1
    assert "row 5 is not the head's (inserted out of order)" in inserted.stdout
    with engine.begin() as conn:
        conn.execute(delete(trail).where(trail.c.seq == 5))

    with engine.begin() as conn:
        conn.execute(update(trail).where(trail.c.seq == 2).values(client_id="someone-else"))
    modified = _sscard(service_env, "audit", "verify", "bank")
    assert modified.returncode == 1
    assert "row 2 was modified" in modified.stdout

    with engine.begin() as conn:
        conn.execute(delete(trail).where(trail.c.seq == 2))
    deleted = _sscard(service_env, "audit", "verify", "bank")
    assert deleted.returncode == 1
    assert "rows 2 to 2 were deleted" in deleted.stdout

    with engine.begin() as conn:
        conn.execute(delete(trail).where(trail.c.seq >= 3))
    truncated = _sscard(service_env, "audit", "verify", "bank")
    assert truncated.returncode == 1
    assert "rows 2 to 4 were deleted" in truncated.stdout


def test_audit_concurrent_writers_never_fork_the_chain(
    bank: Any, token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    """8 writers x 50 calls at once: one chain of 400 rows, each following the one before."""
    ops = token(roles=(Role.OPS,), caller="ops")

    def writer(w: int) -> None:
        for i in range(50):
            _upsert(bank, ops, f"w{w}-{i}", f"ICBC-{w}{i:03d}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    verdict = _sscard(service_env, "audit", "verify", "bank")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "intact, 400 rows" in verdict.stdout
