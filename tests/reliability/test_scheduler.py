"""The deadline scheduler under failure and concurrency: a timer fires exactly once when the
worker firing it dies, and two scheduler replicas on one PostgreSQL fire 1,000 due timers once
each. Handlers run in the transaction that marks the timer fired."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from services.card.deadlines import PRODUCTION_OVERDUE
from services.card.scheduler import Scheduler, new_timer
from services.card.store import CardUnitOfWork, TimerRecord
from services.platform import migrations
from services.platform.clock import ManualClock, SharedTestClock
from services.platform.db import Database, make_engine
from services.platform.pii import PiiCipher
from sscard.card.v1 import card_pb2 as pb
from tests.reliability.deployment import Deployment, killed

pytestmark = pytest.mark.slow
KIND = "test_deadline"


class WorkerDied(BaseException):
    """Stands for a process killed in the middle of firing (not an ordinary error)."""


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(make_engine(db_url))
    migrations.upgrade("card", database.engine)
    yield database
    database.dispose()


def _uow_factory(db: Database) -> object:
    cipher = PiiCipher(b"k" * 32)
    return lambda: CardUnitOfWork(db, cipher)


def _add_due(db: Database, clock: ManualClock, count: int) -> list[str]:
    new_uow = _uow_factory(db)
    timers = [new_timer(KIND, f"card-{i}", "A0.0", clock.now()) for i in range(count)]
    with new_uow() as uow:  # type: ignore[operator]
        for timer in timers:
            uow.timers.add(timer, clock.now())
        uow.commit()
    return [t.timer_id for t in timers]


def _states(db: Database) -> Counter[str]:
    new_uow = _uow_factory(db)
    with new_uow() as uow:  # type: ignore[operator]
        return Counter(t.state for t in uow.timers.listing(KIND, "", "", None, None, 100_000))


def test_a_timer_whose_worker_died_mid_fire_fires_exactly_once(db: Database) -> None:
    clock = ManualClock()
    (timer_id,) = _add_due(db, clock, 1)
    fired: list[str] = []
    crashed = threading.Event()

    def dies_first_time(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        if not crashed.is_set():
            crashed.set()
            raise WorkerDied
        fired.append(timer.timer_id)
        return "done"

    lease = dt.timedelta(seconds=0.3)
    first = Scheduler(_uow_factory(db), clock, {KIND: dies_first_time}, lease=lease)  # type: ignore[arg-type]
    with pytest.raises(WorkerDied):
        first.fire_due()
    assert _states(db) == {"PENDING": 1}
    restarted = Scheduler(_uow_factory(db), clock, {KIND: dies_first_time}, lease=lease)  # type: ignore[arg-type]
    assert restarted.fire_due() == 0  # the dead worker's lease still holds
    time.sleep(0.4)
    assert restarted.fire_due() == 1
    assert restarted.fire_due() == 0
    assert fired == [timer_id]
    assert _states(db) == {"FIRED": 1}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_scheduler_replicas_fire_each_of_1000_timers_once(db: Database) -> None:
    clock = ManualClock()
    _add_due(db, clock, 1000)
    fired: Counter[str] = Counter()
    lock = threading.Lock()

    def count(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        with lock:
            fired[timer.timer_id] += 1
        return "counted"

    replicas = [
        Scheduler(_uow_factory(db), clock, {KIND: count}, batch=50)  # type: ignore[arg-type]
        for _ in range(2)
    ]

    def drain(scheduler: Scheduler) -> None:
        while scheduler.fire_due():
            pass

    threads = [threading.Thread(target=drain, args=(s,)) for s in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(fired) == 1000
    assert set(fired.values()) == {1}
    assert _states(db) == {"FIRED": 1000}


def test_a_failing_handler_puts_off_only_its_own_timer(db: Database) -> None:
    clock = ManualClock()
    ids = _add_due(db, clock, 5)

    def fails_on_the_third(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        if timer.target == "card-2":
            raise RuntimeError("the card store is confused")
        return "done"

    scheduler = Scheduler(_uow_factory(db), clock, {KIND: fails_on_the_third})  # type: ignore[arg-type]
    assert scheduler.fire_due() == 5
    assert _states(db) == {"FIRED": 4, "PENDING": 1}
    new_uow = _uow_factory(db)
    with new_uow() as uow:  # type: ignore[operator]
        (pending,) = uow.timers.listing(KIND, "", "PENDING", None, None, 10)
    assert (pending.timer_id, pending.attempts) == (ids[2], 1)
    assert pending.outcome == "failed: RuntimeError"
    assert scheduler.fire_due() == 0  # put off: it is tried again after a backoff


def test_a_card_service_killed_while_firing_fires_each_deadline_once_after_restart(
    deployment: Deployment, test_clock: SharedTestClock
) -> None:
    """A13.3's sibling timers under a real SIGKILL: the card-service process dies after firing
    the A22.1 production deadlines of 12 cards, before its commit; restarted, it fires each once
    and each card carries exactly one operations notice."""
    proc, card = deployment.card_process(0, crash_point=f"timer:{PRODUCTION_OVERDUE}")
    people = deployment.people(12)
    card_ids = [deployment.apply(card, person) for person in people]
    deployment.settle(card, card_ids)
    test_clock.advance(dt.timedelta(days=33))
    killed(proc)

    _, card = deployment.card_process(0)
    deadline = time.monotonic() + 60
    while True:
        notices = {
            card_id: [
                n.rule
                for n in card.GetCard(
                    pb.GetCardRequest(card_id=card_id, include_history=True),
                    metadata=deployment.ops,
                ).notices
                if n.recipient == "operations"
            ]
            for card_id in card_ids
        }
        if all(notices.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert notices == {card_id: ["A22.1"] for card_id in card_ids}


def test_a_stopping_scheduler_hands_back_the_leases_of_a_batch_cut_off(db: Database) -> None:
    """The drain: timers a stopping worker claimed but could not fire are fired by another
    replica at once, not when the worker's lease (a minute) runs out."""
    clock = ManualClock()
    (timer_id,) = _add_due(db, clock, 1)
    fired: list[str] = []

    def cut_off_first_time(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        if not fired:
            fired.append("")
            raise WorkerDied
        fired.append(timer.timer_id)
        return "done"

    first = Scheduler(_uow_factory(db), clock, {KIND: cut_off_first_time})  # type: ignore[arg-type]
    with pytest.raises(WorkerDied):
        first.fire_due()
    first.stop()
    replica = Scheduler(_uow_factory(db), clock, {KIND: cut_off_first_time})  # type: ignore[arg-type]
    assert replica.fire_due() == 1
    assert fired == ["", timer_id]
    assert _states(db) == {"FIRED": 1}
