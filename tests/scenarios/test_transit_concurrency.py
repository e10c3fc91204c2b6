"""The wallet under concurrent load, after Jepsen's bank test, on SQLite and PostgreSQL: 1,000
top-ups and refunds on a few cards from many threads over real gRPC, some sent twice with the
same request id (a kiosk that timed out and retried). Whatever the interleaving, every card's
balance equals the sum of the operations that committed, each request id moves money once, the
ledger's running balance never goes negative nor past the cap (A10.2), and every refunded fen
reaches the bank.

The card service and the bank's ledger are one small fake over real gRPC: every card is ACTIVE,
and credits are recorded once per request id.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from services.platform.auth import Channel, Role
from services.transit.domain import rules
from services.transit.main import build as build_transit
from services.transit.store import wallet_entries, wallets
from sscard.bank.v1 import ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.transit.v1 import transit_pb2 as tpb
from sscard.transit.v1 import transit_pb2_grpc
from tests.support import wait_serving
from tests.trust import TestTrust

CARDS = [f"card-jepsen-{i}" for i in range(4)]
OPERATIONS = 1_000
RETRIED = 0.15  # share of operations sent twice with the same request id
REFUNDS = 0.3  # share of operations that are refunds at a branch
THREADS = 24
YUAN = 100


class FakeCardAndLedger(card_pb2_grpc.CardServiceServicer, ledger_pb2_grpc.LedgerServiceServicer):
    """Every card is active at ICBC; credits are booked once per request id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.credits: dict[str, tuple[str, int]] = {}

    def QueryStatus(self, request: Any, context: Any) -> card_pb2.QueryStatusResponse:
        return card_pb2.QueryStatusResponse(
            card_id=request.card_id, status=card_pb2.CARD_STATUS_ACTIVE
        )

    def GetCard(self, request: Any, context: Any) -> card_pb2.Card:
        return card_pb2.Card(
            card_id=request.card_id,
            status=card_pb2.CARD_STATUS_ACTIVE,
            bank_code="ICBC",
            person_id="p-1",
        )

    def Credit(self, request: Any, context: Any) -> ledger_pb2.LedgerEntry:
        with self.lock:
            self.credits.setdefault(request.request_id, (request.card_id, request.amount_fen))
        return ledger_pb2.LedgerEntry(entry_id=f"bank-{request.request_id}")


@pytest.fixture
def fake(trust: TestTrust) -> Iterator[tuple[FakeCardAndLedger, int]]:
    servicer = FakeCardAndLedger()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    card_pb2_grpc.add_CardServiceServicer_to_server(servicer, server)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, server)
    port = trust.listen(server, "127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(0)


def _until_settled(call: Callable[[], Any]) -> tuple[str, Any]:
    """('ok', answer) or ('refused', reason code); a call still running elsewhere is retried."""
    while True:
        try:
            return "ok", call()
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE):
                time.sleep(0.01)
                continue
            return "refused", exc.code()


def test_A10_2_concurrent_top_ups_and_refunds_keep_every_balance_exact(
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    token: Callable[..., Any],
    fake: tuple[FakeCardAndLedger, int],
) -> None:
    servicer, port = fake
    service_env["SSCARD_CARD_PORT"] = str(port)
    service_env["SSCARD_BANK_PORT"] = str(port)
    running = start_service("transit", build_transit)
    wait_serving(running.channel)
    stub = transit_pb2_grpc.TransitServiceStub(running.channel)
    kiosk = token(channel=Channel.TRANSIT_OUTLET, roles=(Role.COUNTER,), caller="kiosk-1")
    branch = token(channel=Channel.BANK_BRANCH, roles=(Role.COUNTER,), caller="branch-1")

    rng = random.Random(20261127)
    plan: list[tuple[str, str, int]] = []  # (kind, card, amount)
    for _ in range(OPERATIONS):
        card = rng.choice(CARDS)
        if rng.random() < REFUNDS:
            plan.append(("refund", card, rng.randint(1, 150) * YUAN))
        else:
            plan.append(("top_up", card, rng.randint(1, 300) * YUAN))
    sends = [(i, *op) for i, op in enumerate(plan)]
    sends += [(i, *plan[i]) for i in rng.sample(range(OPERATIONS), int(OPERATIONS * RETRIED))]
    rng.shuffle(sends)

    outcomes: dict[int, list[tuple[str, Any]]] = defaultdict(list)
    guard = threading.Lock()

    def send(i: int, kind: str, card: str, amount: int) -> None:
        rid = f"op-{i}"
        if kind == "top_up":
            request: Any = tpb.TopUpRequest(request_id=rid, card_id=card, amount_fen=amount)
            outcome = _until_settled(lambda: stub.TopUp(request, metadata=kiosk))
        else:
            request = tpb.RefundRequest(request_id=rid, card_id=card, amount_fen=amount)
            outcome = _until_settled(lambda: stub.Refund(request, metadata=branch))
        with guard:
            outcomes[i].append(outcome)

    with futures.ThreadPoolExecutor(THREADS) as pool:
        for done in [pool.submit(send, *s) for s in sends]:
            done.result()

    # Each request id has one answer, however often it was sent.
    expected: dict[str, int] = dict.fromkeys(CARDS, 0)
    refunded: dict[str, int] = {}
    for i, answers in outcomes.items():
        assert all(a == answers[0] for a in answers), f"op-{i} answered differently"
        status, answer = answers[0]
        kind, card, amount = plan[i]
        if status != "ok":
            assert answer == grpc.StatusCode.FAILED_PRECONDITION  # cap or balance, nothing else
            continue
        if kind == "top_up":
            expected[card] += amount
        else:
            expected[card] -= answer.amount_fen
            refunded[answer.refund_id] = answer.amount_fen
    committed = sum(1 for a in outcomes.values() if a[0][0] == "ok")
    assert committed > OPERATIONS // 2  # the test exercised real money, not only refusals

    db = running.deps.db
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(wallet_entries).order_by(wallet_entries.c.card_id, wallet_entries.c.entry_id)
        ).all()
        balances = dict(conn.execute(select(wallets.c.card_id, wallets.c.balance_fen)).all())
    running_balance: dict[str, int] = defaultdict(int)
    references: set[tuple[str, str]] = set()
    for row in rows:
        key = (row.kind, row.reference)
        assert key not in references, f"{key} booked twice"
        references.add(key)
        running_balance[row.card_id] += row.amount_fen
        assert row.balance_after_fen == running_balance[row.card_id]
        assert 0 <= row.balance_after_fen <= rules.BALANCE_CAP_FEN
    for card in CARDS:
        assert balances.get(card, 0) == expected[card] == running_balance[card]
        wallet = stub.GetBalance(tpb.GetBalanceRequest(card_id=card), metadata=kiosk)
        assert wallet.balance_fen == expected[card]

    # Every refunded fen reaches the bank, once.
    deadline = time.monotonic() + 60
    while len(servicer.credits) < len(refunded) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {rid: amount for rid, (_, amount) in servicer.credits.items()} == refunded
