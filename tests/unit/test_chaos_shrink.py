"""The fault simulation's shrinker (tests/chaos/shrink.py), with a replay that needs no services:
a failure that depends on a few steps of a long trace shrinks to exactly those."""

from __future__ import annotations

from collections.abc import Callable

from tests.chaos.shrink import Shrinker, same_failure, without_orphans
from tests.chaos.workload import Step


def clocks(count: int) -> list[Step]:
    """Steps that need nothing of each other."""
    return [{"op": "clock", "days": 1, "n": n} for n in range(count)]


def fails_with(*numbers: int) -> Callable[[list[Step]], list[Step] | None]:
    """A replay that fails while every step in ``numbers`` is in the trace."""

    def replay(trace: list[Step]) -> list[Step] | None:
        return trace if set(numbers) <= {s["n"] for s in trace} else None

    return replay


def numbers(trace: list[Step]) -> list[int]:
    return [s["n"] for s in trace]


def test_a_failure_needing_steps_3_and_17_of_40_shrinks_to_exactly_those() -> None:
    shrinker = Shrinker(fails_with(3, 17), seconds=60, tries=500, say=lambda _: None)

    assert numbers(shrinker.shrink(clocks(40))) == [3, 17]
    assert shrinker.tries < 60  # halving chunks, not one step at a time from the start


def test_a_failure_needing_one_step_shrinks_to_it_and_stops() -> None:
    shrinker = Shrinker(fails_with(39), seconds=60, tries=500, say=lambda _: None)

    assert numbers(shrinker.shrink(clocks(40))) == [39]


def test_a_step_keeps_what_it_needs_and_no_replay_sees_an_orphan() -> None:
    trace = clocks(30)
    trace[2] = {"op": "import", "count": 2, "settled": True, "park": False, "first": 0, "n": 2}
    trace[5] = {"op": "apply_online", "person": "P1", "slot": "C0", "pickup": "x", "n": 5}
    trace[8] = {"op": "proxy", "service": "bank", "mode": "down", "delay": 0.5, "n": 8}
    trace[9] = {"op": "top_up", "card": "C0", "yuan": 100, "resend": 0, "n": 9}
    trace[11] = {"op": "heal", "service": "bank", "n": 11}
    trace[20] = {"op": "top_up_retry", "request_id": "s9", "n": 20}
    trace[25] = {"op": "cancel_bank", "card": "C0", "n": 25}
    seen: list[list[Step]] = []

    def replay(candidate: list[Step]) -> list[Step] | None:
        seen.append(candidate)
        return fails_with(20, 25)(candidate)

    shrunk = Shrinker(replay, seconds=60, tries=500, say=lambda _: None).shrink(trace)

    assert numbers(shrunk) == [2, 5, 9, 20, 25]
    assert all(without_orphans(candidate) == candidate for candidate in seen)


def test_a_step_goes_with_what_it_needs() -> None:
    imported: Step = {"op": "import", "count": 1, "settled": True, "park": False, "first": 0}
    trace = [
        {"op": "proxy", "service": "card", "mode": "down", "delay": 0.5, "n": 0},
        {"op": "apply_branch", "person": "P0", "slot": "C0", "pickup": "x", "n": 1},
        {"op": "heal", "service": "card", "n": 2},
        {"op": "activate", "card": "C0", "n": 3},
        {"op": "restart", "service": "transit", "replica": 0, "n": 4},
    ]

    assert numbers(without_orphans([{**imported, "n": 9}, *trace])) == [9, 0, 1, 2, 3]
    assert numbers(without_orphans(trace)) == [0, 2]  # no person, no card: the fault alone


def test_a_replay_that_fails_differently_does_not_count() -> None:
    wanted = "money: closed wallet card-1ccd636a holds 30000 fen"

    assert same_failure(wanted, ["money: closed wallet card-9f00aa holds 100 fen"])
    assert not same_failure(wanted, ["money: 1000 fen left the wallets, 2000 fen arrived"])
    assert not same_failure(wanted, [])


def test_the_budget_of_replays_bounds_the_shrinking() -> None:
    shrinker = Shrinker(fails_with(3, 17), seconds=60, tries=5, say=lambda _: None)

    shrunk = shrinker.shrink(clocks(40))

    assert shrinker.tries == 5
    assert {3, 17} <= set(numbers(shrunk))
