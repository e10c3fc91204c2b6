"""The card service's deadlines: which timers the regulation's time rules set, and what each
does when it fires. Timers are kept and fired by the scheduler (``scheduler.py``); each handler
runs in the transaction that marks its timer fired, and returns its outcome in words.

- A13.3: a temporary loss expires after 15 natural days and the SS function restores itself;
  the holder is told, and that the financial function stays suspended until the issuing bank
  unlocks it.
- A22.1 / A22.2 / A22.4: a card still in production the day after its due date is flagged to
  operations with how late it is (mailing time does not count: only production is timed).
- A7.4: a card an employer has not handed out by the end (24:00 Beijing) of the 30th natural
  day after the day it collected it is flagged and marked for return to the issuing bank.
- A21.1: a card with a financial function not handed to its holder 6 months after it was made
  is withdrawn and the bank takes it back.
- A21.2: the bank takes back the card of a holder who died before receiving it within 10
  working days of the death being recorded; when it has not, operations are told how late.
- A16.7: six months after a change of issuing bank, the holder is told they may change again.
- A19.2: six months after the SS function alone was cancelled, the bank suspends the account's
  non-counter business.

A deadline counted in working days (A21.2, A22.2) through a year whose State Council holiday
schedule is not confirmed carries ``estimated_calendar`` (shown by ``OpsService.ListDeadlines``,
the console and the ``sscard_card_deadlines_estimated_calendar`` gauge); when operations load
the year, ``recount_estimated`` counts it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from services.card.clients import BankPort
from services.card.domain import card as rules
from services.card.domain.card import Card
from services.card.scheduler import Handler, new_timer
from services.card.store import CardUnitOfWork, TimerRecord
from services.card.tasks import start_bank_task, start_release_place
from services.platform.auth import Caller, Channel
from services.platform.calendar import WorkingDayCalendar
from services.platform.clock import BEIJING, Clock, beijing_date, day_after

TEMPORARY_LOSS_EXPIRY = "temporary_loss_expiry"
PRODUCTION_OVERDUE = "production_overdue"
EMPLOYER_HANDOUT = "employer_handout"
NOT_HANDED_OUT = "not_handed_out"
DEATH_RECALL = "death_recall"
BANK_CHANGE_LOCK_END = "bank_change_lock_end"
NON_COUNTER_SUSPENSION = "non_counter_suspension"
DEATH_RECALL_WORKING_DAYS = 10  # A21.2
NON_COUNTER_SUSPENSION_MONTHS = 6  # A19.2
SYSTEM = Caller("card-scheduler", Channel.INTERNAL)


def watch_temporary_loss(uow: CardUnitOfWork, card: Card, now: dt.datetime) -> None:
    """A13.3: the SS function restores itself when the 15 natural days of a temporary loss run
    out, at midnight (Beijing) ending the 15th day after the report."""
    due = rules.temporary_loss_lapses(now)
    uow.timers.add(new_timer(TEMPORARY_LOSS_EXPIRY, card.card_id, "A13.3", due), now)


def watch_production(
    uow: CardUnitOfWork, card: Card, rule: str, calendar: WorkingDayCalendar, now: dt.datetime
) -> None:
    """A22: check the card is made by its due date. The working days of A22.2 counted through
    a year whose holiday schedule is only estimated say so to operations."""
    if card.due_date is not None and card.status is rules.Status.IN_PRODUCTION:
        estimated = rule == "A22.2" and calendar.estimated_between(
            beijing_date(card.applied_at), card.due_date
        )
        due = day_after(card.due_date)
        uow.timers.add(new_timer(PRODUCTION_OVERDUE, card.card_id, rule, due, estimated), now)


def watch_handout(uow: CardUnitOfWork, card: Card, now: dt.datetime) -> None:
    """A7.4: the employer hands the card out within 30 natural days of collecting it: counted
    from the day after collection, to 24:00 of the 30th day (Civil Code art. 201, 203)."""
    due = day_after(beijing_date(now) + dt.timedelta(days=rules.EMPLOYER_HANDOUT_DAYS))
    uow.timers.add(new_timer(EMPLOYER_HANDOUT, card.card_id, "A7.4", due), now)


def watch_not_handed_out(uow: CardUnitOfWork, card: Card, now: dt.datetime) -> None:
    """A21.1: a card with a financial function reaches its holder within 6 months of being
    made."""
    if card.account_id:
        due = rules.months_later(now, rules.NOT_HANDED_OUT_MONTHS)
        uow.timers.add(new_timer(NOT_HANDED_OUT, card.card_id, "A21.1", due), now)


def watch_death_recall(
    uow: CardUnitOfWork, card: Card, calendar: WorkingDayCalendar, now: dt.datetime
) -> None:
    """A21.2: the bank takes the card back within 10 working days; a due date counted through a
    year whose schedule is only estimated says so to operations."""
    start = beijing_date(now)
    last_day = calendar.add_working_days(start, DEATH_RECALL_WORKING_DAYS)
    estimated = calendar.estimated_between(start, last_day)
    timer = new_timer(DEATH_RECALL, card.card_id, "A21.2", day_after(last_day), estimated)
    uow.timers.add(timer, now)


def recount_estimated(uow: CardUnitOfWork, calendar: WorkingDayCalendar, now: dt.datetime) -> int:
    """Count again, on the calendar now in force, the pending working-day deadlines that were
    counted on an estimate (A21.2, A22.2); a deadline whose years are all confirmed now loses
    its ``estimated_calendar`` flag, and a card in production gets its new due date. The number
    of deadlines recounted."""
    recounted = 0
    for timer in uow.timers.estimated_pending():
        if timer.kind == DEATH_RECALL and timer.created_at is not None:
            start = beijing_date(timer.created_at)
            last_day = calendar.add_working_days(start, DEATH_RECALL_WORKING_DAYS)
        elif timer.kind == PRODUCTION_OVERDUE:
            card = uow.cards.get(timer.target, for_update=True)
            if card is None:
                continue
            start = beijing_date(card.applied_at)
            last_day = calendar.add_working_days(start, rules.REISSUE_WORKING_DAYS)
            uow.cards.record(rules.due_date_recounted(card, last_day, now))
        else:
            continue
        estimated = calendar.estimated_between(start, last_day)
        if estimated and day_after(last_day) == timer.due_at:
            continue
        uow.timers.recount(timer.timer_id, day_after(last_day), estimated)
        recounted += 1
    return recounted


class CalendarWatch:
    """The maintenance chore that follows the calendar override file: when operations load a
    year (and once at start, for a year loaded while the service was down), the pending
    deadlines counted on an estimate are counted again."""

    def __init__(
        self,
        new_uow: Callable[..., CardUnitOfWork],
        calendar: WorkingDayCalendar,
        clock: Clock,
    ) -> None:
        self._new_uow = new_uow
        self._calendar = calendar
        self._clock = clock
        self._started = False

    def run(self) -> int:
        """The number of deadlines recounted."""
        if not self._calendar.refresh() and self._started:
            return 0
        with self._new_uow() as uow:
            recounted = recount_estimated(uow, self._calendar, self._clock.now())
            uow.commit()
        self._started = True
        return recounted


def watch_bank_change_lock(uow: CardUnitOfWork, card: Card, now: dt.datetime) -> None:
    """A16.7: the lock on another change of issuing bank ends after 6 months."""
    due = rules.months_later(now, rules.BANK_CHANGE_LOCK_MONTHS)
    uow.timers.add(new_timer(BANK_CHANGE_LOCK_END, card.card_id, "A16.7", due), now)


def watch_non_counter(uow: CardUnitOfWork, card: Card, now: dt.datetime) -> None:
    """A19.2: six months after the SS function alone is cancelled."""
    due = rules.months_later(now, NON_COUNTER_SUSPENSION_MONTHS)
    uow.timers.add(new_timer(NON_COUNTER_SUSPENSION, card.card_id, "A19.2", due), now)


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


def handlers(clock: Clock, bank: BankPort) -> dict[str, Handler]:
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

    def not_handed_out(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        card = uow.cards.get(timer.target, for_update=True)
        if card is None:
            return "no such card"
        change = rules.withdraw_not_handed_out(card, SYSTEM, clock.now())
        if change.card is card:
            return f"nothing to do: the card is {card.status.value}"
        uow.cards.record(change)
        start_bank_task(uow, card.card_id, action="recall", reason="NOT_HANDED_OUT")
        start_release_place(uow, card.card_id)
        return "withdrawn; the bank takes it back"

    def death_recall(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        card = uow.cards.get(timer.target)
        if card is None:
            return "no such card"
        if bank.recalled(card.card_id):
            return "taken back by the bank in time"
        text = (
            f"Card {card.card_id} of a deceased holder has not been taken back by "
            f"{card.bank_code} within {DEATH_RECALL_WORKING_DAYS} working days."
        )
        notice = rules.Notice(clock.now(), "operations", text, "A21.2")
        uow.cards.record(rules.Change(card, notices=[notice]))
        return "flagged: not taken back in time"

    def lock_end(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        return _card_change(
            uow,
            timer,
            lambda card: rules.bank_change_lock_ended(card, clock.now()),
            "the holder may change bank again",
        )

    def non_counter(uow: CardUnitOfWork, timer: TimerRecord) -> str:
        card = uow.cards.get(timer.target)
        if card is None:
            return "no such card"
        start_bank_task(uow, card.card_id, action="suspend_non_counter", reason="SS_CANCELLED")
        return "the bank suspends non-counter business"

    return {
        TEMPORARY_LOSS_EXPIRY: expire,
        PRODUCTION_OVERDUE: overdue,
        EMPLOYER_HANDOUT: handout,
        NOT_HANDED_OUT: not_handed_out,
        DEATH_RECALL: death_recall,
        BANK_CHANGE_LOCK_END: lock_end,
        NON_COUNTER_SUSPENSION: non_counter,
    }
