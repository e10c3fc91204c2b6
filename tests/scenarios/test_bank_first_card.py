"""The bank's side of a first card over real gRPC, on SQLite and PostgreSQL: the identity compare
before opening the account (A4.4), production due dates (A22.1, A22.2), cards made on the spot
at instant branches (A22.3), the "card made" notice to the card service (A7.1) and no fees
(A23.1). The card service is a fake in the test, reached through SSCARD_CARD_TARGET."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import inspect

from services.bank.domain.card_number import luhn_valid
from services.bank.main import build
from services.platform.auth import Channel, Role
from services.platform.clock import BEIJING, SharedTestClock
from services.platform.trust import Verifier
from sscard.bank.v1 import bank_pb2 as pb
from sscard.bank.v1 import bank_pb2_grpc
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.common.v1 import common_pb2
from tests.support import date_pb, refusal, resident_id, wait_serving
from tests.trust import TestTrust

VALID_UNTIL = dt.date(2036, 1, 1)


def beijing(year: int, month: int, day: int, hour: int = 10) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime(year, month, day, hour, tzinfo=BEIJING))
    return stamp


def facts(
    number: str, name: str = "张三", valid_until: dt.date | None = VALID_UNTIL
) -> pb.IdentityFacts:
    return pb.IdentityFacts(
        name=name,
        document=common_pb2.IdentityDocument(
            type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=number
        ),
        document_valid_until=date_pb(valid_until) if valid_until else None,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


class FakeCardService(card_pb2_grpc.CardServiceServicer):
    """Records every RecordProduced call; the first ``failures`` calls answer UNAVAILABLE."""

    def __init__(self, trust: TestTrust) -> None:
        self._verifier = Verifier(trust.trust_dir, trust.registry, 0)
        self._lock = threading.Lock()
        self.failures = 0
        self.calls: list[card_pb2.RecordProducedRequest] = []
        self.recorded: list[card_pb2.RecordProducedRequest] = []
        self.callers: list[Any] = []

    def RecordProduced(
        self, request: card_pb2.RecordProducedRequest, context: grpc.ServicerContext
    ) -> card_pb2.Card:
        header = str(dict(context.invocation_metadata())["authorization"])
        token = header.removeprefix("Bearer ")
        with self._lock:
            self.calls.append(request)
            self.callers.append(self._verifier.verify(token))
            if self.failures > 0:
                self.failures -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "card service restarting")
            self.recorded.append(request)
        return card_pb2.Card(card_id=request.card_id)


@pytest.fixture
def card_service(service_env: dict[str, str], trust: TestTrust) -> Iterator[FakeCardService]:
    fake = FakeCardService(trust)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    card_pb2_grpc.add_CardServiceServicer_to_server(fake, server)
    port = trust.listen(server, "127.0.0.1:0")
    server.start()
    service_env["SSCARD_CARD_TARGET"] = f"127.0.0.1:{port}"
    service_env.setdefault(
        "SSCARD_BANK_PII_KEY", base64.b64encode(secrets.token_bytes(32)).decode()
    )
    yield fake
    server.stop(0)


class Bank:
    """A client of the bank service as the card service, as bank ops, as the card factory, or at
    a branch counter."""

    def __init__(self, channel: grpc.Channel, token: Callable[..., Any]) -> None:
        self.stub = bank_pb2_grpc.BankServiceStub(channel)
        self.service = token(roles=(Role.SERVICE,), caller="card-service")
        self.ops = token(roles=(Role.OPS,), caller="bank-ops")
        self.factory = token(roles=(Role.FACTORY,), caller="card-factory")
        self.counter = token(Channel.BANK_BRANCH, (Role.COUNTER,), bank_code="ICBC")

    def branch(self, branch_id: str, bank_code: str = "ICBC", instant: bool = False) -> pb.Branch:
        branch = pb.Branch(
            bank_code=bank_code, branch_id=branch_id, name=branch_id, instant=instant
        )
        request = pb.UpsertBranchRequest(request_id=f"branch-{branch_id}", branch=branch)
        return self.stub.UpsertBranch(request, metadata=self.ops)

    def open(
        self,
        card_id: str,
        presented: pb.IdentityFacts | None = None,
        verified: pb.IdentityFacts | None = None,
        bank_code: str = "ICBC",
        request_id: str | None = None,
    ) -> pb.OpenAccountResponse:
        verified = verified or facts(resident_id())
        request = pb.OpenAccountRequest(
            request_id=request_id or f"open-{card_id}",
            card_id=card_id,
            bank_code=bank_code,
            presented=presented or verified,
            verified=verified,
        )
        return self.stub.OpenAccount(request, metadata=self.service)

    def order(
        self,
        card_id: str,
        applied_at: Timestamp | None = None,
        kind: int = pb.PRODUCTION_KIND_FIRST,
        at_branch: str = "",
        pickup: str = "icbc-plain",
        bank_code: str = "ICBC",
        account_id: str = "",
    ) -> pb.ProductionOrder:
        request = pb.CreateProductionOrderRequest(
            request_id=f"order-{card_id}",
            card_id=card_id,
            bank_code=bank_code,
            account_id=account_id or self.open(card_id).account_id,
            kind=kind,  # type: ignore[arg-type]
            applied_at=applied_at or beijing(2026, 3, 2),
            applied_at_branch_id=at_branch,
            delivery=pb.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=pickup,
        )
        return self.stub.CreateProductionOrder(request, metadata=self.service)

    def mark_produced(self, order_id: str, request_id: str = "") -> pb.ProductionOrder:
        request = pb.MarkProducedRequest(
            request_id=request_id or f"made-{order_id}", order_id=order_id
        )
        return self.stub.MarkProduced(request, metadata=self.factory)


def start_bank(start_service: Callable[..., Any], token: Callable[..., Any]) -> Bank:
    running = start_service("bank", build)
    wait_serving(running.channel)
    return Bank(running.channel, token)


@pytest.fixture
def bank(
    card_service: FakeCardService, start_service: Callable[..., Any], token: Callable[..., Any]
) -> Bank:
    bank = start_bank(start_service, token)
    bank.branch("icbc-plain")
    bank.branch("icbc-instant", instant=True)
    bank.branch("abc-instant", bank_code="ABC", instant=True)
    return bank


class TestIdentityCompare:
    @pytest.mark.parametrize(
        ("presented", "fact"),
        [
            ({"name": "李四"}, "name"),
            ({"number": resident_id()}, "document_number"),
            ({"valid_until": dt.date(2030, 6, 30)}, "valid_until"),
        ],
    )
    def test_A4_4_any_mismatch_refuses_the_account_identity_mismatch(
        self, bank: Bank, presented: dict[str, Any], fact: str
    ) -> None:
        number = resident_id()
        shown = facts(**{"number": number, **presented})
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.open("card-1", presented=shown, verified=facts(number))
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert (error.reason, error.rule, error.metadata["facts"]) == (
            "IDENTITY_MISMATCH",
            "A4.4",
            fact,
        )
        assert number not in str(excinfo.value.details())
        assert shown.document.number not in str(excinfo.value.details())

    def test_A4_4_the_same_identity_written_differently_opens_the_account(self, bank: Bank) -> None:
        number = resident_id()
        presented = facts(number, name=" Zhang  SAN ")
        opened = bank.open("card-1", presented=presented, verified=facts(number, name="Zhang San"))
        assert opened.status == pb.ACCOUNT_STATUS_OPENED and opened.account_id


class TestAccounts:
    def test_opening_is_idempotent_by_request_and_by_card(self, bank: Bank) -> None:
        person = facts(resident_id())
        first = bank.open("card-1", verified=person)
        assert bank.open("card-1", verified=person) == first
        again = bank.open("card-1", verified=person, request_id="another-saga:open_account")
        assert again.account_id == first.account_id

    def test_A5_1_an_unknown_bank_is_refused(self, bank: Bank) -> None:
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.open("card-1", bank_code="NOBANK")
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert (error.reason, error.rule) == ("UNKNOWN_BANK", "A5.1")

    def test_closing_is_idempotent_and_a_closed_account_gets_no_card(self, bank: Bank) -> None:
        account_id = bank.open("card-1").account_id
        for request_id in ("close-1", "close-2"):
            closed = bank.stub.CloseAccount(
                pb.CloseAccountRequest(request_id=request_id, account_id=account_id),
                metadata=bank.service,
            )
            assert (closed.account_id, closed.status) == (account_id, pb.ACCOUNT_STATUS_CLOSED)
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.order("card-1", account_id=account_id)
        assert refusal(excinfo)[1].reason == "ACCOUNT_CLOSED"

    def test_only_the_bank_s_own_services_open_accounts(self, bank: Bank) -> None:
        request = pb.OpenAccountRequest(request_id="r", card_id="c", bank_code="ICBC")
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.stub.OpenAccount(request, metadata=bank.counter)
        assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED
        listed = bank.stub.ListBranches(pb.ListBranchesRequest(), metadata=bank.counter)
        assert [b.branch_id for b in listed.branches] == [
            "abc-instant",
            "icbc-instant",
            "icbc-plain",
        ]


class TestProductionTime:
    def test_A22_1_first_card_is_due_30_natural_days_after_the_application(
        self, bank: Bank
    ) -> None:
        order = bank.order("card-1", applied_at=beijing(2026, 12, 15))
        assert order.status == pb.ORDER_STATUS_ORDERED and not order.card_number
        assert (order.due_date.year, order.due_date.month, order.due_date.day) == (2027, 1, 14)
        found = bank.stub.GetProductionOrder(
            pb.GetProductionOrderRequest(card_id="card-1"), metadata=bank.ops
        )
        assert found == order

    def test_A22_2_reissue_is_due_4_working_days_after_the_application(self, bank: Bank) -> None:
        order = bank.order(
            "card-1", applied_at=beijing(2026, 9, 30), kind=pb.PRODUCTION_KIND_REISSUE
        )
        assert (order.due_date.year, order.due_date.month, order.due_date.day) == (2026, 10, 12)

    def test_A22_3_instant_branch_of_the_chosen_bank_makes_the_card_on_the_spot(
        self, bank: Bank, card_service: FakeCardService, test_clock: SharedTestClock
    ) -> None:
        test_clock.advance(dt.timedelta(days=40))
        applied = test_clock.now()
        stamp = Timestamp()
        stamp.FromDatetime(applied)
        order = bank.order("card-1", applied_at=stamp, at_branch="icbc-instant")
        assert (order.status, order.instant) == (pb.ORDER_STATUS_PRODUCED, True)
        assert len(order.card_number) == 19 and luhn_valid(order.card_number)
        made = order.produced_at.ToDatetime(dt.UTC)
        assert abs(made - test_clock.now()) < dt.timedelta(seconds=5)
        wait_until(lambda: len(card_service.recorded) == 1)
        assert card_service.recorded[0].card_number == order.card_number

    @pytest.mark.parametrize("at_branch", ["icbc-plain", "abc-instant", ""])
    def test_A22_3_elsewhere_the_card_is_only_ordered(self, bank: Bank, at_branch: str) -> None:
        order = bank.order("card-1", at_branch=at_branch)
        assert (order.status, order.instant, order.card_number) == (
            pb.ORDER_STATUS_ORDERED,
            False,
            "",
        )

    def test_A7_2_pickup_must_be_at_a_branch_of_the_issuing_bank(self, bank: Bank) -> None:
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.order("card-1", pickup="abc-instant")
        assert (refusal(excinfo)[1].reason, refusal(excinfo)[1].rule) == ("UNKNOWN_BRANCH", "A7.2")

    def test_cancelled_order_is_never_made_and_a_made_card_is_set_aside(self, bank: Bank) -> None:
        cancel = bank.stub.CancelProductionOrder
        ordered = bank.order("card-1")
        request = pb.CancelProductionOrderRequest(request_id="c1", order_id=ordered.order_id)
        assert cancel(request, metadata=bank.service).status == pb.ORDER_STATUS_CANCELLED
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.mark_produced(ordered.order_id)
        assert refusal(excinfo)[1].reason == "ORDER_CANCELLED"
        made = bank.mark_produced(bank.order("card-2").order_id)
        request = pb.CancelProductionOrderRequest(request_id="c2", order_id=made.order_id)
        set_aside = cancel(request, metadata=bank.service)
        assert (set_aside.status, set_aside.card_number) == (
            pb.ORDER_STATUS_CANCELLED,
            made.card_number,
        )


class TestCardMadeNotice:
    def test_A7_1_a_made_card_is_reported_to_the_card_service_exactly_once(
        self, bank: Bank, card_service: FakeCardService
    ) -> None:
        order = bank.order("card-1")
        made = bank.mark_produced(order.order_id)
        assert made.status == pb.ORDER_STATUS_PRODUCED and luhn_valid(made.card_number)
        assert bank.mark_produced(order.order_id, request_id="factory-retry") == made
        wait_until(lambda: len(card_service.calls) >= 1)
        time.sleep(1.5)  # a few relay passes: nothing is sent again
        assert len(card_service.calls) == 1
        sent = card_service.recorded[0]
        assert (sent.request_id, sent.card_id, sent.card_number) == (
            f"produced:{order.order_id}",
            "card-1",
            made.card_number,
        )
        assert sent.produced_at == made.produced_at
        assert Role.SERVICE in card_service.callers[0].roles

    def test_A7_1_the_notice_outlives_a_card_service_outage(
        self, bank: Bank, card_service: FakeCardService
    ) -> None:
        card_service.failures = 2
        order = bank.order("card-1")
        bank.mark_produced(order.order_id)
        wait_until(lambda: len(card_service.recorded) == 1)
        time.sleep(1.5)
        assert len(card_service.calls) == 3
        assert {c.request_id for c in card_service.calls} == {f"produced:{order.order_id}"}
        assert len(card_service.recorded) == 1

    def test_A7_1_two_bank_replicas_send_each_notice_once(
        self,
        bank: Bank,
        card_service: FakeCardService,
        start_service: Callable[..., Any],
        token: Callable[..., Any],
        service_env: dict[str, str],
    ) -> None:
        service_env["SSCARD_BANK_PORT"] = "0"  # a second replica on the same database
        start_bank(start_service, token)
        orders = [bank.order(f"card-{i}") for i in range(6)]
        for order in orders:
            bank.mark_produced(order.order_id)
        wait_until(lambda: len(card_service.recorded) == len(orders))
        time.sleep(1.5)
        sent = [c.request_id for c in card_service.calls]
        assert sorted(sent) == sorted(f"produced:{o.order_id}" for o in orders)
        numbers = {c.card_number for c in card_service.recorded}
        assert len(numbers) == len(orders)


class TestNoFees:
    def _fields(self, descriptor: Any) -> Iterator[str]:
        for field in descriptor.fields:
            yield field.name
        for nested in descriptor.nested_types:
            yield from self._fields(nested)

    def test_A23_1_no_message_or_table_has_a_fee(
        self, start_service: Callable[..., Any], card_service: FakeCardService
    ) -> None:
        names = [
            name
            for message in pb.DESCRIPTOR.message_types_by_name.values()
            for name in self._fields(message)
        ]
        assert names and not [n for n in names if "fee" in n or "charge" in n]
        engine = start_service("bank", build).deps.db.engine
        schema = inspect(engine)
        columns = [c["name"] for t in schema.get_table_names() for c in schema.get_columns(t)]
        assert "card_number" in columns
        assert not [c for c in columns if "fee" in c or "charge" in c]
