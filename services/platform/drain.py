"""What a relay (an outbox delivered by a periodic pass) needs to drain: it stops claiming new
work when the drain begins and hands back the leases of what it claimed but did not deliver,
so another replica delivers those at once rather than when the leases run out."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

log = logging.getLogger("sscard.drain")

K = TypeVar("K")
T = TypeVar("T")


class RelayDrain(Generic[K]):
    """A relay's pass runs inside ``passing()``; it records what it leased, and until when, with
    ``holding``, and asks ``stopping`` between deliveries. ``stop`` waits for the delivery under
    way, then hands back every lease of the batch that is still the one this relay took (what
    was delivered or rescheduled meanwhile no longer holds it)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stopping = threading.Event()
        self._pass = threading.Lock()
        self._held: dict[K, None] = {}
        self._until: dt.datetime | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @contextmanager
    def passing(self) -> Iterator[None]:
        with self._pass:
            yield

    def deliver_due(
        self,
        now: Callable[[], dt.datetime],
        claim: Callable[[dt.datetime], Sequence[T]],
        key: Callable[[T], K],
        deliver: Callable[[T], int],
        batch: int,
        lease: dt.timedelta,
        call_deadline: float,
    ) -> int:
        """One pass of a relay: claim what is due in batches (``claim`` leases up to ``batch``
        items until ``lease`` from the instant it is given) and ``deliver`` each, until nothing is
        due, the drain begins, or the batch's lease would run out before another call could end;
        how many were delivered."""
        delivered = 0
        with self.passing():
            while not self.stopping:
                at = now()
                items = claim(at)
                if not items:
                    return delivered
                self.holding((key(item) for item in items), at + lease)
                lease_ends = time.monotonic() + lease.total_seconds() - call_deadline
                for item in items:
                    if self.stopping:
                        return delivered  # draining: stop() hands the rest back
                    if time.monotonic() > lease_ends:
                        return delivered  # the lease runs out; the rest are claimed again later
                    delivered += deliver(item)
                if len(items) < batch:
                    return delivered
        return delivered

    def holding(self, keys: Iterable[K], until: dt.datetime) -> None:
        self._held = dict.fromkeys(keys)
        self._until = until

    def stop(self, release: Callable[[list[K], dt.datetime], None], timeout: float) -> None:
        """Claim nothing more; once the delivery under way ends (within ``timeout``), call
        ``release`` with the keys of the last batch and the lease's end they were leased until."""
        self._stopping.set()
        if not self._pass.acquire(timeout=timeout):
            return  # a delivery still runs: the leases stay, and run out on their own
        try:
            if self._held and self._until is not None:
                release(list(self._held), self._until)
                log.info("%s stopped: leases of its last batch handed back", self._name)
            self._held = {}
        finally:
            self._pass.release()
