"""The ledger under concurrent load, in the style of Jepsen's bank test, over real gRPC on
SQLite and PostgreSQL: 1,000 credits, debits and transfers from many threads on a few cards,
some sent twice at once with the same request_id. Afterwards every card's balance is its seed
plus the committed operations, no entry ever left a balance below zero, each request_id was
executed once, and each balance row equals the sum of its entries, entry by entry."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from sscard.bank.v1 import ledger_pb2 as pb
from tests.scenarios.test_bank_ledger import YUAN, Ledger
from tests.scenarios.test_bank_ledger import ledger as ledger
from tests.support import refusal

CARDS = ("card-a", "card-b", "card-c", "card-d")
SEED = 5_000 * YUAN
OPERATIONS = 1_000
RETRIED_EVERY = 7  # every 7th request is also sent a second time, concurrently


@dataclass(frozen=True)
class Op:
    request_id: str
    kind: str  # credit, debit, transfer
    card: str
    amount: int
    to_card: str = ""
    channel: int = pb.PAYMENT_CHANNEL_ONLINE_BANKING


def plan(rng: random.Random) -> list[Op]:
    """Amounts above 500 yuan and few counterparties: ordinary business for monitoring."""
    ops = []
    for n in range(OPERATIONS):
        kind = rng.choice(("credit", "debit", "debit", "transfer", "transfer"))
        card = rng.choice(CARDS)
        amount = rng.randrange(600, 1_500) * YUAN + rng.randrange(100)
        channel = rng.choice(
            (
                pb.PAYMENT_CHANNEL_ONLINE_BANKING,
                pb.PAYMENT_CHANNEL_ATM,
                pb.PAYMENT_CHANNEL_PAYMENT_COUNTER,
            )
        )
        to_card = rng.choice([c for c in CARDS if c != card]) if kind == "transfer" else ""
        ops.append(Op(f"op-{n}", kind, card, amount, to_card, channel))
    return ops


def send(ledger: Ledger, op: Op) -> tuple[str, Any]:
    """The definitive answer to ``op``: ("ok", response) or ("refused", reason). A call aborted
    because the same request_id is running elsewhere is retried, as a client would."""
    metadata = ledger.counter if op.channel == pb.PAYMENT_CHANNEL_PAYMENT_COUNTER else ledger.online
    while True:
        try:
            if op.kind == "credit":
                return "ok", ledger.ledger.Credit(
                    pb.CreditRequest(
                        request_id=op.request_id,
                        card_id=op.card,
                        amount_fen=op.amount,
                        source=pb.ENTRY_SOURCE_TRANSIT_REFUND,
                        reference=op.request_id,
                        counterparty="transit",
                    ),
                    metadata=ledger.service,
                )
            if op.kind == "debit":
                return "ok", ledger.ledger.Debit(
                    pb.DebitRequest(
                        request_id=op.request_id,
                        card_id=op.card,
                        amount_fen=op.amount,
                        channel=op.channel,  # type: ignore[arg-type]
                        reference=op.request_id,
                        counterparty="shop",
                    ),
                    metadata=metadata,
                )
            return "ok", ledger.ledger.Transfer(
                pb.TransferRequest(
                    request_id=op.request_id,
                    from_card_id=op.card,
                    to_card_id=op.to_card,
                    amount_fen=op.amount,
                    channel=op.channel,  # type: ignore[arg-type]
                    reference=op.request_id,
                ),
                metadata=metadata,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.ABORTED:  # REQUEST_IN_PROGRESS
                time.sleep(0.01)
                continue
            code, error = refusal(type("E", (), {"value": exc})())
            assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, error)
            return "refused", error.reason


def test_concurrent_credits_debits_and_transfers_keep_every_balance_exact(
    ledger: Ledger,
) -> None:
    for card in CARDS:
        ledger.account(card)
        ledger.credit(card, SEED, request_id=f"seed-{card}", counterparty="transit")
    ops = plan(random.Random(20261127))
    sends = [op for op in ops] + [op for n, op in enumerate(ops) if n % RETRIED_EVERY == 0]
    random.Random(7).shuffle(sends)
    answers: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    lock = threading.Lock()

    def run(op: Op) -> None:
        answer = send(ledger, op)
        with lock:
            answers[op.request_id].append(answer)

    with futures.ThreadPoolExecutor(max_workers=16) as pool:
        for done in [pool.submit(run, op) for op in sends]:
            done.result()

    expected = {card: SEED for card in CARDS}
    committed: set[str] = set()
    for op in ops:
        first, *again = answers[op.request_id]
        assert all(a == first for a in again)  # a retry gets the first answer
        outcome, value = first
        if outcome == "refused":
            assert value in {"INSUFFICIENT_FUNDS"}, value
            continue
        committed.add(op.request_id)
        if op.kind == "credit":
            expected[op.card] += op.amount
        else:
            expected[op.card] -= op.amount
            if op.to_card:
                expected[op.to_card] += op.amount
    assert 0 < len(committed) < OPERATIONS  # both outcomes happened

    executed: Counter[str] = Counter()
    for card in CARDS:
        entries = list(reversed(ledger.entries(card, page_size=500)))  # oldest first
        running = 0
        for entry in entries:
            running += entry.amount_fen
            assert entry.balance_after_fen == running >= 0  # never below zero, no lost update
            executed[entry.reference] += 1
        assert ledger.balance(card).balance_fen == running == expected[card]
    for op in ops:
        times = executed[op.request_id]
        if op.request_id not in committed:
            assert times == 0
        else:
            assert times == (2 if op.kind == "transfer" else 1)  # executed once


ROUNDS = 40


def race_a_refused_debit(ledger: Ledger, card: str, n: int) -> list[tuple[str, Any]]:
    """Send one debit twice at once while the credit that would cover it arrives."""
    debit = Op(f"refused-{n}", "debit", card, 10 * YUAN)
    start = threading.Barrier(3)
    answers: list[tuple[str, Any]] = []

    def retry() -> None:
        start.wait(10)
        answers.append(send(ledger, debit))

    def cover() -> None:
        start.wait(10)
        ledger.credit(card, 10 * YUAN, request_id=f"cover-{n}")

    threads = [threading.Thread(target=t) for t in (retry, retry, cover)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_two_concurrent_retries_of_a_refused_debit_answer_alike_and_book_once(
    ledger: Ledger,
) -> None:
    """A debit the balance cannot cover is sent twice at once under one request_id while the
    money that would cover it arrives. Whatever the order, both sends get the same answer (the
    first run's), never INTERNAL, and the debit is booked at most once: a refusal is stored
    before its request_id is free again, so the retry never runs the debit a second time."""
    card = "card-retried-refusal"
    ledger.account(card)
    outcomes: Counter[str] = Counter()
    for n in range(ROUNDS):
        answers = race_a_refused_debit(ledger, card, n)
        assert len(answers) == 2 and answers[0] == answers[1], answers
        outcomes[answers[0][0]] += 1
    booked = [e for e in ledger.entries(card, page_size=500) if e.reference.startswith("refused")]
    assert len(booked) == outcomes["ok"]
    assert ledger.balance(card).balance_fen == (ROUNDS - outcomes["ok"]) * 10 * YUAN
