"""The saga orchestrator: fake remote services, a real SQLite file for the saga store.

The test saga runs remote step "a" (compensated), local step "mark", remote step "b"
(compensated) and remote step "c" (no compensation), so request ids are s1:0, s1:2 and s1:3.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from services.card.saga import (
    LeaseLost,
    LocalStep,
    Orchestrator,
    RemoteStep,
    SagaDefinition,
    Tuning,
)
from services.card.store import CardUnitOfWork, SagaRecord, sagas, wall_clock
from services.platform import migrations
from services.platform.db import Database, make_engine
from services.platform.errors import DomainError, Kind
from services.platform.pii import PiiCipher

TUNING = Tuning(
    workers=1,
    backoff_base=0.001,
    backoff_cap=0.01,
    lease=dt.timedelta(seconds=5),
    max_retries=10_000,  # a large bound: the backoff must not overflow before it
)
INDEX = {"a": 0, "mark": 1, "b": 2, "c": 3}
REMOTE = ("a", "b", "c")
Call = tuple[str, str]  # ("a" or "undo a", request id)


def refusal() -> DomainError:
    return DomainError("NOPE", "refused", rule="A0.1")


def undo_refusal() -> DomainError:
    return DomainError("CANNOT_UNDO", "undo refused", rule="A0.2")


def transport() -> DomainError:
    return DomainError("DOWN", "down", kind=Kind.UNAVAILABLE)


class FakeService:
    """Logs every call with its request id into a shared list; raises scripted errors first."""

    def __init__(self, name: str, calls: list[Call]) -> None:
        self.name = name
        self.calls = calls
        self.scripted: dict[str, list[DomainError]] = {"do": [], "undo": []}

    def fail(self, operation: str, error: Callable[[], DomainError], times: int) -> None:
        self.scripted[operation] = [error() for _ in range(times)]

    def _call(self, operation: str, label: str, request_id: str) -> None:
        self.calls.append((label, request_id))
        if self.scripted[operation]:
            raise self.scripted[operation].pop(0)

    def act(self, saga: SagaRecord, request_id: str) -> dict[str, Any]:
        self._call("do", self.name, request_id)
        return {self.name: request_id}

    def undo(self, saga: SagaRecord, request_id: str) -> None:
        self._call("undo", f"undo {self.name}", request_id)


@dataclass
class World:
    new_uow: Callable[[], CardUnitOfWork]
    calls: list[Call]
    services: dict[str, FakeService]
    marks: list[str]
    ended: list[tuple[str, str]]  # (hook, saga state seen by the hook)
    definition: SagaDefinition

    def orchestrator(self) -> Orchestrator:
        return Orchestrator(self.new_uow, [self.definition], TUNING)

    def add(self, step: int = 0, data: dict[str, Any] | None = None) -> None:
        record = SagaRecord("s1", "test", "card-1", "", "RUNNING", step, data or {})
        with self.new_uow() as uow:
            uow.sagas.add_many([record], wall_clock())
            uow.commit()

    def get(self) -> SagaRecord:
        with self.new_uow() as uow:
            record = uow.sagas.get("s1")
        assert record is not None
        return record

    def finish(self, orchestrator: Orchestrator) -> SagaRecord:
        """Drive until the saga ends; transient failures make it due again a few ms later."""
        for _ in range(400):
            orchestrator.run_until_idle()
            record = self.get()
            if record.state in ("COMPLETED", "FAILED"):
                return record
            time.sleep(0.005)
        raise AssertionError(f"saga did not finish: {record}")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = Database(make_engine(f"sqlite:///{tmp_path}/card.db"))
    migrations.upgrade("card", db.engine)
    cipher = PiiCipher(os.urandom(32))
    calls: list[Call] = []
    services = {name: FakeService(name, calls) for name in REMOTE}
    marks: list[str] = []
    ended: list[tuple[str, str]] = []

    def mark(uow: CardUnitOfWork, saga: SagaRecord) -> dict[str, Any]:
        marks.append(saga.saga_id)
        return {"marked": True}

    definition = SagaDefinition(
        "test",
        [
            RemoteStep("a", services["a"].act, services["a"].undo),
            LocalStep("mark", mark),
            RemoteStep("b", services["b"].act, services["b"].undo),
            RemoteStep("c", services["c"].act),
        ],
        on_completed=lambda uow, saga: ended.append(("completed", saga.state)),
        on_failed=lambda uow, saga: ended.append(("failed", saga.state)),
    )
    yield World(lambda: CardUnitOfWork(db, cipher), calls, services, marks, ended, definition)
    db.dispose()


def test_happy_path_runs_each_step_once_in_order_and_completes(world: World) -> None:
    world.add()
    record = world.finish(world.orchestrator())
    assert world.calls == [("a", "s1:0"), ("b", "s1:2"), ("c", "s1:3")]
    assert world.marks == ["s1"]
    assert record.state == "COMPLETED"
    assert record.data == {"a": "s1:0", "marked": True, "b": "s1:2", "c": "s1:3"}
    assert record.lease_owner == ""
    assert world.ended == [("completed", "COMPLETED")]


@pytest.mark.parametrize("failing", REMOTE)
def test_a_refusal_compensates_completed_steps_in_reverse_and_fails(
    world: World, failing: str
) -> None:
    world.services[failing].fail("do", refusal, 1)
    world.add()
    record = world.finish(world.orchestrator())
    done = [s for s in REMOTE if INDEX[s] < INDEX[failing]]
    assert world.calls == [
        *[(s, f"s1:{INDEX[s]}") for s in done],
        (failing, f"s1:{INDEX[failing]}"),  # refused once, never retried
        *[(f"undo {s}", f"s1:{INDEX[s]}:undo") for s in reversed(done)],
    ]
    assert world.marks == ([] if failing == "a" else ["s1"])
    assert record.state == "FAILED"
    assert record.step == 0
    assert (record.refusal_reason, record.refusal_rule, record.refusal_message) == (
        "NOPE",
        "A0.1",
        "refused",
    )
    assert world.ended == [("failed", "FAILED")]


@pytest.mark.parametrize("failing", REMOTE)
def test_a_transport_failure_is_retried_with_the_same_request_id(
    world: World, failing: str
) -> None:
    world.services[failing].fail("do", transport, 2)
    world.add()
    record = world.finish(world.orchestrator())
    attempts = {s: 3 if s == failing else 1 for s in REMOTE}
    assert world.calls == [(s, f"s1:{INDEX[s]}") for s in REMOTE for _ in range(attempts[s])]
    assert world.marks == ["s1"]
    assert record.state == "COMPLETED"
    assert record.retries == 0  # counted afresh once the step went through
    assert record.last_error.startswith(f"{failing}:")
    assert "DOWN" in record.last_error
    assert world.ended == [("completed", "COMPLETED")]


@pytest.mark.parametrize(
    ("error", "times"), [(transport, 3), (undo_refusal, 2)], ids=["transport", "refusal"]
)
def test_a_failing_compensation_is_retried_until_it_succeeds(
    world: World, error: Callable[[], DomainError], times: int
) -> None:
    world.services["c"].fail("do", refusal, 1)
    world.services["b"].fail("undo", error, times)
    world.add()
    record = world.finish(world.orchestrator())
    assert world.calls == [
        ("a", "s1:0"),
        ("b", "s1:2"),
        ("c", "s1:3"),
        *[("undo b", "s1:2:undo")] * (times + 1),
        ("undo a", "s1:0:undo"),
    ]
    assert record.state == "FAILED"
    assert record.retries == 0  # counted afresh once the undo went through
    assert record.last_error.startswith("undo b:")
    # The saga keeps the refusal that failed it, not the compensation's.
    assert (record.refusal_reason, record.refusal_rule) == ("NOPE", "A0.1")
    assert world.ended == [("failed", "FAILED")]


def test_a_leased_saga_is_not_claimed_until_the_lease_runs_out(world: World) -> None:
    world.add()
    with world.new_uow() as uow:
        assert uow.sagas.claim("other-owner", wall_clock(), dt.timedelta(seconds=0.2))
        uow.commit()
    orchestrator = world.orchestrator()
    assert orchestrator.run_until_idle() == 0
    assert world.calls == []
    assert world.get().lease_owner == "other-owner"
    time.sleep(0.3)
    record = world.finish(orchestrator)
    assert record.state == "COMPLETED"
    assert world.calls == [("a", "s1:0"), ("b", "s1:2"), ("c", "s1:3")]
    assert world.ended == [("completed", "COMPLETED")]


def test_a_worker_that_lost_its_lease_stops_without_writing(world: World) -> None:
    world.add()
    orchestrator = world.orchestrator()
    orchestrator.owner = "owner-1"
    (claimed,) = orchestrator._claim()
    assert claimed.lease_owner == "owner-1"
    with world.new_uow() as uow:
        past = wall_clock() - dt.timedelta(seconds=1)
        uow.session.execute(sagas.update().where(sagas.c.saga_id == "s1").values(lease_until=past))
        (thief,) = uow.sagas.claim("thief", wall_clock(), TUNING.lease)
        thief.step, thief.data = 2, {"thief": True}
        assert uow.sagas.save(thief, wall_clock(), wall_clock() + TUNING.lease)
        uow.commit()

    with pytest.raises(LeaseLost):
        orchestrator.drive(claimed)

    record = world.get()
    assert (record.lease_owner, record.state, record.step) == ("thief", "RUNNING", 2)
    assert record.data == {"thief": True}
    assert world.calls == []  # it saved its progress first, found the lease gone, and stopped
    assert world.marks == []
    assert world.ended == []


def test_a_fresh_orchestrator_resumes_a_saga_after_a_crash(world: World) -> None:
    earlier = {"a": "s1:0", "marked": True, "b": "s1:2"}
    world.add(step=3, data=earlier)
    record = world.finish(world.orchestrator())
    assert world.calls == [("c", "s1:3")]
    assert world.marks == []
    assert record.state == "COMPLETED"
    assert record.data == {**earlier, "c": "s1:3"}
    assert world.ended == [("completed", "COMPLETED")]


def test_backoff_still_schedules_a_retry_after_many_transient_failures(world: World) -> None:
    world.add()
    with world.new_uow() as uow:
        uow.session.execute(sagas.update().where(sagas.c.saga_id == "s1").values(retries=1023))
        uow.commit()
    world.services["a"].fail("do", transport, 1)
    record = world.finish(world.orchestrator())
    assert record.state == "COMPLETED"
    assert record.retries == 0  # counted afresh once the step went through


def test_a_stopping_worker_hands_its_leases_back_for_another_to_claim_at_once(
    world: World,
) -> None:
    world.add()
    stopping = world.orchestrator()
    with world.new_uow() as uow:
        assert uow.sagas.claim(stopping.owner, wall_clock(), TUNING.lease)
        uow.commit()
    stopping.stop()
    assert world.get().lease_owner == ""
    assert world.finish(world.orchestrator()).state == "COMPLETED"


def test_failures_are_counted_in_a_row_per_step_not_over_the_saga(world: World) -> None:
    """One transient failure at each of three steps is three blips, not three failures in a
    row: with a bound of 2 the saga still completes on its own."""
    world.add()
    for name in REMOTE:
        world.services[name].fail("do", transport, 1)
    orchestrator = Orchestrator(world.new_uow, [world.definition], replace(TUNING, max_retries=2))
    record = world.finish(orchestrator)
    assert (record.state, record.retries) == ("COMPLETED", 0)
    assert [c[0] for c in world.calls] == ["a", "a", "b", "b", "c", "c"]


def test_a_saga_out_of_retries_waits_for_an_operator_then_resumes(world: World) -> None:
    world.add()
    world.services["a"].fail("do", transport, 2)
    orchestrator = Orchestrator(world.new_uow, [world.definition], replace(TUNING, max_retries=2))
    for _ in range(400):
        orchestrator.run_until_idle()
        if (record := world.get()).state == "NEEDS_ATTENTION":
            break
        time.sleep(0.005)
    assert (record.state, record.retries, record.last_error) == ("NEEDS_ATTENTION", 2, "a: DOWN")
    time.sleep(0.05)
    assert orchestrator.run_until_idle() == 0  # nothing retries it on its own
    with world.new_uow() as uow:
        assert uow.sagas.resume("s1", wall_clock())
        uow.commit()
    record = world.finish(orchestrator)
    assert record.state == "COMPLETED"
    assert [c for c in world.calls if c[0] == "a"] == [("a", "s1:0")] * 3
