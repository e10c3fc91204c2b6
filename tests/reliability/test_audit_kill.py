"""The audit trail survives a kill -9: a card service killed while applications are being
written leaves every lane of its trail intact, and the retried calls chain on after it; the
anchors it writes outside the database, on schedule and when it stops, still verify."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import signal
import subprocess

import grpc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.card import store as card_store
from services.platform.audit import AuditTrail
from services.platform.db import make_engine
from tests.cardsuite import wait_until
from tests.reliability.deployment import Deployment, killed
from tests.support import sscard


def _verify_with_anchors(deployment: Deployment) -> subprocess.CompletedProcess[str]:
    anchors = str(deployment.trust.anchor_file("card"))
    return sscard(deployment.env, "audit", "verify", "card", "--anchors", anchors)


def _last_anchor(deployment: Deployment) -> list[list[object]]:
    lines = deployment.trust.anchor_file("card").read_text().splitlines()
    return list(json.loads(lines[-1])["heads"]) if lines else []


def test_audit_a_card_service_killed_mid_write_leaves_every_lane_intact(
    deployment: Deployment,
) -> None:
    people = deployment.people(12)
    deployment.env["SSCARD_AUDIT_ANCHOR_SECONDS"] = "0.2"  # anchors written while it is killed
    engine = make_engine(deployment.env["SSCARD_CARD_DB_URL"], pool_size=1)
    trail = AuditTrail(card_store.metadata)

    def rows() -> int:
        with Session(engine) as session:
            return int(session.execute(select(func.count()).select_from(trail.trail)).scalar_one())

    def heads() -> list[list[object]]:
        with Session(engine) as session:
            return [list(head) for head in trail.heads(session)]

    try:
        proc, card = deployment.card_process()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            calls = [pool.submit(deployment.apply, card, person) for person in people]
            wait_until(lambda: rows() >= 3)  # writes are committing: kill the process now
            proc.kill()
            killed(proc)
            for call in calls:  # cut off by the kill: retried below under the same request id
                with contextlib.suppress(grpc.RpcError):
                    call.result()
        _, card = deployment.card_process()
        card_ids = [deployment.apply(card, person) for person in people]
        deployment.settle(card, card_ids)
        with Session(engine) as session:
            verdict = trail.verify(session)
            applied = {r.item.card_id for r in trail.rows(session) if r.item.method == "Apply"}
        assert verdict.intact, verdict.breaks
        assert applied == set(card_ids)
        wait_until(lambda: _last_anchor(deployment) == heads())  # the schedule caught up
        checked = _verify_with_anchors(deployment)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "torn" not in checked.stdout
    finally:
        engine.dispose()


def test_audit_a_card_service_anchors_its_last_writes_when_it_stops(
    deployment: Deployment,
) -> None:
    """With no periodic anchor due, a SIGTERM still anchors every row the service wrote, once
    its last calls have finished."""
    people = deployment.people(3)
    deployment.env["SSCARD_AUDIT_ANCHOR_SECONDS"] = "3600"
    deployment.env["SSCARD_DRAIN_SECONDS"] = "0"
    engine = make_engine(deployment.env["SSCARD_CARD_DB_URL"], pool_size=1)
    trail = AuditTrail(card_store.metadata)
    try:
        proc, card = deployment.card_process()
        wait_until(lambda: len(_last_anchor(deployment)) == 16)  # the one it started with
        assert all(seq == 0 for _, seq, _ in _last_anchor(deployment))
        for person in people:
            deployment.apply(card, person)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        with Session(engine) as session:
            written = [list(head) for head in trail.heads(session)]
        assert sum(int(seq) for _, seq, _ in written) >= len(people)
        assert _last_anchor(deployment) == written
        checked = _verify_with_anchors(deployment)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "2 anchors hold" in checked.stdout
    finally:
        engine.dispose()
