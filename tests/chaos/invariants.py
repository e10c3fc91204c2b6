"""After a run: let the suite settle, then check what must hold whatever the faults did."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from sscard.bank.v1 import bank_pb2, ledger_pb2
from sscard.card.v1 import card_pb2 as pb
from sscard.identity.v1 import identity_pb2
from sscard.transit.v1 import transit_pb2 as tpb
from tests.chaos.workload import MOBILE, Driver

SETTLE_SECONDS = 120
OUT_OF_USE = (
    pb.CARD_STATUS_REFUSED,
    pb.CARD_STATUS_WITHDRAWN,
    pb.CARD_STATUS_SS_CANCELLED,
    pb.CARD_STATUS_REPLACED,
)


def _pages(list_call: Callable[[str], Any], field: str) -> Iterator[Any]:
    token = ""
    for _ in range(1000):
        page = list_call(token)
        yield from getattr(page, field)
        token = page.next_page_token
        if not token:
            return


def sagas(driver: Driver) -> list[pb.Saga]:
    return list(
        _pages(
            lambda token: driver.read(
                lambda t: driver.ops_stub().ListSagas(
                    pb.ListSagasRequest(page_size=500, page_token=token),
                    metadata=driver.ops,
                    timeout=t,
                )
            ),
            "sagas",
        )
    )


def deadlines(driver: Driver, **where: Any) -> list[pb.Deadline]:
    return list(
        _pages(
            lambda token: driver.read(
                lambda t: driver.ops_stub().ListDeadlines(
                    pb.ListDeadlinesRequest(page_size=500, page_token=token, **where),
                    metadata=driver.ops,
                    timeout=t,
                )
            ),
            "deadlines",
        )
    )


def card_ids(driver: Driver) -> list[str]:
    """Every card the driver made or any saga is for (an answer lost to a fault included)."""
    known = {slot.card_id for slot in driver.world.cards.values() if slot.card_id}
    return sorted(known | {s.card_id for s in sagas(driver) if s.card_id})


def wallet_entries(driver: Driver, card_id: str) -> list[tpb.Entry]:
    return list(
        _pages(
            lambda token: driver.read(
                lambda t: driver.transit.ListTransactions(
                    tpb.ListTransactionsRequest(card_id=card_id, page_size=200, page_token=token),
                    metadata=driver.ops,
                    timeout=t,
                )
            ),
            "entries",
        )
    )


def pending_refunds(driver: Driver, cards: list[str]) -> list[str]:
    refunds = set(driver.world.refunds)
    for card_id in cards:
        refunds |= {
            e.reference
            for e in wallet_entries(driver, card_id)
            if e.kind in (tpb.ENTRY_KIND_REFUND, tpb.ENTRY_KIND_TRANSFER_OUT)
        }
    return [
        r
        for r in sorted(refunds)
        if driver.read(
            lambda t, r=r: driver.transit.GetRefund(
                tpb.GetRefundRequest(refund_id=r), metadata=driver.ops, timeout=t
            )
        ).state
        == tpb.REFUND_STATE_SENDING
    ]


def settle(driver: Driver, bound: float = SETTLE_SECONDS) -> list[str]:
    """Heal every fault and wait until no saga runs, no refund is on its way and no deadline
    is overdue. Retries wait on the suite's clock too: while something still waits, the clock
    moves on a quarter of an hour at a time. Answers what still waits at the bound."""
    driver.cluster.heal()
    deadline = time.monotonic() + bound
    nudge = time.monotonic() + 10
    while True:
        running = [
            f"saga {s.kind} {s.card_id} at {s.step} ({s.last_error or 'no error'})"
            for s in sagas(driver)
            if s.state in (pb.SAGA_STATE_RUNNING, pb.SAGA_STATE_COMPENSATING)
        ]
        waiting = running + [
            f"refund {r} SENDING" for r in pending_refunds(driver, card_ids(driver))
        ]
        waiting += [
            f"deadline {d.kind} {d.target} overdue" for d in deadlines(driver, overdue_only=True)
        ]
        if not waiting or time.monotonic() > deadline:
            return waiting
        if time.monotonic() > nudge:
            driver.cluster.clock.advance(dt.timedelta(minutes=15))
            nudge = time.monotonic() + 10
        time.sleep(1)


def _not_found(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def check_money(driver: Driver, cards: list[str]) -> list[str]:
    """Every fen has a place: each balance is the sum of its entries, never negative, zero once
    closed; what left the wallets arrived at the bank; each acknowledged top-up and credit is
    booked exactly once, and nothing the driver did not send is booked."""
    found: list[str] = []
    out_of_wallets = arrived = 0
    topups: Counter[str] = Counter()
    credits: Counter[str] = Counter()
    accounts: set[str] = set()
    for card_id in cards:
        wallet = driver.read(
            lambda t, c=card_id: driver.transit.GetBalance(
                tpb.GetBalanceRequest(card_id=c), metadata=driver.ops, timeout=t
            )
        )
        entries = wallet_entries(driver, card_id)
        if wallet.balance_fen != sum(e.amount_fen for e in entries):
            found.append(f"money: wallet {card_id} balance is not the sum of its entries")
        if wallet.balance_fen < 0:
            found.append(f"money: wallet {card_id} negative ({wallet.balance_fen})")
        if wallet.status == tpb.WALLET_STATUS_CLOSED and wallet.balance_fen:
            found.append(f"money: closed wallet {card_id} holds {wallet.balance_fen} fen")
        for e in entries:
            if e.kind == tpb.ENTRY_KIND_TOP_UP:
                topups[e.reference] += 1
                if driver.world.topups.get(e.reference, (card_id,))[0] != card_id:
                    found.append(f"money: top-up {e.reference} booked on another card")
            elif e.kind in (
                tpb.ENTRY_KIND_REFUND,
                tpb.ENTRY_KIND_TRANSFER_OUT,
                tpb.ENTRY_KIND_REVERSAL,
            ):
                out_of_wallets -= e.amount_fen
        account = driver.read(
            lambda t, c=card_id: _not_found(
                lambda: driver.ledger.GetBalance(
                    ledger_pb2.GetBalanceRequest(card_id=c), metadata=driver.ops, timeout=t
                )
            )
        )
        if account is None or account.account_id in accounts:
            continue  # a replacement without a bank change keeps the account: count it once
        accounts.add(account.account_id)
        booked = list(
            _pages(
                lambda token, c=card_id: driver.read(
                    lambda t: driver.ledger.ListEntries(
                        ledger_pb2.ListEntriesRequest(card_id=c, page_size=200, page_token=token),
                        metadata=driver.ops,
                        timeout=t,
                    )
                ),
                "entries",
            )
        )
        if account.balance_fen != sum(e.amount_fen for e in booked):
            found.append(f"money: account of {card_id} balance is not the sum of its entries")
        if account.balance_fen < 0:
            found.append(f"money: account of {card_id} negative ({account.balance_fen})")
        if account.closed and account.balance_fen:
            found.append(f"money: closed account of {card_id} holds {account.balance_fen} fen")
        for e in booked:
            if e.source == ledger_pb2.ENTRY_SOURCE_TRANSIT_REFUND:
                arrived += e.amount_fen
            if e.reference in driver.world.credits or e.reference.startswith("pension-"):
                credits[e.reference] += 1
    if out_of_wallets != arrived:
        found.append(
            f"money: {out_of_wallets} fen left the wallets, {arrived} fen arrived at the bank"
        )
    for request_id in driver.world.topups:
        if topups[request_id] != 1:
            found.append(f"money: acknowledged top-up {request_id} booked {topups[request_id]}x")
    sent = set(driver.world.topups) | set(driver.world.unsure_topups)
    for reference, times in topups.items():
        if times > 1 or reference not in sent:
            found.append(f"money: top-up {reference} booked {times}x")
    for reference in driver.world.credits:
        if credits[reference] != 1:
            found.append(f"money: acknowledged credit {reference} booked {credits[reference]}x")
    return found


def check_one_card(driver: Driver) -> list[str]:
    """A person has one card: identity's register, the card service and the bank agree."""
    found: list[str] = []
    by_person: dict[str, list[str]] = {}
    for slot in driver.world.cards.values():
        if slot.card_id:
            by_person.setdefault(slot.person, []).append(slot.card_id)
    for key, person in sorted(driver.world.people.items()):
        registered = driver.read(
            lambda t, p=person: driver.identity.GetPerson(
                identity_pb2.GetPersonRequest(person=identity_pb2.PersonRef(document=p.document())),
                metadata=driver.service,
                timeout=t,
            )
        ).person.registered_card_id
        latest = driver.read(
            lambda t, p=person: _not_found(
                lambda: driver.card().QueryStatus(
                    pb.QueryStatusRequest(document=p.document()), metadata=driver.ops, timeout=t
                )
            )
        )
        cards = set(by_person.get(key, []))
        if latest is not None:
            cards.add(latest.card_id)
        if registered:
            cards.add(registered)
        status = {
            c: driver.read(
                lambda t, c=c: driver.card().GetCard(
                    pb.GetCardRequest(card_id=c), metadata=driver.ops, timeout=t
                )
            ).status
            for c in sorted(cards)
        }
        active = [c for c, s in status.items() if s == pb.CARD_STATUS_ACTIVE]
        # The place moves to a replacement at once; the old card works on until the new one
        # is activated (A16.5).
        replaced = {
            driver.world.cards[slot.old].card_id
            for slot in driver.world.cards.values()
            if slot.old
            and slot.card_id == registered
            and status.get(registered) != pb.CARD_STATUS_ACTIVE
        }
        if len(active) > 1:
            found.append(f"one card: {key} holds {len(active)} active cards")
        if active and registered != active[0] and active[0] not in replaced:
            found.append(f"one card: {key}'s active card {active[0]} is not the registered one")
        if registered and status[registered] in OUT_OF_USE:
            found.append(
                f"one card: {key}'s registered card {registered} is "
                f"{pb.CardStatus.Name(status[registered])}"
            )
        for card_id, card_status in status.items():
            account = driver.read(
                lambda t, c=card_id: _not_found(
                    lambda: driver.bank.GetAccount(
                        bank_pb2.GetAccountRequest(card_id=c), metadata=driver.ops, timeout=t
                    )
                )
            )
            opened = account is not None and account.status == bank_pb2.ACCOUNT_STATUS_OPENED
            if card_status == pb.CARD_STATUS_REFUSED and opened:
                found.append(f"one card: refused card {card_id} of {key} has an open account")
            if card_status == pb.CARD_STATUS_ACTIVE and not opened:
                found.append(f"one card: active card {card_id} of {key} has no open account")
    return found


