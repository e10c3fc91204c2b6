"""The durable deadline scheduler: the regulation's time rules fire here.

A timer is a row with a due time on the suite's clock, a kind, a target and the rule it
enforces. Workers claim due timers with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
replicas share the work) and fire each in one transaction with its outcome: the handler's
changes and the FIRED mark commit together, so a timer fires exactly once even when a worker
dies mid-fire (its lease runs out and another worker fires it). A handler that fails is retried
after a backoff, its outcome recorded. Work that spans services is started from a handler as a
saga, in the same transaction. Moving the suite's test clock makes timers come due.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping

from services.card.store import CardUnitOfWork, TimerRecord, wall_clock
from services.platform.clock import Clock
from services.platform.faultlog import FailureLog

log = logging.getLogger("sscard.scheduler")

Handler = Callable[[CardUnitOfWork, TimerRecord], str]  # returns the outcome, in words


def new_timer(
    kind: str, target: str, rule: str, due_at: dt.datetime, estimated_calendar: bool = False
) -> TimerRecord:
    return TimerRecord(
        f"timer-{secrets.token_hex(10)}",
        kind,
        target,
        rule,
        due_at,
        estimated_calendar=estimated_calendar,
    )


class Scheduler:
    def __init__(
        self,
        new_uow: Callable[[], CardUnitOfWork],
        clock: Clock,
        handlers: Mapping[str, Handler],
        poll_seconds: float = 1.0,
        lease: dt.timedelta = dt.timedelta(seconds=60),
        batch: int = 200,
        crash_point: str = "",
    ) -> None:
        self._new_uow = new_uow
        self._clock = clock
        self._handlers = handlers
        self._poll = poll_seconds
        self._lease = lease
        self._batch = batch
        self._crash_point = crash_point  # fault injection for crash tests: "timer:<kind>"
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Claim nothing more; once the batch being fired is done, hand back the leases this
        worker still holds (a batch abandoned or cut off by a database error), so another
        replica fires those timers at once rather than when the leases run out."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # a batch still fires: its leases stay, and run out on their own
        with self._new_uow() as uow:
            released = uow.timers.release(self.owner)
            uow.commit()
        if released:
            log.info("handed back %d timer leases", released)

    def _loop(self) -> None:
        failures = FailureLog(log, "firing due timers")
        while not self._stopping.is_set():
            try:
                fired = self.fire_due()
            except Exception as exc:
                failures.failure(type(exc).__name__, exc)
                fired = 0
            else:
                failures.success()
            if fired < self._batch:
                self._stopping.wait(self._poll)

    def fire_due(self) -> int:
        """Claim and fire one batch of due timers; returns how many were claimed.

        The batch fires in one transaction; if a handler fails, the batch fires again with each
        timer under its own savepoint, so a failing handler rolls back only its own timer, which
        is retried after a backoff. If this worker
        lost the lease of any timer in the batch meanwhile, the whole batch is abandoned (its
        new holder fires those; the rest come due again when this worker's leases run out).
        """
        with self._new_uow() as uow:
            due = uow.timers.claim_due(
                self.owner, self._clock.now(), wall_clock(), self._lease, self._batch
            )
            uow.commit()
        if not due:
            return 0
        try:
            self._fire_batch(due, isolate=False)
        except Exception:
            # One handler failed: fire the batch again, each timer under its own savepoint, so
            # only the failing timers are put off.
            self._fire_batch(due, isolate=True)
        return len(due)

    def _fire_batch(self, due: list[TimerRecord], isolate: bool) -> None:
        failures: list[tuple[TimerRecord, Exception]] = []
        with self._new_uow() as uow:
            outcomes: list[tuple[str, str]] = []
            for timer in due:
                handler = self._handlers[timer.kind]
                if not isolate:
                    outcomes.append((timer.timer_id, handler(uow, timer)))
                    continue
                try:
                    with uow.session.begin_nested():
                        outcomes.append((timer.timer_id, handler(uow, timer)))
                except Exception as error:
                    failures.append((timer, error))
            if uow.timers.fired_many(outcomes, self.owner, self._clock.now()):
                self._maybe_crash(due)
                uow.commit()
        for timer, failure in failures:
            self._failed(timer, failure)

    def _maybe_crash(self, due: list[TimerRecord]) -> None:
        """Die as a killed process would: after firing, before the commit."""
        if self._crash_point in {f"timer:{timer.kind}" for timer in due}:
            log.warning("fault injection: killing the process while firing %s", self._crash_point)
            os.kill(os.getpid(), 9)

    def _failed(self, timer: TimerRecord, exc: Exception) -> None:
        log.error(
            "timer %s (%s) failed: %s; retrying", timer.timer_id, timer.kind, type(exc).__name__
        )
        retry = wall_clock() + dt.timedelta(seconds=min(300, 2 ** min(timer.attempts, 8)))
        with self._new_uow() as uow:
            uow.timers.failed(timer.timer_id, self.owner, f"failed: {type(exc).__name__}", retry)
            uow.commit()
