"""Money leaving a wallet always arrives somewhere, on SQLite and PostgreSQL (A16.3, A19.1): a
refund waits in the transit service's outbox while the bank does not answer and arrives once it
does, credited once however often it was sent; a credit the bank refuses for good (no such
account) comes back into the wallet as a REVERSAL entry.

The card service and the bank's ledger are a small fake over real gRPC whose behaviour each test
sets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from services.platform.auth import Channel, Role
from services.transit.main import build as build_transit
from sscard.bank.v1 import ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.transit.v1 import transit_pb2 as tpb
from sscard.transit.v1 import transit_pb2_grpc
from tests.support import wait_serving
from tests.trust import TestTrust

YUAN = 100


class FakeBank(card_pb2_grpc.CardServiceServicer, ledger_pb2_grpc.LedgerServiceServicer):
    """Every card is active; the ledger is down, refuses, or books once per request id."""

    def __init__(self) -> None:
        self.mode = "book"  # "book", "down" or "no_account"
        self.lock = threading.Lock()
        self.attempts = 0
        self.booked: dict[str, tuple[str, int]] = {}

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
            self.attempts += 1
            if self.mode == "down":
                context.abort(grpc.StatusCode.UNAVAILABLE, "the bank is down")
            if self.mode == "no_account":
                context.abort(grpc.StatusCode.NOT_FOUND, "no such account")
            self.booked.setdefault(request.request_id, (request.card_id, request.amount_fen))
        return ledger_pb2.LedgerEntry(entry_id=f"bank-{request.request_id}")


@pytest.fixture
def bank(trust: TestTrust) -> Iterator[tuple[FakeBank, int]]:
    servicer = FakeBank()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    card_pb2_grpc.add_CardServiceServicer_to_server(servicer, server)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(servicer, server)
    port = trust.listen(server, "127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(0)


@pytest.fixture
def transit(
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    bank: tuple[FakeBank, int],
) -> transit_pb2_grpc.TransitServiceStub:
    service_env["SSCARD_CARD_PORT"] = str(bank[1])
    service_env["SSCARD_BANK_PORT"] = str(bank[1])
    running = start_service("transit", build_transit)
    wait_serving(running.channel)
    return transit_pb2_grpc.TransitServiceStub(running.channel)


def _wait(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.1)


def _fund(transit: Any, token: Callable[..., Any], card_id: str, amount_fen: int) -> None:
    kiosk = token(channel=Channel.TRANSIT_OUTLET, roles=(Role.COUNTER,), caller="kiosk")
    transit.TopUp(
        tpb.TopUpRequest(request_id=f"fund-{card_id}", card_id=card_id, amount_fen=amount_fen),
        metadata=kiosk,
    )


def test_A16_3_a_refund_waits_while_the_bank_is_down_and_arrives_once_it_answers(
    transit: Any, bank: tuple[FakeBank, int], token: Callable[..., Any]
) -> None:
    fake, _ = bank
    fake.mode = "down"
    _fund(transit, token, "old-card", 250 * YUAN)
    moved = transit.RefundBalance(
        tpb.RefundBalanceRequest(
            request_id="saga-1:0",
            card_id="old-card",
            to_card_id="new-card",
            reason=tpb.REFUND_REASON_REPLACEMENT,
        ),
        metadata=token(),
    )
    assert (moved.amount_fen, moved.state) == (250 * YUAN, tpb.REFUND_STATE_SENDING)

    def state() -> tpb.BalanceRefund:
        return transit.GetRefund(tpb.GetRefundRequest(refund_id=moved.refund_id), metadata=token())

    _wait(lambda: state().last_error == "DEPENDENCY_UNAVAILABLE")
    assert state().state == tpb.REFUND_STATE_SENDING
    assert fake.attempts >= 1
    fake.mode = "book"
    _wait(lambda: state().state == tpb.REFUND_STATE_ARRIVED)
    assert fake.booked == {moved.refund_id: ("new-card", 250 * YUAN)}
    assert state().bank_entry_id == f"bank-{moved.refund_id}"


def test_A19_1_a_credit_the_bank_refuses_for_good_returns_to_the_wallet(
    transit: Any, bank: tuple[FakeBank, int], token: Callable[..., Any]
) -> None:
    fake, _ = bank
    fake.mode = "no_account"
    _fund(transit, token, "gone-card", 80 * YUAN)
    moved = transit.RefundBalance(
        tpb.RefundBalanceRequest(
            request_id="saga-2:0", card_id="gone-card", reason=tpb.REFUND_REASON_CANCELLATION
        ),
        metadata=token(),
    )
    _wait(
        lambda: (
            transit.GetRefund(
                tpb.GetRefundRequest(refund_id=moved.refund_id), metadata=token()
            ).state
            == tpb.REFUND_STATE_RETURNED_TO_WALLET
        )
    )
    wallet = transit.GetBalance(tpb.GetBalanceRequest(card_id="gone-card"), metadata=token())
    assert (wallet.balance_fen, wallet.status) == (80 * YUAN, tpb.WALLET_STATUS_CLOSED)
    entries = transit.ListTransactions(
        tpb.ListTransactionsRequest(card_id="gone-card"), metadata=token()
    ).entries
    assert [(e.kind, e.amount_fen) for e in entries] == [
        (tpb.ENTRY_KIND_REVERSAL, 80 * YUAN),
        (tpb.ENTRY_KIND_REFUND, -80 * YUAN),
        (tpb.ENTRY_KIND_TOP_UP, 80 * YUAN),
    ]
    assert fake.booked == {}


def test_A16_3_operations_list_the_refunds_still_on_their_way_to_the_bank(
    transit: Any, bank: tuple[FakeBank, int], token: Callable[..., Any]
) -> None:
    """领取新卡时,旧卡交通出行功能的剩余金额将退还至持卡人指定银行金融账户。

    While the bank does not answer, operations see every refund still SENDING, a page at a
    time; one that arrived leaves the list of pending ones. Only role ``ops`` may list them.
    """
    fake, _ = bank
    fake.mode = "down"
    ops = token(roles=(Role.OPS,), caller="ops")
    moved = []
    for n in range(3):
        _fund(transit, token, f"old-{n}", (n + 1) * YUAN)
        moved.append(
            transit.RefundBalance(
                tpb.RefundBalanceRequest(
                    request_id=f"saga-{n}:0",
                    card_id=f"old-{n}",
                    to_card_id=f"new-{n}",
                    reason=tpb.REFUND_REASON_REPLACEMENT,
                ),
                metadata=token(),
            ).refund_id
        )

    def pending(page_size: int) -> list[str]:
        seen, page_token = [], ""
        while True:
            answer = transit.ListRefunds(
                tpb.ListRefundsRequest(
                    state=tpb.REFUND_STATE_SENDING, page_size=page_size, page_token=page_token
                ),
                metadata=ops,
            )
            seen += [r.refund_id for r in answer.refunds]
            if not answer.next_page_token:
                return seen
            page_token = answer.next_page_token

    assert sorted(pending(2)) == sorted(moved)
    assert len(set(pending(1))) == 3
    with pytest.raises(grpc.RpcError) as refused:
        transit.ListRefunds(tpb.ListRefundsRequest(), metadata=token())
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    fake.mode = "book"
    _wait(lambda: pending(50) == [])
    arrived = transit.ListRefunds(
        tpb.ListRefundsRequest(state=tpb.REFUND_STATE_ARRIVED), metadata=ops
    )
    assert sorted(r.refund_id for r in arrived.refunds) == sorted(moved)
