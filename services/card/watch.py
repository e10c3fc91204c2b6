"""Following sagas as they happen (CardService.WatchSaga).

A watch reads the saga's event log (``saga_events``, written in the transaction that saves each
step) at a short interval, so it sees the progress of a saga whichever replica drives it. Each
stream holds one of the server's threads for as long as it runs, so streams are bounded: at most
``max_streams`` at once per process, each for at most ``max_seconds``, reading at most
``batch`` events per poll. A stream ended early (the server begins its drain, or the watch ran
its time) ends UNAVAILABLE ``WATCH_INTERRUPTED``; the caller watches again from the last
sequence it received and loses nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from services.card.store import CardUnitOfWork, SagaEvent
from services.platform.config import ServiceConfig
from services.platform.errors import DomainError, Kind

FINISHED = ("COMPLETED", "FAILED")


@dataclass(frozen=True)
class WatchLimits:
    max_streams: int = 4
    max_seconds: float = 300.0
    poll_seconds: float = 0.2
    batch: int = 100

    @classmethod
    def from_config(cls, config: ServiceConfig) -> WatchLimits:
        env = config.env
        return cls(
            max_streams=int(env.get("SSCARD_CARD_MAX_WATCHES", str(max(1, config.threads // 2)))),
            max_seconds=float(env.get("SSCARD_CARD_WATCH_SECONDS", "300")),
        )


def interrupted(why: str) -> DomainError:
    return DomainError(
        "WATCH_INTERRUPTED",
        f"the stream ended before the saga ({why}); watch again with after_sequence set to "
        "the last sequence received",
        kind=Kind.UNAVAILABLE,
    )


class SagaWatch:
    def __init__(self, new_uow: Callable[[], CardUnitOfWork], limits: WatchLimits) -> None:
        self._new_uow = new_uow
        self._limits = limits
        self._streams = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def stop(self) -> None:
        """The server begins its drain: every stream ends at its next poll."""
        self._stopping.set()

    def _enter(self) -> None:
        with self._lock:
            if self._streams >= self._limits.max_streams:
                raise DomainError(
                    "TOO_MANY_WATCHES",
                    "the service follows as many sagas as it can; try again shortly",
                    kind=Kind.EXHAUSTED,
                    retry_after_seconds=1,
                )
            self._streams += 1

    def _leave(self) -> None:
        with self._lock:
            self._streams -= 1

    def follow(
        self, saga_id: str, after: int, finished: bool, active: Callable[[], bool]
    ) -> Iterator[SagaEvent]:
        """The saga's events numbered after ``after``: those already written, then each new one,
        until the outcome (the last event yielded) or the caller goes away (``active``). A saga
        ``finished`` before the watch began with nothing after ``after`` yields nothing."""
        self._enter()
        try:
            ends = time.monotonic() + self._limits.max_seconds
            while active():
                if self._stopping.is_set():
                    raise interrupted("the service is shutting down")
                with self._new_uow() as uow:
                    events = uow.sagas.events(saga_id, after, self._limits.batch)
                if not events and finished:
                    return
                for event in events:
                    yield event
                    if event.state in FINISHED:
                        return
                    after = event.sequence
                if len(events) == self._limits.batch:
                    continue
                if time.monotonic() >= ends:
                    raise interrupted("the watch ran its longest time")
                self._stopping.wait(self._limits.poll_seconds)
        finally:
            self._leave()
