"""Bulk loader for benchmarks: active cards, as the card service's own write path leaves them.

A card here is written by the card service's and the transit service's own code, in bulk
transactions, without the remote calls (identity, bank) that would take hours for a million
cards:

- the application exactly as ``CardService/Apply`` records it at a branch counter
  (``service._start``: the card, its encrypted contact data and photo, its first transition),
  with its application saga stored COMPLETED at its last step;
- then the domain's own moves as the saga and the bank's notices drive them: identity verified
  (A4.1), ordered (A22.1), made (A7.1), collected at the branch (A7.2), activated (A8.1), saved
  by ``CardRepository.record_many`` with every transition and notice. Left out: the production
  deadline (A22), which the real path sets and cancels within days, so it leaves a CANCELLED
  timer row per card; the timers table here holds only what a benchmark puts there;
- in transit, a first top-up of 1 yuan at a kiosk: the wallet row (open, 100 fen), its
  TOP_UP entry and transit's view of the card (``card_status``: ACTIVE as the card service
  answered, version 0 so any push of the card service replaces it), as ``TopUp`` leaves them,
  inserted in bulk.

The read paths (``GetCard``, ``QueryStatus``, ``TopUp``, the claims) find the same rows, the
same indexes and the same encrypted columns as for a card that went through the whole suite;
only the identity and bank services have no record of these cards, which no benchmark here
asks them for. Document numbers are valid and distinct; person ids are opaque and distinct.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from services.card.deadlines import TEMPORARY_LOSS_EXPIRY
from services.card.domain import card as rules
from services.card.domain.application import Applicant
from services.card.scheduler import new_timer
from services.card.service import _start
from services.card.store import CardUnitOfWork, timers
from services.platform.auth import Caller, Channel
from services.platform.db import Database
from services.platform.documents import gb11643_check_char
from services.platform.pii import PiiCipher
from services.transit.domain.wallet import EntryKind, WalletStatus
from services.transit.store import card_status, wallet_entries, wallets

BANK = "ICBC"
BRANCH = "ICBC-0101"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
COUNTER = Caller("bench-branch", Channel.BANK_BRANCH, outlet_id=BRANCH, operator_id="op-1")
SYSTEM = Caller("card-scheduler", Channel.INTERNAL)
KIOSK = Caller("bench-kiosk", Channel.TRANSIT_OUTLET, outlet_id="K-1")
CHUNK = 1000  # cards per transaction
# reserve_issuance, record_verified, open_account, order_card, in_production (flows.py)
APPLICATION_STEPS = 5


def document_number(serial: int) -> str:
    """The ``serial``-th of distinct valid resident ID numbers (GB 11643 check character)."""
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=serial // 1000)
    first17 = f"110105{birth:%Y%m%d}{serial % 1000:03d}"
    return first17 + gb11643_check_char(first17)


def _chunks(first: int, count: int) -> Iterator[range]:
    for start in range(first, first + count, CHUNK):
        yield range(start, min(start + CHUNK, first + count))


def load_cards(
    db: Database,
    cipher: PiiCipher,
    count: int,
    now: dt.datetime,
    first: int = 0,
    lost_at: dt.datetime | None = None,
) -> list[str]:
    """``count`` ACTIVE cards (document serials ``first`` on), applied and moved through their
    life at ``now``; their card ids. With ``lost_at``, each is then reported temporarily lost
    at that moment (A13.2) with its A13.3 expiry timer, as ``ReportLoss`` records it (the
    bank's suspension, a saga of its own, left out)."""
    ids: list[str] = []
    for serials in _chunks(first, count):
        with CardUnitOfWork(db, cipher) as uow:
            started = _applied(uow, serials, now)
            uow.sagas.add_many(
                [replace(s, state="COMPLETED", step=APPLICATION_STEPS) for *_, s in started], now
            )
            changes = [_activated(card, now) for card, *_ in started]
            if lost_at is not None:
                changes = [_lost(change, lost_at) for change in changes]
                uow.session.execute(
                    timers.insert(), [expiry_row(c.card.card_id, lost_at) for c in changes]
                )
            uow.cards.record_many(changes)
            ids += [card.card_id for card, *_ in started]
            uow.commit()
    return ids


def load_applications(
    db: Database, cipher: PiiCipher, count: int, now: dt.datetime, first: int
) -> None:
    """``count`` applications just received (document serials ``first`` on), their sagas
    RUNNING and due, exactly as ``CardService/Apply`` leaves them."""
    for serials in _chunks(first, count):
        with CardUnitOfWork(db, cipher) as uow:
            uow.sagas.add_many([s for *_, s in _applied(uow, serials, now)], now)
            uow.commit()


def _applied(uow: CardUnitOfWork, serials: range, now: dt.datetime) -> list[Any]:
    """Applications at a branch counter for these document serials, their cards recorded;
    (card, contact, transition, saga) each, the saga not yet stored."""
    started = [
        _start(
            Applicant(
                "RESIDENT_ID",
                document_number(n),
                "张三",
                JPEG,
                "工程师",
                f"139{n % 100_000_000:08d}",
                "北京市东城区测试路1号",
                dt.date(2036, 1, 1),
            ),
            BANK,
            rules.Delivery.BRANCH_PICKUP,
            BRANCH,
            COUNTER,
            now,
        )
        for n in serials
    ]
    uow.cards.add_many(
        [(card, contact, transition) for card, contact, transition, _ in started],
        COUNTER.channel,
        COUNTER.outlet_id,
    )
    return started


def _activated(card: rules.Card, now: dt.datetime) -> rules.Change:
    """The card's moves from APPLIED to ACTIVE, as one change to record."""
    person = secrets.token_hex(16)
    account = f"acct-{secrets.token_hex(10)}"
    steps = [rules.verified(card, person, SYSTEM, now)]
    ordered = rules.ordered(replace(steps[-1].card, account_id=account), now.date(), SYSTEM, now)
    steps.append(ordered)
    number = f"{secrets.randbelow(10**9):09d}"
    steps.append(rules.produced(ordered.card, number, COUNTER, now))
    steps.append(rules.collect(steps[-1].card, rules.CollectionMethod.AT_BRANCH, COUNTER, now))
    steps.append(rules.activate(steps[-1].card, COUNTER, now))
    return rules.Change(
        steps[-1].card,
        [t for s in steps for t in s.transitions],
        [n for s in steps for n in s.notices],
    )


def load_wallets(db: Database, card_ids: Sequence[str], now: dt.datetime) -> None:
    """Each card's first top-up of 1 yuan at a kiosk: its wallet and ledger entry, and
    transit's view of the card as that first top-up leaves it (ACTIVE, as the card service
    answered; its holder not yet known)."""
    for start in range(0, len(card_ids), CHUNK):
        chunk = card_ids[start : start + CHUNK]
        with db.writing() as session:
            session.execute(
                wallets.insert(),
                [
                    dict(
                        card_id=card_id,
                        balance_fen=100,
                        status=WalletStatus.OPEN.value,
                        closed_reason=None,
                        created_at=now,
                        updated_at=now,
                    )
                    for card_id in chunk
                ],
            )
            session.execute(
                card_status.insert(),
                [
                    dict(card_id=card_id, status="ACTIVE", version=0, recorded_at=now)
                    for card_id in chunk
                ],
            )
            session.execute(
                wallet_entries.insert(),
                [
                    dict(
                        card_id=card_id,
                        kind=EntryKind.TOP_UP.value,
                        amount_fen=100,
                        balance_after_fen=100,
                        reference=f"load-{card_id}",
                        channel=KIOSK.channel.value,
                        outlet_id=KIOSK.outlet_id,
                        booked_at=now,
                    )
                    for card_id in chunk
                ],
            )


def _lost(change: rules.Change, at: dt.datetime) -> rules.Change:
    lost = rules.report_temporary_loss(change.card, COUNTER, at)
    return rules.Change(
        lost.card, change.transitions + lost.transitions, change.notices + lost.notices
    )


def expiry_row(card_id: str, at: dt.datetime) -> dict[str, object]:
    """The A13.3 timer row ``watch_temporary_loss`` writes for a loss reported ``at``."""
    timer = new_timer(TEMPORARY_LOSS_EXPIRY, card_id, "A13.3", rules.temporary_loss_lapses(at))
    return {
        "timer_id": timer.timer_id,
        "kind": timer.kind,
        "target": timer.target,
        "rule": timer.rule,
        "due_at": timer.due_at.astimezone(dt.UTC),
        "state": "PENDING",
        "outcome": "",
        "attempts": 0,
        "lease_owner": "",
        "lease_until": None,
        "created_at": at,
        "fired_at": None,
        "estimated_calendar": False,
    }
