"""A seeded fault simulation of the suite: `python -m tests.chaos --seeds N [--seed S] [--ops K]
[--pg]` (`make chaos SEEDS=N`).

For each seed, a workload of the regulation's operations and a fault injector drawn from
``random.Random(seed)`` run against the four services as real processes (two card replicas on
PostgreSQL); then the suite settles and the invariants are checked (tests/chaos/invariants.py).
A violation prints the seed and the shortest trace found that still shows it: the recorded
trace is shrunk by dropping chunks of steps and running again while the violation persists,
within a time bound. Exit status 1 when any seed found a violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.cluster import Cluster
from tests.chaos.invariants import check
from tests.chaos.workload import FAULTS, OPERATIONS, Driver, Step, generate

FAULT_STEPS = set(FAULTS) | {"cut_db"}

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass
class Run:
    seed: int
    trace: list[Step]
    violations: list[str]
    waiting: list[str]
    seconds: float
    outcomes: dict[str, int]
    faults: int = field(init=False)
    operations: int = field(init=False)

    def __post_init__(self) -> None:
        kinds = [step["op"] for step in self.trace]
        self.faults = sum(k in FAULT_STEPS for k in kinds)
        self.operations = len(kinds) - self.faults - sum(k in ("restart", "heal") for k in kinds)


def run(seed: int, ops: int, pg_url: str, trace: list[Step] | None = None) -> Run:
    """One run on fresh databases: draw ``ops`` operations from the seed (or replay
    ``trace``), settle, check."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"chaos-{seed}-"))
    for attempt in range(3):
        try:
            cluster = Cluster(root / str(attempt), pg_url, card_replicas=2)
            break
        except TimeoutError:
            if attempt == 2:
                raise
    recorded: list[Step] = []
    try:
        driver = Driver(cluster)
        if trace is None:
            rng = random.Random(seed)
            index = 0
            while sum(s["op"] in OPERATIONS for s in recorded) < ops:
                for step in generate(rng, driver.world, index, cluster):
                    driver.run(step, index)
                    recorded.append(step)
                    index += 1
        else:
            for index, step in enumerate(trace):
                driver.run(step, index)
                recorded.append(step)
        violations, waiting = check(driver)
        driver.close()
    finally:
        cluster.stop()
    if not violations:
        shutil.rmtree(root, ignore_errors=True)
    else:
        violations.append(f"(logs kept in {root})")
    return Run(
        seed, recorded, violations, waiting, time.monotonic() - started, dict(driver.world.outcomes)
    )


def _key(violations: list[str]) -> set[str]:
    """What a violation is about (its check and its first words), to compare runs by."""
    return {" ".join(v.split()[:2]) for v in violations if not v.startswith("(logs")}


def shrink(failed: Run, ops: int, pg_url: str, budget: float) -> Run:
    """Delta debugging: drop chunks of the trace while a run of the rest still fails the same
    way; halve the chunks when no chunk can go; stop at single steps or at the time bound."""
    wanted = _key(failed.violations)
    best = failed
    chunks = 2
    deadline = time.monotonic() + budget
    while len(best.trace) > 1 and time.monotonic() < deadline:
        size = max(1, len(best.trace) // chunks)
        removed = False
        for start in range(0, len(best.trace), size):
            if time.monotonic() > deadline:
                break
            candidate = best.trace[:start] + best.trace[start + size :]
            attempt = run(failed.seed, ops, pg_url, candidate)
            print(f"  shrink: {len(candidate)} steps -> {len(attempt.violations)} violation(s)")
            if _key(attempt.violations) & wanted:
                best, removed = attempt, True
                break
        if removed:
            chunks = max(chunks - 1, 2)
        elif size == 1:
            break
        else:
            chunks = min(chunks * 2, len(best.trace))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds to run")
    parser.add_argument("--seed", type=int, default=1, help="the first seed")
    parser.add_argument("--ops", type=int, default=60, help="operations per seed")
    parser.add_argument("--pg", action="store_true", help="on PostgreSQL (SSCARD_TEST_PG_URL)")
    parser.add_argument("--shrink-seconds", type=float, default=900, help="bound of shrinking")
    parser.add_argument("--verbose", action="store_true", help="print the answers' tally")
    parser.add_argument("--replay", type=Path, help="run a trace printed by a failed run")
    args = parser.parse_args(argv)
    # Stopped with SIGTERM (a run split or cut short): stop the seed's services on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pg_url = (os.environ.get("SSCARD_TEST_PG_URL", "").strip() or DEFAULT_PG_URL) if args.pg else ""
    backend = "postgresql" if pg_url else "sqlite"
    failed = 0
    seeds = range(args.seed, args.seed + args.seeds)
    for seed in seeds:
        trace = json.loads(args.replay.read_text()) if args.replay else None
        result = run(seed, args.ops, pg_url, trace)
        print(
            f"seed {seed} [{backend}]: {result.operations} operations, {result.faults} faults, "
            f"{len(result.violations)} violation(s), {len(result.waiting)} waiting, "
            f"{result.seconds:.0f}s",
            flush=True,
        )
        if args.verbose:
            for outcome, count in sorted(result.outcomes.items()):
                print(f"  {count:4d} {outcome}")
        for waiting in result.waiting:
            print(f"  waits for an operator: {waiting}")
        if not result.violations:
            continue
        failed += 1
        for violation in result.violations:
            print(f"  VIOLATION {violation}")
        shortest = shrink(result, args.ops, pg_url, args.shrink_seconds)
        print(f"seed {seed}: shortest trace found ({len(shortest.trace)} steps) reproduces:")
        for violation in shortest.violations:
            print(f"  VIOLATION {violation}")
        print(json.dumps(shortest.trace, ensure_ascii=False, indent=1))
        print(
            f"replay: save the trace as trace.json; python -m tests.chaos --seed {seed} "
            f"--replay trace.json{' --pg' if pg_url else ''}",
            flush=True,
        )
    print(f"fault simulation [{backend}]: {len(seeds)} seed(s), {failed} with violations")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
