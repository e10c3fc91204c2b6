"""The saga orchestrator: every operation that spans services runs here.

A saga is a persisted record with an ordered list of steps. A remote step is an action on
another service paired with its compensation; a local step changes this service's own records
and commits together with the saga's progress. The orchestrator

- writes the saga's state before and after every remote call, and never holds a database
  transaction open across one;
- gives every remote call the idempotency key ``<saga_id>:<step>`` (``…:<step>:undo`` for a
  compensation), so a retried step never acts twice;
- retries transport failures (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED) with exponential backoff
  and full jitter, and stops on a business refusal: it then runs the compensations of the
  completed steps in reverse and ends FAILED with the refusal's reason and rule;
- retries a failing compensation until it succeeds, logging each failure: it never drops one;
- claims a saga with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) so several replicas
  never run one saga at once, renews the lease with each step, abandons a saga whose lease it
  lost, and takes over a saga whose holder died once the lease runs out. A restarted process
  therefore resumes every unfinished saga.
Leases and retry times use wall-clock time: moving the suite's test clock never disturbs them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.card.store import CardUnitOfWork, SagaRecord, wall_clock
from services.platform import tracing
from services.platform.errors import DomainError, Kind
from services.platform.faultlog import FailureLog

log = logging.getLogger("sscard.saga")

TRANSIENT = frozenset({Kind.UNAVAILABLE, Kind.CONFLICT})


# Retries exhausted: the saga holds its place, no worker claims it, until an operator resumes it.
NEEDS_ATTENTION = "NEEDS_ATTENTION"


@dataclass(frozen=True)
class RemoteStep:
    """An action on another service and the compensation that undoes it."""

    name: str
    action: Callable[[SagaRecord, str], dict[str, Any]]  # (saga, request_id) -> data to keep
    compensation: Callable[[SagaRecord, str], None] | None = None


@dataclass(frozen=True)
class LocalStep:
    """A change to this service's records, committed with the saga's progress."""

    name: str
    apply: Callable[[CardUnitOfWork, SagaRecord], dict[str, Any]]


Step = RemoteStep | LocalStep


@dataclass(frozen=True)
class SagaDefinition:
    kind: str
    steps: Sequence[Step]
    # Run in the transaction that ends the saga.
    on_completed: Callable[[CardUnitOfWork, SagaRecord], None]
    on_failed: Callable[[CardUnitOfWork, SagaRecord], None]


@dataclass(frozen=True)
class Tuning:
    workers: int = 8
    lease: dt.timedelta = dt.timedelta(seconds=15)
    backoff_base: float = 0.2
    # Capped low so that a dependency back after an outage is used within a few seconds.
    backoff_cap: float = 5.0
    # Transient failures in a row before the saga waits for an operator (NEEDS_ATTENTION).
    max_retries: int = 50
    idle_poll: float = 0.5
    claim_batch: int = 4  # sagas a worker claims at once


DONE, UNDONE, CURRENT, PENDING = "done", "undone", "current", "pending"


@dataclass(frozen=True)
class StepView:
    """A step as operations see it: ``state`` is done, current, undone or pending."""

    name: str
    state: str
    done_at: dt.datetime | None
    undone_at: dt.datetime | None


def _mark(saga: SagaRecord, step: int, event: str) -> None:
    saga.step_times.append((step, event, wall_clock().isoformat()))


class LeaseLost(Exception):
    """Another worker took this saga over; this one must stop driving it."""


def request_id(saga: SagaRecord, step: int, undo: bool = False) -> str:
    return f"{saga.saga_id}:{step}" + (":undo" if undo else "")


class Orchestrator:
    def __init__(
        self,
        new_uow: Callable[[], CardUnitOfWork],
        definitions: Sequence[SagaDefinition],
        tuning: Tuning = Tuning(),
        crash_after: str = "",
    ) -> None:
        self._new_uow = new_uow
        self._definitions = {d.kind: d for d in definitions}
        self._tuning = tuning
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._wake = threading.Condition()
        self._pending = 0
        self._stopping = threading.Event()
        self._claim_failures = FailureLog(log, "claiming sagas")  # shared by the workers
        self._threads: list[threading.Thread] = []
        # Fault injection for the crash tests: "<kind>:<step>" kills this process right after
        # that step's progress is committed. Refused in production by the configuration.
        self._crash_after = crash_after

    def steps_of(self, saga: SagaRecord) -> list[StepView]:
        """Every step of the saga with where it stands and when it was done and undone."""
        done: dict[int, dt.datetime] = {}
        undone: dict[int, dt.datetime] = {}
        for index, event, at in saga.step_times:
            (done if event == DONE else undone)[index] = dt.datetime.fromisoformat(at)
        views = []
        for index, step in enumerate(self._definitions[saga.kind].steps):
            if index < saga.step or saga.state == "COMPLETED":
                state = DONE
            elif index in undone:
                state = UNDONE
            elif index == saga.step and saga.state in ("RUNNING", NEEDS_ATTENTION):
                state = PENDING if saga.refusal_reason else CURRENT
            else:
                state = PENDING
            views.append(StepView(step.name, state, done.get(index), undone.get(index)))
        return views

    def step_name(self, saga: SagaRecord) -> str:
        """The step a saga is at, in words operations can read."""
        if saga.state in ("COMPLETED", "FAILED"):
            return saga.state.lower()
        steps = self._definitions[saga.kind].steps
        if saga.state == "COMPENSATING" or (saga.state == NEEDS_ATTENTION and saga.refusal_reason):
            return f"undo {steps[saga.step - 1].name}" if saga.step else "failing"
        return steps[saga.step].name if saga.step < len(steps) else "completing"

    # -- lifecycle

    def start(self) -> None:
        for i in range(self._tuning.workers):
            thread = threading.Thread(target=self._work, name=f"saga-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        if any(thread.is_alive() for thread in self._threads):
            return  # a step still runs: its lease stays, and runs out on its own
        with self._new_uow() as uow:
            released = uow.sagas.release(self.owner)
            uow.commit()
        if released:
            log.info("handed back %d saga leases", released)

    def poke(self, count: int = 1) -> None:
        """New sagas were committed: wake idle workers now rather than at the next poll."""
        with self._wake:
            self._pending += count
            self._wake.notify(min(count, self._tuning.workers))

    # -- the worker loop

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = self._claim(self._tuning.claim_batch)
            except Exception as exc:
                self._claim_failures.failure(type(exc).__name__, exc)
                self._stopping.wait(1.0)
                continue
            self._claim_failures.success()
            if not claimed:
                with self._wake:
                    if self._pending <= 0:
                        self._wake.wait(self._tuning.idle_poll)
                    self._pending = 0
                continue
            for saga in claimed:
                try:
                    self.drive(saga)
                except LeaseLost:
                    log.info("saga %s was taken over by another worker", saga.saga_id)
                except Exception:
                    log.exception("saga %s hit an unexpected error; it resumes later", saga.saga_id)

    def _claim(self, limit: int = 1) -> list[SagaRecord]:
        with self._new_uow() as uow:
            sagas = uow.sagas.claim(self.owner, wall_clock(), self._tuning.lease, limit)
            uow.commit()
            return sagas

    def run_until_idle(self, limit: int = 10_000) -> int:
        """Drive every runnable saga in this thread (tests and tools); returns how many."""
        driven = 0
        while driven < limit and (claimed := self._claim()):
            self.drive(claimed[0])
            driven += 1
        return driven

    # -- driving one saga

    def _save(
        self,
        saga: SagaRecord,
        local: Callable[[CardUnitOfWork], None] | None = None,
        retry_in: float | None = None,
    ) -> None:
        """Write progress under this worker's lease; a finished or waiting saga is released."""
        now = wall_clock()
        with self._new_uow() as uow:
            if local is not None:
                local(uow)
            finished = saga.state in ("COMPLETED", "FAILED", NEEDS_ATTENTION)
            keep = not finished and retry_in is None
            lease_until = now + self._tuning.lease if keep else None
            next_attempt = now + dt.timedelta(seconds=retry_in) if retry_in is not None else None
            if not uow.sagas.save(saga, now, lease_until, next_attempt):
                raise LeaseLost(saga.saga_id)
            uow.commit()

    def _backoff(self, saga: SagaRecord) -> float:
        """Full jitter: anywhere up to base * 2^retries, capped."""
        base = self._tuning.backoff_base
        ceiling = min(self._tuning.backoff_cap, base * 2 ** min(saga.retries, 32))
        return random.uniform(base / 10, max(ceiling, base))

    def _retry_later(self, saga: SagaRecord, error: DomainError, step: str) -> None:
        """Try the step again later; after ``max_retries`` failures in a row the saga waits for
        an operator (``OpsService.RetrySaga``) instead."""
        saga.retries += 1
        saga.last_error = f"{step}: {error.reason} {error.metadata.get('code', '')}".strip()
        if saga.retries >= self._tuning.max_retries:
            saga.state = NEEDS_ATTENTION
            log.error(
                "saga %s needs attention: %s failed %d times in a row (%s)",
                saga.saga_id,
                step,
                saga.retries,
                saga.last_error,
            )
            self._save(saga)
            return
        self._save(saga, retry_in=self._backoff(saga))

    def _maybe_crash(self, saga: SagaRecord, step: str) -> None:
        if self._crash_after and self._crash_after == f"{saga.kind}:{step}":
            log.warning("fault injection: killing the process after %s", self._crash_after)
            os.kill(os.getpid(), 9)

    def _advance_locally(self, saga: SagaRecord, definition: SagaDefinition) -> list[str]:
        """Commit the saga's progress together with the local steps that follow it, and with
        its completion if nothing else is left: one transaction instead of several. A local
        step that refuses rolls that transaction back; progress is then saved alone and the
        refusal starts the compensation. Returns the names of the local steps committed."""
        steps = definition.steps
        start = saga.step
        data = dict(saga.data)
        times = list(saga.step_times)
        done: list[str] = []

        def run(uow: CardUnitOfWork) -> None:
            while saga.step < len(steps) and isinstance(local := steps[saga.step], LocalStep):
                saga.data.update(local.apply(uow, saga))
                done.append(local.name)
                _mark(saga, saga.step, DONE)
                saga.step += 1
            if saga.step == len(steps):
                saga.state = "COMPLETED"
                definition.on_completed(uow, saga)

        try:
            self._save(saga, run)
        except DomainError as error:
            saga.step, saga.data, saga.state = start, data, "RUNNING"
            saga.step_times = times
            done.clear()
            if error.kind in TRANSIENT:
                raise
            self._refuse(saga, error, steps[saga.step].name if saga.step < len(steps) else "")
        return done

    def _refuse(self, saga: SagaRecord, error: DomainError, step: str) -> None:
        saga.state = "COMPENSATING"
        saga.refusal_reason = error.reason
        saga.refusal_rule = error.rule
        saga.refusal_message = error.message
        log.info("saga %s refused at %s: %s", saga.saga_id, step, error.reason)
        self._save(saga)

    def drive(self, saga: SagaRecord) -> None:
        """Run a claimed saga as far as it goes now: to its end, or to a retry later; in a span
        of the trace of the call that started it, whichever process runs it."""
        attributes: dict[str, str | int] = {
            "sscard.saga.id": saga.saga_id,
            "sscard.saga.step": saga.step,
        }
        with tracing.resumed(saga.trace_parent, f"saga {saga.kind}", **attributes):
            self._drive(saga)

    def _drive(self, saga: SagaRecord) -> None:
        definition = self._definitions[saga.kind]
        steps = definition.steps
        if saga.state == "RUNNING":
            for name in self._advance_locally(saga, definition):
                self._maybe_crash(saga, name)
        while saga.state == "RUNNING":
            step = steps[saga.step]
            if not isinstance(step, RemoteStep):
                raise RuntimeError(f"saga step {saga.step} of {saga.kind} is not a remote step")
            try:
                result = step.action(saga, request_id(saga, saga.step))
            except DomainError as error:
                if error.kind in TRANSIENT:
                    self._retry_later(saga, error, step.name)
                    return
                self._refuse(saga, error, step.name)
                break
            saga.data.update(result)
            _mark(saga, saga.step, DONE)
            saga.step += 1
            saga.retries = 0  # failures are counted in a row, per step
            local = self._advance_locally(saga, definition)
            for name in (step.name, *local):
                self._maybe_crash(saga, name)
        if saga.state == "COMPENSATING":
            self._compensate(saga, definition)

    def _compensate(self, saga: SagaRecord, definition: SagaDefinition) -> None:
        steps = definition.steps
        while saga.state == "COMPENSATING":
            if saga.step == 0:
                saga.state = "FAILED"
                self._save(saga, lambda uow: definition.on_failed(uow, saga))
                return
            index = saga.step - 1
            step = steps[index]
            if isinstance(step, RemoteStep) and step.compensation is not None:
                try:
                    step.compensation(saga, request_id(saga, index, undo=True))
                except DomainError as error:
                    if error.kind not in TRANSIENT:
                        log.error(
                            "compensation %s of saga %s refused (%s); retrying",
                            step.name,
                            saga.saga_id,
                            error.reason,
                        )
                    self._retry_later(saga, error, f"undo {step.name}")
                    return
            saga.step = index
            saga.retries = 0
            _mark(saga, index, UNDONE)
            self._save(saga)
            self._maybe_crash(saga, f"undo {step.name}")
