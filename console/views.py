"""What each page shows, read from the services (runs in a worker thread: gRPC calls block).

Each function takes the request's query and the backend and returns the page's context. Nothing
here renders HTML, and nothing keeps personal data: cards arrive with their document and mobile
numbers already masked by the card service, and the pages mask again before showing them.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from console.backend import Backend
from services.platform.errors import DomainError
from services.platform.masking import mask_document_number
from services.platform.protoconv import enum_name, enum_value
from sscard.bank.v1 import ledger_pb2
from sscard.card.v1 import card_pb2
from sscard.transit.v1 import transit_pb2

BEIJING = dt.timezone(dt.timedelta(hours=8))
CHART_DAYS = 14
ACTIVE_SAGA_STATES = (card_pb2.SAGA_STATE_RUNNING, card_pb2.SAGA_STATE_COMPENSATING)


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    href: str


@dataclass(frozen=True)
class Tile:
    """One figure of the overview: a number (None when its service did not answer), a link to
    its list, and perhaps a chart."""

    title: str
    value: int | None
    href: str
    bars: tuple[Bar, ...] = ()
    error: str = ""


def _tile(title: str, href: str, read: Callable[[], tuple[int, tuple[Bar, ...]]]) -> Tile:
    try:
        value, bars = read()
    except DomainError as exc:
        return Tile(title, None, href, error=exc.reason)
    return Tile(title, value, href, bars)


def _stamp(ts: Any) -> dt.datetime:
    return (
        ts.ToDatetime(dt.UTC) if ts.seconds or ts.nanos else dt.datetime.min.replace(tzinfo=dt.UTC)
    )


def overview(backend: Backend, now: dt.datetime, wall: dt.datetime) -> dict[str, Any]:
    """``now`` on the suite's clock (deadlines), ``wall`` on the wall clock: the card service
    stamps sagas with wall time, as their retries wait in real time."""

    def applications() -> tuple[int, tuple[Bar, ...]]:
        today = wall.astimezone(BEIJING).date()
        days = [today - dt.timedelta(days=n) for n in reversed(range(CHART_DAYS))]
        per_day = Counter(
            _stamp(s.created_at).astimezone(BEIJING).date()
            for s in backend.sagas(kind="application")
        )
        bars = tuple(Bar(d.strftime("%d"), per_day[d], "/sagas?kind=application") for d in days)
        return sum(per_day[d] for d in days), bars

    def sagas() -> tuple[int, tuple[Bar, ...]]:
        by_state = Counter(int(s.state) for s in backend.sagas())
        bars = tuple(
            Bar(name.lower()[:7], by_state[value], f"/sagas?state={name}")
            for name, value in _named(card_pb2.SagaState)
        )
        return sum(by_state[s] for s in ACTIVE_SAGA_STATES), bars

    def deadlines() -> tuple[int, tuple[Bar, ...]]:
        due = backend.due_before(now + dt.timedelta(days=7))
        overdue = sum(1 for d in due if d.overdue)
        bars = (
            Bar("overdue", overdue, "/deadlines?overdue=1"),
            Bar("week", len(due) - overdue, "/deadlines"),
        )
        return len(due), bars

    def alerts() -> tuple[int, tuple[Bar, ...]]:
        found = Counter(int(a.status) for a in backend.alerts())
        bars = tuple(
            Bar(name.removeprefix("ALERT_").lower()[:7], found[value], f"/alerts?status={name}")
            for name, value in _named(ledger_pb2.AlertStatus)
        )
        return found[ledger_pb2.ALERT_STATUS_ALERT_OPEN] + found[
            ledger_pb2.ALERT_STATUS_ALERT_ASSIGNED
        ], bars

    def refunds() -> tuple[int, tuple[Bar, ...]]:
        return len(backend.refunds(transit_pb2.REFUND_STATE_SENDING)), ()

    return {
        "tiles": [
            _tile(f"Applications, last {CHART_DAYS} days", "/sagas?kind=application", applications),
            _tile("Sagas under way", "/sagas?active=1", sagas),
            _tile("Deadlines due within a week", "/deadlines", deadlines),
            _tile("Alerts open", "/alerts", alerts),
            _tile("Transit refunds pending", "/refunds", refunds),
        ]
    }


def _named(enum: Any) -> list[tuple[str, int]]:
    """A proto enum's values but the unspecified one, each with the domain's name the console
    shows and puts in its query strings (``FAILED``, not ``SAGA_STATE_FAILED``)."""
    return [(enum_name(enum, value), value) for value in enum.values() if value]


def _enum(enum: Any, name: str) -> int:
    """The value of the domain's ``name`` in a proto enum; 0 (any) for an empty or unknown
    name."""
    try:
        return int(enum_value(enum, name))
    except ValueError:
        return 0


def _int(query: Mapping[str, str], name: str) -> int:
    text = query.get(name, "").strip()
    return int(text) if text.isdigit() else 0


def sagas(backend: Backend, query: Mapping[str, str], wall: dt.datetime) -> dict[str, Any]:
    """Sagas filtered by kind and state (by the card service), by age and retries (here); ages
    on the wall clock, as the card service stamps sagas."""
    kind = query.get("kind", "").strip()
    state = _enum(card_pb2.SagaState, query.get("state", ""))
    min_age = _int(query, "min_age_minutes")
    min_retries = _int(query, "min_retries")
    active = query.get("active") == "1"
    found = backend.sagas(state=state, kind=kind, card_id=query.get("card_id", "").strip())
    shown = [
        s
        for s in found
        if (not active or s.state in ACTIVE_SAGA_STATES)
        and s.retries >= min_retries
        and (not min_age or wall - _stamp(s.created_at) >= dt.timedelta(minutes=min_age))
    ]
    return {
        "sagas": shown,
        "kinds": sorted({s.kind for s in found} | {"application", "replacement", kind} - {""}),
        "states": [n for n, _ in _named(card_pb2.SagaState)],
        "filters": {
            "kind": kind,
            "state": enum_name(card_pb2.SagaState, state),
            "min_age_minutes": min_age or "",
            "min_retries": min_retries or "",
            "active": active,
        },
    }


def saga(backend: Backend, saga_id: str) -> dict[str, Any]:
    return {"saga": backend.saga(saga_id)}


def deadlines(backend: Backend, query: Mapping[str, str], now: dt.datetime) -> dict[str, Any]:
    """Pending deadlines (days late for overdue ones, on the suite's clock), or fired ones with
    their outcome (e.g. a card flagged as made late, A22.1)."""
    rule = query.get("rule", "").strip()
    overdue = query.get("overdue") == "1"
    state = _enum(card_pb2.DeadlineState, query.get("state", "")) or card_pb2.DEADLINE_STATE_PENDING
    rows = []
    for d in backend.deadlines(state=state, rule=rule, overdue_only=overdue):
        late = (now - _stamp(d.due_at)).days if d.overdue else 0
        rows.append((d, late))
    return {
        "rows": rows,
        "states": [n for n, _ in _named(card_pb2.DeadlineState)],
        "filters": {
            "rule": rule,
            "overdue": overdue,
            "state": enum_name(card_pb2.DeadlineState, state),
        },
    }


def alerts(backend: Backend, query: Mapping[str, str]) -> dict[str, Any]:
    status = _enum(ledger_pb2.AlertStatus, query.get("status", ""))
    return {
        "alerts": backend.alerts(status),
        "statuses": [n for n, _ in _named(ledger_pb2.AlertStatus)],
        "filters": {"status": enum_name(ledger_pb2.AlertStatus, status)},
    }


def alert(backend: Backend, alert_id: str) -> ledger_pb2.Alert | None:
    return next((a for a in backend.alerts() if a.alert_id == alert_id), None)


def refunds(backend: Backend, query: Mapping[str, str]) -> dict[str, Any]:
    state = (
        _enum(transit_pb2.RefundState, query.get("state", "")) or transit_pb2.REFUND_STATE_SENDING
    )
    return {
        "refunds": backend.refunds(state),
        "states": [n for n, _ in _named(transit_pb2.RefundState)],
        "filters": {"state": enum_name(transit_pb2.RefundState, state)},
    }


def _optional(read: Callable[[], Any]) -> tuple[Any, str]:
    """What a second service says about the card, or why it could not say (the card page
    still shows what the card service knows)."""
    try:
        return read(), ""
    except DomainError as exc:
        return None, exc.reason


def card(backend: Backend, card_id: str) -> dict[str, Any]:
    found = backend.card(card_id)
    document = found.document.number_masked or mask_document_number(found.document.number)
    wallet, wallet_error = _optional(lambda: backend.wallet(card_id))
    account, account_error = _optional(lambda: backend.account(card_id))
    return {
        "card": found,
        "document": document,
        "mobile": found.mobile_masked,
        "sagas": _optional(lambda: backend.sagas(card_id=card_id))[0] or [],
        "wallet": wallet,
        "wallet_entries": backend.wallet_entries(card_id) if wallet is not None else [],
        "wallet_error": wallet_error,
        "account": account,
        "ledger_entries": backend.ledger_entries(card_id) if account is not None else [],
        "account_error": account_error,
    }
