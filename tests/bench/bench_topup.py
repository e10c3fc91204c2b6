"""Benchmark: TransitService.TopUp against a bare echo built the same way, in one run.

    python -m tests.bench.bench_topup [--pg URL] [--seconds S] [--saturation N]

Starts, each as its own process: (a) the echo server of ``tests/bench/echo_server.py`` (the
platform's server, call guard and worker setup; TopUp answered with no work), (b) the real
transit service on a fresh PostgreSQL schema (SSCARD_TEST_PG_URL by default), whose every TopUp
verifies the kiosk's credential, asks the card service for the card's status, claims the
kiosk's transaction id, locks the wallet row, updates it, writes the ledger entry and the
idempotency key and commits, and (c) a stand-in card service answering every card ACTIVE.
A ``grpc.aio`` client keeps N calls in flight, each a new top-up (its own request id, one of
4,096 cards whose wallets exist, 1 yuan), and reports calls/s, p50 and p99 at saturation and
at 16 in flight, with the CPU each process spent per call at saturation. The last line is
``TopUp/echo ratio: 0.NN`` (calls/s at saturation). Without PostgreSQL, (b) is skipped and
said so.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.platform import migrations
from services.platform.auth import Channel, Role
from services.platform.config import REPO_ROOT
from services.platform.db import make_engine
from services.transit.store import wallets
from sscard.transit.v1 import transit_pb2 as pb
from sscard.transit.v1 import transit_pb2_grpc
from tests.conftest import free_port
from tests.support import wait_serving
from tests.trust import TestTrust

CARDS = 4096
LOW = 16  # calls in flight for the latency figure


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """User + system CPU time so far of a process and (``tree``) its worker processes."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/task/{pid}/children") as found:
            children = [int(c) for c in found.read().split()]
    except FileNotFoundError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / TICK
    return own + (sum(cpu_seconds(child) for child in children) if tree else 0.0)


@dataclass(frozen=True)
class Result:
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    errors: Counter[str]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _load(
    target: str,
    metadata: list[tuple[str, str]],
    in_flight: int,
    seconds: float,
    warmup: float,
    next_request: Callable[[], pb.TopUpRequest],
) -> Result:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    # One connection per 16 calls in flight (their own subchannels): with several server
    # processes on one port, the kernel spreads connections, not calls, over them.
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, in_flight // LOW))
    ]
    stubs = [transit_pb2_grpc.TransitServiceStub(channel) for channel in channels]
    try:
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + seconds

        async def worker(stub: transit_pb2_grpc.TransitServiceStub) -> None:
            while (began := time.perf_counter()) < stop_at:
                try:
                    await stub.TopUp(next_request(), metadata=metadata, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    if began >= measure_from:
                        errors[exc.code().name] += 1
                    continue
                if began >= measure_from:
                    latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(worker(stubs[i % len(stubs)]) for i in range(in_flight)))
    finally:
        for channel in channels:
            await channel.close(None)
    return Result(
        len(latencies) / seconds,
        _percentile(latencies, 0.50),
        _percentile(latencies, 0.99),
        errors,
    )


