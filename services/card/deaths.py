"""A21.2: the card service follows the identity service's person events and acts on a death
without anyone calling it.

Each event is applied in one transaction together with the feed position, so an event is applied
exactly once even if either service crashes: a crash before the commit reads the event again, a
crash after it has moved past it. Several replicas may poll at once; the position row is locked
for the transaction and an event at or below the position is skipped.

On a death: a card not yet handed out is withdrawn and its production stopped at the bank, which
must take it back within 10 working days (a timer checks, and flags a late one); a card in use is
marked for cancellation pending the estate's visit (A19.1), and the bank suspends the account's
non-counter business so that only the estate, at the counter, moves its money.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from services.card.clients import IdentityPort, PersonEvent
from services.card.deadlines import SYSTEM, watch_death_recall
from services.card.domain import card as rules
from services.card.flows import APPLICATION, REPLACEMENT
from services.card.store import CardUnitOfWork
from services.card.tasks import start_bank_task, start_release_place
from services.platform.calendar import WorkingDayCalendar
from services.platform.clock import Clock

FEED = "identity.person_events"
BATCH = 100
log = logging.getLogger(__name__)


class DeathWatch:
    def __init__(
        self,
        new_uow: Callable[..., CardUnitOfWork],
        identity: IdentityPort,
        calendar: WorkingDayCalendar,
        clock: Clock,
    ) -> None:
        self._new_uow = new_uow
        self._identity = identity
        self._calendar = calendar
        self._clock = clock

    def run(self) -> int:
        """Apply the events after the stored position; the number applied."""
        with self._new_uow(readonly=True) as uow:
            after = uow.feeds.position(FEED)
        applied = 0
        for event in self._identity.events(after, BATCH):
            with self._new_uow() as uow:
                if event.sequence <= uow.feeds.position(FEED, for_update=True):
                    continue  # another replica applied it
                if event.died:
                    self._died(uow, event)
                uow.feeds.advance(FEED, event.sequence)
                uow.commit()
            applied += 1
        return applied

    def _died(self, uow: CardUnitOfWork, event: PersonEvent) -> None:
        now = self._clock.now()
        for card in uow.cards.of_person(event.person_id):
            change = rules.holder_died(card, SYSTEM, now)
            if change.card is card:
                continue
            uow.cards.record(change)
            if change.card.status is rules.Status.WITHDRAWN:
                application = uow.sagas.for_card(card.card_id, [APPLICATION, REPLACEMENT])
                order_id = application.data.get("order_id", "") if application else ""
                start_bank_task(uow, card.card_id, action="stop_issuing", order_id=order_id)
                watch_death_recall(uow, change.card, self._calendar, now)
                # A withdrawn card holds no place in the register, as after A21.1 (A4.2).
                start_release_place(uow, card.card_id)
            elif card.account_id:
                # In use: nobody but the estate, at the counter, moves the money from now on.
                start_bank_task(
                    uow, card.card_id, action="suspend_non_counter", reason="HOLDER_DIED"
                )
            log.info("holder died: card %s is now %s", card.card_id, change.card.status.value)