def check_sagas(driver: Driver) -> list[str]:
    """Every saga ended (or waits visibly, its error shown); no card applied for twice."""
    found: list[str] = []
    listed = sagas(driver)
    ids = Counter(s.saga_id for s in listed)
    found += [f"sagas: {saga_id} listed {n}x" for saga_id, n in ids.items() if n > 1]
    applications = Counter(s.card_id for s in listed if s.kind == "application")
    found += [f"sagas: card {c} has {n} applications" for c, n in applications.items() if n > 1]
    for s in listed:
        if s.state in (pb.SAGA_STATE_RUNNING, pb.SAGA_STATE_COMPENSATING) and not s.last_error:
            found.append(f"sagas: {s.kind} {s.card_id} never ended, at {s.step}, no error shown")
    return found


def check_deadlines(driver: Driver) -> list[str]:
    """Every due timer fired, and once."""
    found = [
        f"deadlines: {d.kind} {d.target} ({d.rule}) overdue, never fired: {d.outcome}"
        for d in deadlines(driver, overdue_only=True)
    ]
    fired = Counter(
        (d.kind, d.target, d.due_at.ToSeconds())
        for d in deadlines(driver, state=pb.DEADLINE_STATE_FIRED)
    )
    found += [f"deadlines: {k[0]} {k[1]} fired {n}x" for k, n in fired.items() if n > 1]
    return found


def check_logs(driver: Driver) -> list[str]:
    """No full ID number or phone number in any line any process wrote."""
    secrets = {p.number for p in driver.world.people.values()} | {MOBILE}
    found: list[str] = []
    for path in driver.cluster.logs():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(secret in line for secret in secrets):
                found.append(f"logs: {path.name}:{number} shows an ID or phone number")
                break
    return found


def check(driver: Driver) -> tuple[list[str], list[str]]:
    """Settle, then every invariant: the violations, and what still waits for an operator."""
    waiting = settle(driver)
    cards = card_ids(driver)
    found = list(driver.world.violations)
    found += check_money(driver, cards)
    found += check_one_card(driver)
    found += check_sagas(driver)
    found += check_deadlines(driver)
    found += check_logs(driver)
    return found, waiting
