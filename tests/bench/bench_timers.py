"""Benchmark: 100,000 deadlines due at once, worked through by the card service's scheduler.

    python -m tests.bench.bench_timers [--timers N] [--replicas K] [--pg URL | --sqlite]

Loads N real cards (``tests/bench/loader.py``: active cards as the card service's own write
path leaves them), each reported temporarily lost 16 days ago with its A13.3 expiry timer, on a
fresh database (PostgreSQL schema when SSCARD_TEST_PG_URL or --pg is given, else SQLite). Then
K scheduler replicas, in threads of this process, fire the real handlers until none is due:
each reads its card, restores the SS function (A13.3), records the transition and the notice
to the holder, and marks the timer fired. Prints the time taken and the rate, and checks that
every card was restored.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import threading
import time
from typing import Any, cast

from sqlalchemy import text

from services.card.clients import BankPort
from services.card.deadlines import handlers
from services.card.scheduler import Scheduler
from services.card.store import CardUnitOfWork
from services.platform.clock import ManualClock
from services.platform.pii import PiiCipher
from tests.bench import databases, loader


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
    parser.add_argument("--sqlite", action="store_true", help="SQLite even if PostgreSQL is set")
    args = parser.parse_args()
    pg = "" if args.sqlite else args.pg
    clock = ManualClock()
    applied = clock.now() - dt.timedelta(days=60)
    lost_at = clock.now() - dt.timedelta(days=16)
    cipher = PiiCipher(os.urandom(32))
    with databases.fresh(["card"], pg) as urls, databases.opened(urls["card"]) as db:
        started = time.perf_counter()
        loader.load_cards(db, cipher, args.timers, applied, lost_at=lost_at)
        print(
            f"timers on {'PostgreSQL' if pg else 'SQLite'}: {args.timers} real cards lost 16 days "
            f"ago loaded in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
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
            restored = session.execute(
                text("SELECT count(*) FROM cards WHERE status = 'ACTIVE'")
            ).scalar_one()
        print(
            f"{fired} of {args.timers} timers fired by {args.replicas} replicas in "
            f"{elapsed:.1f} s ({fired / elapsed:.0f}/s); {restored} cards active again",
            flush=True,
        )
        if fired != args.timers or restored != args.timers:
            raise SystemExit("not every timer fired or not every card was restored")


if __name__ == "__main__":
    main()
