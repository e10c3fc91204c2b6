"""The audit trail survives a kill -9: a card service killed while applications are being
written leaves every lane of its trail intact, and the retried calls chain on after it."""

from __future__ import annotations

import concurrent.futures
import contextlib

import grpc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.card import store as card_store
from services.platform.audit import AuditTrail
from services.platform.db import make_engine
from tests.cardsuite import wait_until
from tests.reliability.deployment import Deployment, killed


def test_audit_a_card_service_killed_mid_write_leaves_every_lane_intact(
    deployment: Deployment,
) -> None:
    people = deployment.people(12)
    engine = make_engine(deployment.env["SSCARD_CARD_DB_URL"], pool_size=1)
    trail = AuditTrail(card_store.metadata)

    def rows() -> int:
        with Session(engine) as session:
            return int(session.execute(select(func.count()).select_from(trail.trail)).scalar_one())

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
    finally:
        engine.dispose()
