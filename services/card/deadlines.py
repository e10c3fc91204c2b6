"""The card service's deadlines: which timers the regulation's time rules set, and what each
does when it fires. Timers are kept and fired by the scheduler (``scheduler.py``); each handler
runs in the transaction that marks its timer fired, and returns its outcome in words.

- A13.3: a temporary loss expires after 15 natural days and the SS function restores itself.
- A22.1 / A22.2 / A22.4: a card still in production the day after its due date is flagged to
  operations with how late it is (mailing time does not count: only production is timed).
- A7.4: a card an employer has not handed out 30 natural days after collecting it is flagged
  and marked for return to the issuing bank.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from services.card.domain import card as rules
from services.card.domain.card import Card
from services.card.scheduler import Handler, new_timer
from services.card.store import CardUnitOfWork, TimerRecord
from services.platform.auth import Caller, Channel
from services.platform.clock import BEIJING, Clock

TEMPORARY_LOSS_EXPIRY = "temporary_loss_expiry"
PRODUCTION_OVERDUE = "production_overdue"
EMPLOYER_HANDOUT = "employer_handout"
SYSTEM = Caller("card-scheduler", Channel.INTERNAL)


def day_after(day: dt.date) -> dt.datetime:
    """Midnight in Beijing at the end of ``day``: a deadline of ``day`` is missed from then."""
    following = day + dt.timedelta(days=1)
    midnight = dt.datetime(following.year, following.month, following.day, tzinfo=BEIJING)
    return midnight.astimezone(dt.UTC)


def watch_production(uow: CardUnitOfWork, card: Card, rule: str, now: dt.datetime) -> None:
    """A22: check the card is made by its due date."""
    if card.due_date is not None and card.status is rules.Status.IN_PRODUCTION:
        uow.timers.add(
            new_timer(PRODUCTION_OVERDUE, card.card_id, rule, day_after(card.due_date)), now
        )


def watch_handout(uow: CardUnitOfWork, card: Card, now: dt.datetime) -> None:
    """A7.4: the employer hands the card out within 30 natural days of collecting it."""
    due = now + dt.timedelta(days=rules.EMPLOYER_HANDOUT_DAYS)
    uow.timers.add(new_timer(EMPLOYER_HANDOUT, card.card_id, "A7.4", due), now)


def _card_change(
    uow: CardUnitOfWork, timer: TimerRecord, change_for: Callable[[Card], rules.Change], done: str
) -> str:
    card = uow.cards.get(timer.target, for_update=True)
    if card is None:
        return "no such card"
    change = change_for(card)
    if change.card is card and not change.notices:
        return f"nothing to do: the card is {card.status.value}"
    uow.cards.record(change)
    return done


def handlers(clock: Clock) -> dict[str, Handler]:
    def expire(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        return _card_change(
            uow,
            timer,
            lambda card: rules.expire_temporary_loss(card, SYSTEM, clock.now()),
            "SS function restored",
        )

    def overdue(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        now = clock.now()
        card = uow.cards.get(timer.target)
        late = (
            (now.astimezone(BEIJING).date() - card.due_date).days
            if card is not None and card.due_date
            else 0
        )
        return _card_change(
            uow,
            timer,
            lambda c: rules.production_overdue(c, now, timer.rule),
            f"flagged: {late} day(s) late",
        )

    def handout(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        return _card_change(
            uow,
            timer,
            lambda card: rules.handout_overdue(card, SYSTEM, clock.now()),
            "flagged and marked for return to the bank",
        )

    return {TEMPORARY_LOSS_EXPIRY: expire, PRODUCTION_OVERDUE: overdue, EMPLOYER_HANDOUT: handout}
