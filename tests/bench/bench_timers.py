"""Benchmark: 100,000 deadlines due at once, worked through by the card service's scheduler.

    python -m tests.bench.bench_timers [--timers N] [--pg URL] [--replicas K]

Creates the timers in a fresh PostgreSQL schema (SSCARD_TEST_PG_URL by default), each firing a
real handler (the A13.3 loss expiry on a card that is no longer lost, so the handler reads the
card and records its outcome), then runs K scheduler replicas in threads until none is due.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from typing import Any, cast

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.card.clients import BankPort
from services.card.deadlines import TEMPORARY_LOSS_EXPIRY, handlers
from services.card.scheduler import Scheduler, new_timer
from services.card.store import CardUnitOfWork, timers
from services.platform import migrations
from services.platform.clock import ManualClock
from services.platform.db import Database, make_engine
from services.platform.pii import PiiCipher


class _NoBank:
    """The bank, which a temporary loss's expiry (the only timer here) never calls."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the benchmark's timers should not call the bank ({name})")


_NO_BANK = cast(BankPort, _NoBank())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--pg", default=os.environ.get("SSCARD_TEST_PG_URL", ""))
    args = parser.parse_args()
    if not args.pg:
        raise SystemExit("set SSCARD_TEST_PG_URL or pass --pg")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(args.pg).update_query_dict({"options": f"-csearch_path={schema}"})
    db = Database(make_engine(url.render_as_string(hide_password=False)))
    try:
        migrations.upgrade("card", db.engine)
        clock = ManualClock()
        now = clock.now()
        rows = []
        for i in range(args.timers):
            t = new_timer(TEMPORARY_LOSS_EXPIRY, f"card-{i}", "A13.3", now)
            rows.append(
                {
                    "timer_id": t.timer_id,
                    "kind": t.kind,
                    "target": t.target,
                    "rule": t.rule,
                    "due_at": t.due_at,
                    "state": "PENDING",
                    "outcome": "",
                    "attempts": 0,
                    "lease_owner": "",
                    "lease_until": None,
                    "created_at": now,
                    "fired_at": None,
                }
            )
        with db.writing() as session:
            session.execute(timers.insert(), rows)
        cipher = PiiCipher(os.urandom(32))
        replicas = [
            Scheduler(lambda: CardUnitOfWork(db, cipher), clock, handlers(clock, _NO_BANK))
            for _ in range(args.replicas)
        ]
        started = time.perf_counter()

        def drain(scheduler: Scheduler) -> None:
            while scheduler.fire_due():
                pass

        threads = [threading.Thread(target=drain, args=(s,)) for s in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        with db.reader() as session:
            fired = session.execute(
                text("SELECT count(*) FROM timers WHERE state = 'FIRED'")
            ).scalar_one()
        print(
            f"{fired} of {args.timers} timers fired by {args.replicas} replicas in "
            f"{elapsed:.1f} s ({fired / elapsed:.0f}/s)"
        )
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
