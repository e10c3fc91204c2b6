"""A seeded fault simulation of the suite: `python -m tests.chaos --seeds N [--seed S] [--ops K]
[--pg]` (`make chaos SEEDS=N`).

For each seed, a workload of the regulation's operations and a fault injector drawn from
``random.Random(seed)`` run against the four services as real processes (two card replicas on
PostgreSQL); then the suite settles and the invariants are checked (tests/chaos/invariants.py).
A violation prints the seed and the shortest trace found that still shows it: the recorded
trace is shrunk by delta debugging (tests/chaos/shrink.py), each candidate replayed on fresh
databases, within a bound of time and of replays. Exit status 1 when any seed found a violation.
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
from tests.chaos.shrink import Shrinker, same_failure
from tests.chaos.workload import FAULTS, OPERATIONS, Driver, Step, generate

FAULT_STEPS = set(FAULTS) | {"cut_db"}

CONFIRMATIONS = 3
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass
class Run:
    seed: int
    trace: list[Step]  # the steps that ran (a replay skips those whose card was never made)
    violations: list[str]
    waiting: list[str]
    seconds: float
    outcomes: dict[str, int]
    logs: Path | None  # kept when the run found a violation
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
                    step["n"] = index
                    driver.run(step)
                    recorded.append(step)
                    index += 1
        else:
            recorded = [step for step in trace if driver.run(step)]
        violations, waiting = check(driver)
        driver.close()
    finally:
        cluster.stop()
    if not violations:
        shutil.rmtree(root, ignore_errors=True)
    return Run(
        seed,
        recorded,
        violations,
        waiting,
        time.monotonic() - started,
        dict(driver.world.outcomes),
        root if violations else None,
    )


def shrink(failed: Run, ops: int, pg_url: str, seconds: float, tries: int) -> tuple[Run, int]:
    """The shortest trace found that still fails as ``failed`` did first (tests/chaos/shrink.py).
    A replay runs as ``--replay`` does, so the trace printed fails again the same way (a race
    among the services may need a few tries): the shortest, and in how many of
    ``CONFIRMATIONS`` more replays it failed so again."""
    started = time.monotonic()
    wanted = failed.violations[0]
    print(f"  shrinking for: {wanted}", flush=True)
    best = failed

    def replay(candidate: list[Step]) -> list[Step] | None:
        nonlocal best
        attempt = run(failed.seed, ops, pg_url, candidate)
        if not same_failure(wanted, attempt.violations):
            _drop_logs(attempt)
            return None
        if best is not failed:
            _drop_logs(best)
        best = attempt
        return attempt.trace

    def say(line: str) -> None:
        print(line, flush=True)

    shrinker = Shrinker(replay, seconds, tries, say)
    shrinker.shrink(failed.trace)
    print(f"  shrunk in {shrinker.tries} replays, {time.monotonic() - started:.0f}s", flush=True)
    again = 0
    for _ in range(CONFIRMATIONS):
        attempt = run(failed.seed, ops, pg_url, best.trace)
        _drop_logs(attempt)
        again += same_failure(wanted, attempt.violations)
    return best, again


def _drop_logs(result: Run) -> None:
    if result.logs is not None:
        shutil.rmtree(result.logs, ignore_errors=True)


def _print_trace(trace: list[Step]) -> None:
    """One step a line, and valid JSON for ``--replay``."""
    lines = [json.dumps(step, ensure_ascii=False) for step in trace]
    print("[\n " + ",\n ".join(lines) + "\n]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds to run")
    parser.add_argument("--seed", type=int, default=1, help="the first seed")
    parser.add_argument("--ops", type=int, default=60, help="operations per seed")
    parser.add_argument("--pg", action="store_true", help="on PostgreSQL (SSCARD_TEST_PG_URL)")
    parser.add_argument("--shrink-seconds", type=float, default=900, help="bound of shrinking")
    parser.add_argument("--shrink-tries", type=int, default=150, help="replays shrinking may use")
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
        for number, step in enumerate(trace or []):
            step.setdefault("n", number)  # a trace saved before steps carried their number
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
        print(f"  logs kept in {result.logs}", flush=True)
        shortest, again = shrink(result, args.ops, pg_url, args.shrink_seconds, args.shrink_tries)
        print(
            f"seed {seed}: shortest trace found ({len(shortest.trace)} of "
            f"{len(result.trace)} steps; failed so again in {again} of {CONFIRMATIONS} "
            "more replays) reproduces:"
        )
        for violation in shortest.violations:
            print(f"  VIOLATION {violation}")
        if shortest is not result:
            print(f"  logs kept in {shortest.logs}")
        _print_trace(shortest.trace)
        print(
            f"replay: save the trace as trace.json; python -m tests.chaos --seed {seed} "
            f"--replay trace.json{' --pg' if pg_url else ''}",
            flush=True,
        )
    print(f"fault simulation [{backend}]: {len(seeds)} seed(s), {failed} with violations")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
