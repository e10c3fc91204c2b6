"""Benchmark: does the cost of the hot paths stay flat as cards grow?

    python -m tests.bench.bench_scale [--sizes 10000,100000] [--million] [--running 1000]
        [--seconds S] [--pg URL | --sqlite]

Grows one pair of card and transit databases (PostgreSQL with SSCARD_TEST_PG_URL or --pg, else
SQLite) through the sizes with the bulk loader (``tests/bench/loader.py``: active cards as the
card service's own write path leaves them, each with its completed application saga, and a
wallet with one entry). At each size:

- with the services stopped, in this process through the card service's own repositories:
  the saga claim (``SagaRepository.claim``, 4 sagas, as a worker claims) with ``--running``
  runnable sagas among the completed ones, and the timer claim (``TimerRepository.claim_due``,
  200 timers, as the scheduler claims) with as many due timers; each claim is rolled back, so
  every sample meets the same tables; p50 and p99 of 200 claims; the runnable sagas and due
  timers are then deleted again, so the services measured next do no background work;
- then the real card and transit services started on those databases, and over gRPC from a
  ``grpc.aio`` client: ``CardService/GetCard`` and ``CardService/QueryStatus`` at 8 calls in
  flight (random loaded cards), ``TransitService/TopUp`` at 16 (each a new top-up).

Prints one table: per size and operation, calls/s (gRPC ones), p50 and p99. ``--million`` adds
1,000,000 cards (loading takes about a quarter of an hour on this machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text

from services.card.store import CardUnitOfWork, timers
from services.platform.pii import PiiCipher
from sscard.card.v1 import card_pb2, card_pb2_grpc
from tests.bench import databases, loader, measure
from tests.bench.bench_topup import NOW, load, started, topup_call
from tests.trust import TestTrust

CLAIMS = 200


def _claim_figures(sample: Callable[[], None]) -> measure.Result:
    latencies = []
    for _ in range(CLAIMS):
        began = time.perf_counter()
        sample()
        latencies.append(time.perf_counter() - began)
    return measure.Result(CLAIMS, sum(latencies), latencies)


def _add_runnable(url: str, cipher: PiiCipher, card_ids: list[str], count: int, first: int) -> None:
    """``count`` applications with their sagas due (document serials ``first`` on), and as many
    due A13.3 timers on random loaded cards."""
    rng = random.Random(first)
    with databases.opened(url) as db:
        loader.load_applications(db, cipher, count, dt.datetime.now(dt.UTC), first)
        due = NOW - dt.timedelta(days=16)
        with db.writing() as session:
            session.execute(
                timers.insert(),
                [loader.expiry_row(rng.choice(card_ids), due) for _ in range(count)],
            )


def _drop_runnable(url: str) -> None:
    """Take the runnable sagas and due timers away again, so that the card service measured
    next does no background work for them (each would fail on the absent identity service and
    be retried) and every size's claims meet exactly ``--running`` of each."""
    with databases.opened(url) as db, db.writing() as session:
        runnable = "SELECT saga_id FROM sagas WHERE state IN ('RUNNING', 'COMPENSATING')"
        session.execute(text(f"DELETE FROM saga_events WHERE saga_id IN ({runnable})"))
        session.execute(text(f"DELETE FROM sagas WHERE saga_id IN ({runnable})"))
        session.execute(text("DELETE FROM timers WHERE state = 'PENDING'"))


def _claims(url: str, cipher: PiiCipher) -> dict[str, measure.Result]:
    lease = dt.timedelta(seconds=30)
    with databases.opened(url) as db:

        def saga() -> None:
            with CardUnitOfWork(db, cipher) as uow:  # rolled back: the same rows every time
                if not uow.sagas.claim("bench", dt.datetime.now(dt.UTC), lease, 4):
                    raise RuntimeError("no runnable saga to claim")

        def timer() -> None:
            with CardUnitOfWork(db, cipher) as uow:
                now = dt.datetime.now(dt.UTC)
                if not uow.timers.claim_due("bench", NOW, now, lease, 200):
                    raise RuntimeError("no due timer to claim")

        return {"saga claim (4)": _claim_figures(saga), "timer claim (200)": _claim_figures(timer)}


def _card_call(method: str, card_ids: list[str], metadata: Any) -> Any:
    rng = random.Random(11)

    def make(channel: grpc.aio.Channel) -> Any:
        stub = card_pb2_grpc.CardServiceStub(channel)
        if method == "GetCard":
            return lambda _: stub.GetCard(
                card_pb2.GetCardRequest(card_id=rng.choice(card_ids)), metadata=metadata, timeout=10
            )
        return lambda _: stub.QueryStatus(
            card_pb2.QueryStatusRequest(card_id=rng.choice(card_ids)), metadata=metadata, timeout=10
        )

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default=os.environ.get("SSCARD_TEST_PG_URL", ""))
    parser.add_argument("--sqlite", action="store_true", help="SQLite even if PostgreSQL is set")
    parser.add_argument("--sizes", default="10000,100000", help="cards, comma-separated, rising")
    parser.add_argument("--million", action="store_true", help="add 1,000,000 cards")
    parser.add_argument("--running", type=int, default=1000, help="runnable sagas, due timers")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    pg = "" if args.sqlite else args.pg
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.million else [])
    print(
        f"Scale benchmark on {'PostgreSQL' if pg else 'SQLite'}: sizes {sizes}, "
        f"{args.running} runnable sagas and due timers; load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        flush=True,
    )
    key = os.urandom(32)
    cipher = PiiCipher(key)
    rows: list[tuple[int, str, measure.Result]] = []
    ids: list[str] = []
    serial = 0  # the next document serial: every card and application its own person
    with (
        tempfile.TemporaryDirectory(prefix="sscard-bench-trust-") as keys,
        databases.fresh(["card", "transit"], pg) as urls,
    ):
        trust = TestTrust(Path(keys))
        reader = [("authorization", f"Bearer {trust.token(caller='bench-reader')}")]
        for size in sizes:
            began = time.perf_counter()
            more = size - len(ids)
            ids += load(urls, key, more, first_serial=serial)
            serial += more
            _add_runnable(urls["card"], cipher, ids, args.running, first=serial)
            serial += args.running
            print(f"{size:,} cards loaded in {time.perf_counter() - began:.0f} s", flush=True)
            for name, result in _claims(urls["card"], cipher).items():
                rows.append((size, name, result))
            _drop_runnable(urls["card"])
            with started(urls, key, 1, trust, ids) as suite:
                pids = suite.servers.pids
                for method in ("GetCard", "QueryStatus"):
                    result = measure.load(
                        suite.target("card"),
                        _card_call(method, ids, reader),
                        8,
                        args.seconds,
                        args.warmup,
                        pids,
                    )
                    rows.append((size, f"{method} (8 in flight)", result))
                result = measure.load(
                    suite.target("transit"),
                    topup_call(ids, suite.kiosk()),
                    16,
                    args.seconds,
                    args.warmup,
                    pids,
                )
                rows.append((size, "TopUp (16 in flight)", result))
            for size_, name, result in rows[-5:]:
                print(_row(size_, name, result), flush=True)
    print("\n| cards | operation | calls/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size, name, result in rows:
        print(_row(size, name, result))


def _row(size: int, name: str, result: measure.Result) -> str:
    rate = f"{result.per_second:,.0f}" if "claim" not in name else "—"
    errors = sum(result.errors.values())
    return (
        f"| {size:,} | {name} | {rate} | {result.percentile_ms(0.5):.1f} | "
        f"{result.percentile_ms(0.99):.1f} | {errors} |"
    )


if __name__ == "__main__":
    main()