@contextmanager
def _processes(env: dict[str, str], commands: list[list[str]]) -> Iterator[dict[str, int]]:
    procs = [
        subprocess.Popen([sys.executable, "-m", *cmd], cwd=REPO_ROOT, env=env) for cmd in commands
    ]
    try:
        yield {cmd[-1]: proc.pid for cmd, proc in zip(commands, procs, strict=True)}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def _pg_schema(pg: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(pg).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    engine = make_engine(rendered)
    migrations.upgrade("transit", engine)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:  # the cards have wallets already, as kiosks mostly meet them
        conn.execute(
            wallets.insert(),
            [
                dict(
                    card_id=f"bench-card-{i}",
                    balance_fen=0,
                    status="OPEN",
                    closed_reason=None,
                    created_at=now,
                    updated_at=now,
                )
                for i in range(CARDS)
            ],
        )
    engine.dispose()
    try:
        yield rendered
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _wait(port: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        wait_serving(channel, timeout=60)


def _print(label: str, in_flight: int, result: Result) -> None:
    errors = ", ".join(f"{k} {v}" for k, v in sorted(result.errors.items())) or "none"
    print(
        f"{label:<8} {in_flight:>4} in flight: {result.calls_per_s:>7,.0f} calls/s  "
        f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  errors: {errors}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default=os.environ.get("SSCARD_TEST_PG_URL", ""))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--saturation", type=int, default=96)
    parser.add_argument("--workers", type=int, default=1, help="server processes, both servers")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sscard-bench-trust-") as keys:
        _bench(args, TestTrust(Path(keys)))


def _bench(args: argparse.Namespace, trust: TestTrust) -> None:
    env = {
        **os.environ,
        **trust.env(),
        "SSCARD_LOG_LEVEL": "WARNING",
        "SSCARD_CARD_PORT": str(free_port()),
        "SSCARD_TRANSIT_WORKERS": str(args.workers),
    }
    kiosk = trust.token(Channel.TRANSIT_OUTLET, (Role.COUNTER,), "bench-kiosk", outlet_id="K-1")
    metadata = [("authorization", f"Bearer {kiosk}")]
    run = uuid.uuid4().hex[:6]
    serial = itertools.count()
    rng = random.Random(7)

    def next_request() -> pb.TopUpRequest:
        return pb.TopUpRequest(
            request_id=f"{run}-{next(serial)}",
            card_id=f"bench-card-{rng.randrange(CARDS)}",
            amount_fen=100,
        )

    def measure(label: str, port: str, pids: dict[str, int]) -> float:
        target = f"127.0.0.1:{port}"
        pids = {**pids, "client": os.getpid()}

        def cpu(name: str) -> float:
            return cpu_seconds(pids[name], tree=name != "client")

        before = {name: cpu(name) for name in pids}
        saturated = asyncio.run(
            _load(target, metadata, args.saturation, args.seconds, args.warmup, next_request)
        )
        spent = {name: cpu(name) - before[name] for name in pids}
        _print(label, args.saturation, saturated)
        calls = saturated.calls_per_s * (args.seconds + args.warmup)
        per_call = ", ".join(f"{n} {1000 * c / calls:.2f}" for n, c in spent.items())
        print(f"{'':<8} CPU ms per call at saturation (approx.): {per_call}", flush=True)
        low = asyncio.run(_load(target, metadata, LOW, args.seconds, args.warmup, next_request))
        _print(label, LOW, low)
        return saturated.calls_per_s

    print(
        f"TopUp benchmark: one grpc.aio client process; each server {args.workers} process(es) "
        "of 8 threads; CPU per call counts every process of a server; load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    echo_env = {**env, "SSCARD_TRANSIT_PORT": str(free_port())}
    with _processes(echo_env, [["tests.bench.echo_server", "echo"]]) as pids:
        _wait(echo_env["SSCARD_TRANSIT_PORT"])
        echo = measure("echo", echo_env["SSCARD_TRANSIT_PORT"], pids)
    if not args.pg:
        print("TopUp skipped: set SSCARD_TEST_PG_URL (or --pg) for the PostgreSQL run")
        print("TopUp/echo ratio: n/a (no PostgreSQL)")
        return
    with _pg_schema(args.pg) as url:
        topup_env = {**env, "SSCARD_TRANSIT_PORT": str(free_port()), "SSCARD_TRANSIT_DB_URL": url}
        commands = [["tests.bench.echo_server", "card"], ["services.transit"]]
        with _processes(topup_env, commands) as pids:
            _wait(topup_env["SSCARD_TRANSIT_PORT"])
            topup = measure("TopUp", topup_env["SSCARD_TRANSIT_PORT"], pids)
    print(f"TopUp/echo ratio: {topup / echo:.2f}")


if __name__ == "__main__":
    main()
