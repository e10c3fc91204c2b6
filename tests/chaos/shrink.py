"""Shrinking a failing trace: delta debugging (ddmin) over its steps, faults included.

Chunks of the trace are left out while a replay of the rest still fails the same way; when no
chunk can go, the chunks halve, down to single steps; then each step alone is tried once more,
and both passes repeat until nothing more can go (a fixpoint) or the budget is spent.

A step needs what earlier steps made: a person (``P3``) an import, a card (``C5``) an
application, reissue or replacement, a retried top-up its first sending, a heal the proxy fault
before it, a restart the kill. Leaving a step out leaves out what needs it too
(``without_orphans``), so no replay is spent on a trace whose steps would only be skipped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable

from tests.chaos.workload import Step

# A replay of a candidate trace: the steps it ran when it failed the same way, else None.
Replay = Callable[[list[Step]], list[Step] | None]

_NAMED = re.compile(r"\S*\d\S*")  # a card, a person, a request, an amount
_MAKES_CARD = ("apply_online", "apply_branch", "reissue", "replace")


def kind(violation: str) -> str:
    """A violation without its ids and amounts: what a replay must show again."""
    return _NAMED.sub("#", violation)


def same_failure(wanted: str, violations: list[str]) -> bool:
    """Whether a replay shows the wanted violation again (another one alone does not count)."""
    return kind(wanted) in {kind(v) for v in violations}


def provides(step: Step) -> set[str]:
    """What later steps may need of this one."""
    op = step["op"]
    if op == "import":
        return {f"P{step['first'] + i}" for i in range(step["count"])}
    if op in _MAKES_CARD:
        return {step["slot"]}
    if op == "batch":
        return set(step["slots"])
    if op == "top_up":
        return {f"top-up s{step['n']}"}
    if op == "proxy":
        return {f"proxy {step['service']}"}
    if op == "kill":
        return {f"kill {step['service']}/{step['replica']}"}
    return set()


def needs(step: Step) -> set[str]:
    """What an earlier step must have made for this one to do anything."""
    wanted = {step["card"]} if "card" in step else set()
    wanted |= {step["person"]} if "person" in step else set()
    wanted |= set(step.get("people", ()))
    op = step["op"]
    if op == "top_up_retry":
        wanted.add(f"top-up {step['request_id']}")
    elif op == "heal":
        wanted.add(f"proxy {step['service']}")
    elif op == "restart":
        wanted.add(f"kill {step['service']}/{step['replica']}")
    return wanted


def without_orphans(trace: Iterable[Step]) -> list[Step]:
    """The trace without the steps whose prerequisites no earlier step of it provides."""
    made: set[str] = set()
    kept = []
    for step in trace:
        if needs(step) <= made:
            kept.append(step)
            made |= provides(step)
    return kept


class Shrinker:
    """Shrinks ``trace`` with ``replay`` within ``seconds`` and ``tries`` replays, printing its
    progress through ``say``."""

    def __init__(
        self,
        replay: Replay,
        seconds: float,
        tries: int,
        say: Callable[[str], None] = print,
    ) -> None:
        self._replay = replay
        self._deadline = time.monotonic() + seconds
        self._started = time.monotonic()
        self._tries_left = tries
        self._tried: set[tuple[int, ...]] = set()
        self._say = say
        self.tries = 0

    def spent(self) -> bool:
        return self._tries_left <= 0 or time.monotonic() >= self._deadline

    def shrink(self, trace: list[Step]) -> list[Step]:
        best = without_orphans(trace)
        while not self.spent():
            before = len(best)
            best = self._by_chunks(best)
            best = self._by_steps(best)
            if len(best) == before:
                break
        return best

    def _try(self, best: list[Step], leave_out: set[int]) -> list[Step] | None:
        """A replay of ``best`` without the steps numbered ``leave_out`` (and their orphans):
        the shorter trace when it still fails the same way."""
        candidate = without_orphans(s for s in best if s["n"] not in leave_out)
        key = tuple(s["n"] for s in candidate)
        if not candidate or len(candidate) == len(best) or key in self._tried or self.spent():
            return None
        self._tried.add(key)
        self._tries_left -= 1
        self.tries += 1
        ran = self._replay(candidate)
        minutes = (time.monotonic() - self._started) / 60
        self._say(
            f"  shrink try {self.tries} ({minutes:.1f} min): {len(best)} -> {len(candidate)} "
            f"steps {'still fails' if ran is not None else 'passes'}"
        )
        if ran is None:
            return None
        return without_orphans(ran) if len(ran) < len(candidate) else candidate

    def _by_chunks(self, best: list[Step]) -> list[Step]:
        chunks = 2
        while len(best) > 1 and not self.spent():
            size = -(-len(best) // chunks)
            for start in range(0, len(best), size):
                shorter = self._try(best, {s["n"] for s in best[start : start + size]})
                if shorter is not None:
                    best = shorter
                    chunks = max(chunks - 1, 2)
                    break
            else:
                if size == 1:
                    break
                chunks = min(chunks * 2, len(best))
        return best

    def _by_steps(self, best: list[Step]) -> list[Step]:
        for number in [s["n"] for s in reversed(best)]:
            if self.spent():
                break
            if any(s["n"] == number for s in best):
                shorter = self._try(best, {number})
                if shorter is not None:
                    best = shorter
        return best
