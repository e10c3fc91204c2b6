"""Benchmark: resident memory of the card and transit services under TopUp at saturation.

    python -m tests.bench.bench_soak [--minutes 10] [--in-flight 96] [--cards N]
        [--pg URL | --sqlite]

Starts the real card and transit services on fresh databases holding N loaded cards
(``tests/bench/loader.py``), reads each service's resident memory (VmRSS of the process and its
workers, /proc) idle, then keeps ``--in-flight`` top-ups going from a ``grpc.aio`` client for
the given minutes, printing every 10 s the calls/s of that interval and each service's RSS.
At the end it compares the last third of the samples with the first third after warm-up (the
first minute): a service whose RSS grew by more than 10% is reported ``GREW``, else ``flat``.
A figure, not a test: nothing fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.bench import measure
from tests.bench.bench_topup import card_and_transit, topup_call
from tests.trust import TestTrust

INTERVAL = 10.0  # seconds between samples
WARMUP_SAMPLES = 6  # the first minute: caches, pools and the allocator settle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default=os.environ.get("SSCARD_TEST_PG_URL", ""))
    parser.add_argument("--sqlite", action="store_true", help="SQLite even if PostgreSQL is set")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=96)
    parser.add_argument("--cards", type=int, default=4096)
    args = parser.parse_args()
    pg = "" if args.sqlite else args.pg
    with tempfile.TemporaryDirectory(prefix="sscard-bench-trust-") as keys:
        trust = TestTrust(Path(keys))
        with card_and_transit(pg, 1, args.cards, trust) as suite:
            pids = suite.servers.pids
            idle = {name: measure.rss_kib(pid) / 1024 for name, pid in pids.items()}
            print(
                f"Soak on {'PostgreSQL' if pg else 'SQLite'}: TopUp at {args.in_flight} in "
                f"flight for {args.minutes:g} min; idle RSS MiB: "
                + ", ".join(f"{n} {v:.0f}" for n, v in idle.items()),
                flush=True,
            )
            samples: list[dict[str, float]] = []
            rates: list[float] = []
            errors: Counter[str] = Counter()
            latencies: list[float] = []
            make = topup_call(suite.card_ids, suite.kiosk())
            began = time.perf_counter()
            while time.perf_counter() - began < args.minutes * 60:
                done = asyncio.run(
                    measure.run_for(
                        suite.target("transit"), make, args.in_flight, INTERVAL, errors, latencies
                    )
                )
                rates.append(done / INTERVAL)
                samples.append({n: measure.rss_kib(p) / 1024 for n, p in pids.items()})
                print(
                    f"{time.perf_counter() - began:6.0f} s  {rates[-1]:7,.0f} calls/s  RSS MiB: "
                    + ", ".join(f"{n} {v:.0f}" for n, v in samples[-1].items()),
                    flush=True,
                )
    _verdict(samples, rates, errors)


def _verdict(samples: list[dict[str, float]], rates: list[float], errors: Counter[str]) -> None:
    settled = samples[WARMUP_SAMPLES:] if len(samples) > 2 * WARMUP_SAMPLES else samples
    third = max(1, len(settled) // 3)
    print(f"errors: {dict(errors) or 'none'}")
    for name in settled[0]:
        early = sum(s[name] for s in settled[:third]) / third
        late = sum(s[name] for s in settled[-third:]) / third
        growth = (late - early) / early
        verdict = "GREW" if growth > 0.10 else "flat"
        print(f"{name}: RSS {early:.0f} -> {late:.0f} MiB ({growth:+.1%}) over the run: {verdict}")
    mean = sum(rates) / len(rates)
    print(f"calls/s: first {rates[0]:,.0f}, last {rates[-1]:,.0f}, mean {mean:,.0f}")


if __name__ == "__main__":
    main()
