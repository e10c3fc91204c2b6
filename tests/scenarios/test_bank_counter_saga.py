"""The activation of the financial function as a small saga (A9.1, A9.2), over real gRPC on
SQLite and PostgreSQL, with the card service as a fake reached through SSCARD_CARD_TARGET: the
card service sees the counter's own credential, an interrupted activation leaves the financial
function inactive, and a retry with the same request_id completes it and keeps its answer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from services.bank.main import build
from services.platform.auth import Caller, Channel, Role
from services.platform.clients import RETRY_ATTEMPTS
from services.platform.trust import Verifier
from sscard.bank.v1 import counter_pb2 as cpb
from sscard.bank.v1 import counter_pb2_grpc
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.common.v1 import common_pb2
from tests.scenarios.test_bank_first_card import Bank, facts
from tests.support import refusal, resident_id, wait_serving
from tests.trust import TestTrust


class FakeCard(card_pb2_grpc.CardServiceServicer):
    """Records every ActivateCard call and who made it; the first ``failures`` calls answer
    UNAVAILABLE, before activating or (``lose_answers``) after activating, as when the answer
    is lost on the way back. Like the real service, a request id activates once."""

    def __init__(self, trust: TestTrust) -> None:
        self._verifier = Verifier(trust.trust_dir, trust.registry, 0)
        self._lock = threading.Lock()
        self.failures = 0
        self.lose_answers = False
        self.activated: set[str] = set()
        self.calls: list[tuple[card_pb2.ActivateCardRequest, Caller]] = []

    def ActivateCard(
        self, request: card_pb2.ActivateCardRequest, context: grpc.ServicerContext
    ) -> card_pb2.Card:
        header = str(dict(context.invocation_metadata())["authorization"])
        caller = self._verifier.verify(header.removeprefix("Bearer "))
        with self._lock:
            self.calls.append((request, caller))
            if self.failures > 0 and not self.lose_answers:
                self.failures -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "card service restarting")
            self.activated.add(request.request_id)
            if self.failures > 0:
                self.failures -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "the answer was lost")
        return card_pb2.Card(card_id=request.card_id, status=card_pb2.CARD_STATUS_ACTIVE)

    def RecordProduced(
        self, request: card_pb2.RecordProducedRequest, context: grpc.ServicerContext
    ) -> card_pb2.Card:
        return card_pb2.Card(card_id=request.card_id)


@pytest.fixture
def card(service_env: dict[str, str], trust: TestTrust) -> Iterator[FakeCard]:
    fake = FakeCard(trust)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    card_pb2_grpc.add_CardServiceServicer_to_server(fake, server)
    port = trust.listen(server, "127.0.0.1:0")
    server.start()
    service_env["SSCARD_CARD_TARGET"] = f"127.0.0.1:{port}"
    yield fake
    server.stop(0)


@pytest.fixture
def bank(
    card: FakeCard, start_service: Callable[..., Any], token: Callable[..., Any]
) -> tuple[Bank, counter_pb2_grpc.CounterServiceStub]:
    running = start_service("bank", build)
    wait_serving(running.channel)
    bank = Bank(running.channel, token)
    bank.branch("icbc-plain")
    bank.branch("icbc-instant", instant=True)
    return bank, counter_pb2_grpc.CounterServiceStub(running.channel)


@pytest.mark.parametrize("lose_answer", [False, True], ids=["card-down", "answer-lost"])
def test_A9_2_a_retry_completes_an_activation_the_card_service_interrupted(
    lose_answer: bool,
    card: FakeCard,
    bank: tuple[Bank, counter_pb2_grpc.CounterServiceStub],
    token: Callable[..., Any],
) -> None:
    client, counter = bank
    number = resident_id()
    account = client.open("card-1", verified=facts(number))
    order = client.order("card-1", at_branch="icbc-instant", account_id=account.account_id)
    assert order.card_number
    clerk = token(Channel.BANK_BRANCH, caller="icbc-clerk", bank_code="ICBC", roles=(Role.COUNTER,))
    request = cpb.ActivateFinancialRequest(
        request_id="activate-1",
        card_id="card-1",
        document=common_pb2.IdentityDocument(
            type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=number
        ),
        card_number=order.card_number,
    )

    def state() -> Any:
        return counter.GetFinancialState(
            cpb.GetFinancialStateRequest(card_id="card-1"), metadata=client.ops
        )

    card.failures = RETRY_ATTEMPTS  # longer than the channel's own retries last
    card.lose_answers = lose_answer
    with pytest.raises(grpc.RpcError) as excinfo:
        counter.ActivateFinancial(request, metadata=clerk)
    code, error = refusal(excinfo)
    assert (code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE")
    assert not state().HasField("financial_activated_at")

    done = counter.ActivateFinancial(request, metadata=clerk)
    assert done.HasField("financial_activated_at")
    assert counter.ActivateFinancial(request, metadata=clerk) == done
    assert state().financial_activated_at == done.financial_activated_at

    # A9.1: the card service saw the counter of the issuing bank, one request id throughout.
    assert len(card.calls) == RETRY_ATTEMPTS + 1
    assert len({call.request_id for call, _ in card.calls}) == 1
    assert {(who.channel, who.bank_code) for _, who in card.calls} == {
        (Channel.BANK_BRANCH, "ICBC")
    }
    assert card.calls[0][0].document.number == number
    assert len(card.activated) == 1


def test_A9_1_a_refusal_at_the_counter_never_reaches_the_card_service(
    card: FakeCard,
    bank: tuple[Bank, counter_pb2_grpc.CounterServiceStub],
    token: Callable[..., Any],
) -> None:
    client, counter = bank
    number = resident_id()
    account = client.open("card-2", verified=facts(number))
    order = client.order("card-2", at_branch="icbc-instant", account_id=account.account_id)
    district = token(Channel.DISTRICT_OUTLET, caller="dongcheng-01", roles=(Role.COUNTER,))
    other_bank = token(Channel.BANK_BRANCH, (Role.COUNTER,), caller="boc-clerk", bank_code="BOC")
    request = cpb.ActivateFinancialRequest(
        request_id="activate-2",
        card_id="card-2",
        document=common_pb2.IdentityDocument(
            type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=number
        ),
        card_number=order.card_number,
    )
    for metadata in (district, other_bank):
        with pytest.raises(grpc.RpcError) as excinfo:
            counter.ActivateFinancial(request, metadata=metadata)
        code, error = refusal(excinfo)
        assert (code, error.reason, error.rule) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CHANNEL_NOT_ALLOWED",
            "A3.1",
        )
    assert card.calls == []
