"""Card production orders and their time limits (A22), and the notice that a card is made (A7.1).

An order is ORDERED, then PRODUCED (card number assigned) or CANCELLED. A produced card can
still be cancelled: it is set aside for destruction. Due dates count from the Beijing date of
the application: a first application within 30 natural days (A22.1); a reissue or replacement
within 4 working days (A22.2, the working-day calendar of PRC holidays and make-up days). At an
instant branch of the chosen bank the card is made on the spot (A22.3) and due that same day.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace

from services.platform.calendar import WorkingDayCalendar
from services.platform.clock import beijing_date
from services.platform.errors import DomainError

FIRST_APPLICATION_NATURAL_DAYS = 30  # A22.1
REISSUE_WORKING_DAYS = 4  # A22.2
NOTICE_RETRY_BASE = dt.timedelta(seconds=0.5)
NOTICE_RETRY_CAP = dt.timedelta(seconds=60)


class ProductionKind(enum.Enum):
    FIRST = "FIRST"
    REISSUE = "REISSUE"
    REPLACEMENT = "REPLACEMENT"


class Delivery(enum.Enum):
    BRANCH_PICKUP = "BRANCH_PICKUP"
    MAIL = "MAIL"
    EMPLOYER = "EMPLOYER"


COLLECTED_AT_BRANCH = frozenset({Delivery.BRANCH_PICKUP, Delivery.EMPLOYER})


class OrderStatus(enum.Enum):
    ORDERED = "ORDERED"
    PRODUCED = "PRODUCED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class ProductionOrder:
    order_id: str
    card_id: str
    bank_code: str
    account_id: str
    kind: ProductionKind
    status: OrderStatus
    applied_at: dt.datetime
    applied_at_branch_id: str
    due_date: dt.date
    instant: bool
    delivery: Delivery
    pickup_branch_id: str
    created_at: dt.datetime
    card_number: str = ""
    produced_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None


def due_date(
    kind: ProductionKind, applied_at: dt.datetime, calendar: WorkingDayCalendar
) -> dt.date:
    """The last day the card must be made by (A22.1, A22.2)."""
    applied_on = beijing_date(applied_at)
    if kind is ProductionKind.FIRST:
        return calendar.add_natural_days(applied_on, FIRST_APPLICATION_NATURAL_DAYS)
    return calendar.add_working_days(applied_on, REISSUE_WORKING_DAYS)


@dataclass(frozen=True)
class OrderRequest:
    card_id: str
    bank_code: str
    account_id: str
    kind: ProductionKind
    applied_at: dt.datetime
    applied_at_branch_id: str
    delivery: Delivery
    pickup_branch_id: str


def new_order(
    order_id: str,
    request: OrderRequest,
    instant: bool,
    calendar: WorkingDayCalendar,
    now: dt.datetime,
) -> ProductionOrder:
    """An order as placed; an instant one is due the day of the application (A22.3)."""
    due = (
        beijing_date(request.applied_at)
        if instant
        else due_date(request.kind, request.applied_at, calendar)
    )
    return ProductionOrder(
        order_id=order_id,
        card_id=request.card_id,
        bank_code=request.bank_code,
        account_id=request.account_id,
        kind=request.kind,
        status=OrderStatus.ORDERED,
        applied_at=request.applied_at,
        applied_at_branch_id=request.applied_at_branch_id,
        due_date=due,
        instant=instant,
        delivery=request.delivery,
        pickup_branch_id=request.pickup_branch_id
        if request.delivery in COLLECTED_AT_BRANCH
        else "",
        created_at=now,
    )


def same_order(order: ProductionOrder, request: OrderRequest) -> ProductionOrder:
    """Ordering the same card again returns its order; a different order for it is refused."""
    if (order.bank_code, order.account_id, order.kind, order.delivery) != (
        request.bank_code,
        request.account_id,
        request.kind,
        request.delivery,
    ):
        raise DomainError(
            "CARD_ALREADY_ORDERED",
            "the card already has a different production order",
            rule="A22.1",
        )
    return order


def needs_production(order: ProductionOrder) -> bool:
    """True for an order still to be made; False if made already; refused if cancelled."""
    if order.status is OrderStatus.CANCELLED:
        raise DomainError(
            "ORDER_CANCELLED",
            "the production order was cancelled; the card must not be made",
            rule="A7.1",
        )
    return order.status is OrderStatus.ORDERED


def produce(order: ProductionOrder, card_number: str, now: dt.datetime) -> ProductionOrder:
    """ORDERED -> PRODUCED with its card number; the notice to the holder follows (A7.1)."""
    if not needs_production(order):
        return order
    return replace(order, status=OrderStatus.PRODUCED, card_number=card_number, produced_at=now)


def cancel(order: ProductionOrder, now: dt.datetime) -> ProductionOrder:
    """ORDERED or PRODUCED -> CANCELLED (a made card is set aside for destruction).

    Cancelling again changes nothing.
    """
    if order.status is OrderStatus.CANCELLED:
        return order
    return replace(order, status=OrderStatus.CANCELLED, cancelled_at=now)


def is_set_aside_for_destruction(order: ProductionOrder) -> bool:
    return order.status is OrderStatus.CANCELLED and order.produced_at is not None


# --- the notice to the card service (A7.1) ------------------------------------------------------


@dataclass(frozen=True)
class CardNotice:
    """The notice "this card is made", for the card service to pass on to the holder or the
    employer (A7.1)."""

    notice_id: int
    order_id: str
    card_id: str
    card_number: str
    produced_at: dt.datetime
    attempts: int

    @property
    def request_id(self) -> str:
        """The same on every attempt, so the card service records the notice once."""
        return f"produced:{self.order_id}"


def retry_delay(failed_attempts: int) -> dt.timedelta:
    """Exponential backoff after the n-th failed attempt: 0.5 s, 1 s, 2 s ... capped at 60 s."""
    if failed_attempts < 1:
        return dt.timedelta(0)
    exponent = min(failed_attempts - 1, 16)
    return min(NOTICE_RETRY_BASE * (1 << exponent), NOTICE_RETRY_CAP)
