"""Benchmark: TransitService.TopUp against a bare gRPC echo and the project's echo, in one run.

    python -m tests.bench.bench_topup [--pg URL | --sqlite] [--workers 1,2] [--seconds S]
        [--warmup S] [--cards N]

For each process count K in ``--workers`` (processes per service, sharing one port), starts:
(a) the bare echo (``echo_server bare``: plain ``grpc.server``, 8 threads, no guard), (b) the
project's echo (``echo_server echo``: the platform's server bootstrap, its call guard verifying
the kiosk's credential, TopUp answered with no work), (c) the real card service and the real
transit service on fresh databases (PostgreSQL with SSCARD_TEST_PG_URL or --pg, else SQLite)
holding N active cards with wallets (``tests/bench/loader.py``). Every TopUp of (c) verifies
the kiosk's credential, asks the card service for the card's status (which verifies the transit
service's credential and reads the card), claims the request id, credits the wallet, books the
entry and the idempotency key, and commits.

Each server is driven by the same ``grpc.aio`` client (this process; every call a new top-up:
its own request id, a random loaded card, 1 yuan) at 16 and at 96 calls in flight, and the two
echoes also by ``h2load`` (compiled; one prebuilt request). Printed per run: calls/s, p50, p99,
errors, CPU ms per call of each process (from /proc, server processes with their workers), and
resident memory of each service idle and at its peak under load. With PostgreSQL, ``pgbench``
runs the top-up's SQL transaction (``tests/bench/topup.pgbench``) with 8 clients. The last lines
are ``TopUp/echo ratio`` (TopUp vs the bare echo, same client, 16 in flight, one process per
service) and ``TopUp/pgbench ratio`` (the same TopUp figure vs pgbench's transactions/s).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy.engine import make_url

from services.platform.auth import Channel, Role
from services.platform.pii import PiiCipher
from sscard.transit.v1 import transit_pb2 as pb
from sscard.transit.v1 import transit_pb2_grpc
from tests.bench import databases, loader, measure
from tests.conftest import free_port
from tests.support import wait_serving
from tests.trust import TestTrust

LEVELS = (16, 96)  # calls in flight
PGBENCH_CLIENTS = 8
PGBENCH_SCRIPT = Path(__file__).with_name("topup.pgbench")
NOW = loader.dt.datetime(2026, 11, 23, 2, 0, tzinfo=loader.dt.UTC)


@dataclass
class Suite:
    """The real card and transit services, running, on loaded databases."""

    servers: measure.Servers
    env: dict[str, str]
    trust: TestTrust
    card_ids: list[str]
    urls: dict[str, str]
    cipher: PiiCipher

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.env[f'SSCARD_{service.upper()}_PORT']}"

    def kiosk(self) -> list[tuple[str, str]]:
        token = self.trust.token(
            Channel.TRANSIT_OUTLET, (Role.COUNTER,), "bench-kiosk", outlet_id="K-1"
        )
        return [("authorization", f"Bearer {token}")]


def base_env(trust: TestTrust, workers: int) -> dict[str, str]:
    # One load generator stands for many kiosks: the per-client admission limit (32 calls in
    # flight) is raised above the highest level, still checked on every call.
    env = {
        **os.environ,
        **trust.env(),
        "SSCARD_LOG_LEVEL": "ERROR",
        "SSCARD_CLIENT_MAX_CALLS": str(2 * max(LEVELS)),
    }
    for name in ("identity", "card", "bank", "transit"):
        env[f"SSCARD_{name.upper()}_PORT"] = str(free_port())
        env[f"SSCARD_{name.upper()}_METRICS_PORT"] = str(free_port())
        env[f"SSCARD_{name.upper()}_WORKERS"] = str(workers)
    return env


@contextlib.contextmanager
def card_and_transit(pg: str, workers: int, cards: int, trust: TestTrust) -> Iterator[Suite]:
    """Fresh databases with ``cards`` loaded cards, the card and transit services started."""
    key = os.urandom(32)
    with databases.fresh(["card", "transit"], pg) as urls:
        ids = load(urls, key, cards)
        with started(urls, key, workers, trust, ids) as suite:
            yield suite


def load(urls: dict[str, str], key: bytes, cards: int, first_serial: int = 0) -> list[str]:
    """``cards`` more active cards with wallets in the card and transit databases."""
    with databases.opened(urls["card"]) as card_db, databases.opened(urls["transit"]) as tdb:
        ids = loader.load_cards(card_db, PiiCipher(key), cards, NOW, first_serial)
        loader.load_wallets(tdb, ids, NOW)
    return ids


@contextlib.contextmanager
def started(
    urls: dict[str, str], key: bytes, workers: int, trust: TestTrust, card_ids: list[str]
) -> Iterator[Suite]:
    """The card and transit services on these databases, until the ``with`` ends."""
    env = base_env(trust, workers)
    env["SSCARD_CARD_PII_KEY"] = base64.b64encode(key).decode()
    env["SSCARD_CARD_DB_URL"] = urls["card"]
    env["SSCARD_TRANSIT_DB_URL"] = urls["transit"]
    with measure.Servers(env) as servers:
        suite = Suite(servers, env, trust, card_ids, urls, PiiCipher(key))
        servers.start("card", "services.card")
        servers.start("transit", "services.transit")
        for name in ("card", "transit"):
            with grpc.insecure_channel(suite.target(name)) as channel:
                wait_serving(channel, timeout=measure.STARTUP_SECONDS)
        yield suite


def topup_call(card_ids: list[str], metadata: list[tuple[str, str]]) -> Any:
    """A fresh top-up per call: its own request id, a random card, 1 yuan."""
    run = uuid.uuid4().hex[:8]
    serial = iter(range(1 << 62))
    rng = random.Random(7)

    def make(channel: grpc.aio.Channel) -> Any:
        stub = transit_pb2_grpc.TransitServiceStub(channel)

        def call(_: object) -> Any:
            request = pb.TopUpRequest(
                request_id=f"{run}-{next(serial)}",
                card_id=rng.choice(card_ids),
                amount_fen=100,
            )
            return stub.TopUp(request, metadata=metadata, timeout=10)

        return call

    return make


def _rss_line(label: str, idle: dict[str, float], loaded: dict[str, float]) -> str:
    parts = [f"{n} {idle[n]:.0f} -> {loaded[n]:.0f}" for n in idle]
    return f"{'':<34} RSS MiB idle -> peak under load: {', '.join(parts)}"


def _idle_rss(pids: dict[str, int]) -> dict[str, float]:
    return {name: measure.rss_kib(pid) / 1024 for name, pid in pids.items()}


def _run_echoes(
    args: argparse.Namespace, trust: TestTrust, workers: int, card_ids: list[str]
) -> dict[str, float]:
    """Both echoes, aio client and h2load; calls/s by label."""
    figures: dict[str, float] = {}
    env = base_env(trust, workers)
    kiosk = [
        (
            "authorization",
            "Bearer "
            + trust.token(Channel.TRANSIT_OUTLET, (Role.COUNTER,), "bench-kiosk", outlet_id="K-1"),
        )
    ]
    body = measure.grpc_body(pb.TopUpRequest(request_id="h2", card_id=card_ids[0], amount_fen=100))
    for kind in ("bare", "echo"):
        with measure.Servers(env) as servers:
            if kind == "bare":  # K plain processes on one port
                for i in range(workers):
                    servers.start(f"bare{i}", "tests.bench.echo_server", "bare")
            else:
                servers.start("echo", "tests.bench.echo_server", "echo")
            target = f"127.0.0.1:{env['SSCARD_TRANSIT_PORT']}"
            measure.wait_ready(target)
            if kind == "echo":
                with grpc.insecure_channel(target) as channel:
                    wait_serving(channel, timeout=measure.STARTUP_SECONDS)
            pids = servers.pids
            idle = _idle_rss(pids)
            label = f"{'bare' if kind == 'bare' else 'project'} echo, {workers} proc"
            for level in LEVELS:
                result = measure.load(
                    target, topup_call(card_ids, kiosk), level, args.seconds, args.warmup, pids
                )
                print(result.line(f"{label}, aio client", level), flush=True)
                print(_rss_line("", idle, result.rss_mib), flush=True)
                figures[f"{kind} aio {level}"] = result.per_second
            if measure.h2load_available():
                url = f"http://{target}/sscard.transit.v1.TransitService/TopUp"
                for level in LEVELS:
                    result = measure.h2load(
                        url, body, kiosk, level, int(args.seconds), int(args.warmup), pids
                    )
                    print(result.line(f"{label}, h2load", level), flush=True)
                    figures[f"{kind} h2load {level}"] = result.per_second
            else:
                print("h2load not installed (apt-get install nghttp2-client): skipped")
    return figures


def _run_topup(args: argparse.Namespace, pg: str, workers: int, trust: TestTrust) -> float:
    """TopUp against the real card and transit services; calls/s at 16 in flight."""
    with card_and_transit(pg, workers, args.cards, trust) as suite:
        pids = suite.servers.pids
        idle = _idle_rss(pids)
        at_16 = 0.0
        for level in LEVELS:
            result = measure.load(
                suite.target("transit"),
                topup_call(suite.card_ids, suite.kiosk()),
                level,
                args.seconds,
                args.warmup,
                pids,
            )
            print(result.line(f"TopUp, {workers} proc per service", level), flush=True)
            print(_rss_line("", idle, result.rss_mib), flush=True)
            if level == LEVELS[0]:
                at_16 = result.per_second
        return at_16


def pgbench(pg: str, seconds: int, cards: int) -> float:
    """Transactions/s of ``topup.pgbench`` with 8 clients on a fresh transit schema."""
    with databases.fresh(["transit"], pg) as urls:
        with databases.opened(urls["transit"]) as db:
            loader.load_wallets(db, [f"pgb-{i}" for i in range(cards)], NOW)
        url = make_url(urls["transit"])
        env = {**os.environ, "PGOPTIONS": str(url.query["options"])}
        if url.password:
            env["PGPASSWORD"] = str(url.password)
        command = [
            "pgbench", "-n", "-c", str(PGBENCH_CLIENTS), "-j", "2", "-T", str(seconds),
            "-f", str(PGBENCH_SCRIPT), "-D", f"cards={cards}",
            "-h", url.host or "localhost", "-p", str(url.port or 5432),
            "-U", url.username or "postgres", url.database or "postgres",
        ]  # fmt: skip
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    found = re.search(r"tps = ([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"pgbench printed no tps:\n{out}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default=os.environ.get("SSCARD_TEST_PG_URL", ""))
    parser.add_argument("--sqlite", action="store_true", help="SQLite even if PostgreSQL is set")
    parser.add_argument("--workers", default="1,2", help="processes per service, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--cards", type=int, default=4096)
    args = parser.parse_args()
    pg = "" if args.sqlite else args.pg
    counts = [int(w) for w in args.workers.split(",")]
    print(
        f"TopUp benchmark on {'PostgreSQL' if pg else 'SQLite'}: {args.cards} cards; "
        f"{args.warmup:g} s warm-up, {args.seconds:g} s measured per line; load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        flush=True,
    )
    topup: dict[int, float] = {}
    echo: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sscard-bench-trust-") as keys:
        trust = TestTrust(Path(keys))
        for workers in counts:
            echo[workers] = _run_echoes(args, trust, workers, ["card-echo"])
            topup[workers] = _run_topup(args, pg, workers, trust)
    tps = pgbench(pg, int(args.seconds), args.cards) if pg else 0.0
    if pg:
        print(f"pgbench, the top-up's SQL, {PGBENCH_CLIENTS} clients: {tps:,.0f} transactions/s")
    first = counts[0]
    for workers in counts:
        bare = echo[workers]["bare aio 16"]
        print(
            f"{workers} proc: TopUp {topup[workers]:,.0f}/s vs bare echo {bare:,.0f}/s and "
            f"project echo {echo[workers]['echo aio 16']:,.0f}/s (aio client, 16 in flight)"
        )
    print(f"TopUp/echo ratio: {topup[first] / echo[first]['bare aio 16']:.2f}")
    print(f"TopUp/pgbench ratio: {topup[first] / tps:.2f}" if pg else "TopUp/pgbench ratio: n/a")


if __name__ == "__main__":
    main()
