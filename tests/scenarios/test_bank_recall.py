"""Cards the bank takes back and destroys, over real gRPC, on SQLite and PostgreSQL: the old card
of a replacement is taken back and destroyed, with who and when (A16.6); a card not handed out
within 6 months (A21.1), a deceased holder's card (A21.2) and a card an employer returned (A7.4)
are recorded with their reason; a card is destroyed only once taken back, and a destroyed card
can do nothing. Every mutating call is idempotent by request_id."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.bank.main import build
from services.platform.auth import Role
from services.platform.clock import SharedTestClock
from sscard.bank.v1 import bank_pb2 as pb
from tests.scenarios.test_bank_first_card import Bank, FakeCardService
from tests.scenarios.test_bank_first_card import card_service as card_service  # the fixture
from tests.support import refusal, wait_serving

_ids = itertools.count(1)


class RecallBank(Bank):
    """The bank as the card service or a branch takes a card back, and as bank ops destroy it."""

    def __init__(self, channel: grpc.Channel, token: Callable[..., Any]) -> None:
        super().__init__(channel, token)
        self.operator = token(roles=(Role.OPS,), caller="bank-ops", operator_id="op-7")
        # A branch's staff take cards back through the bank's operations console (INTERNAL).
        self.branch_ops = token(roles=(Role.OPS,), caller="icbc-plain", operator_id="teller-3")

    def recall(
        self,
        card_id: str,
        reason: int = pb.RECALL_REASON_REPLACED,
        request_id: str = "",
        metadata: Any = None,
    ) -> pb.CardRecall:
        request = pb.RecallCardRequest(
            request_id=request_id or f"recall-{next(_ids)}",
            card_id=card_id,
            reason=reason,  # type: ignore[arg-type]
        )
        return self.stub.RecallCard(request, metadata=metadata or self.service)

    def destroy(self, card_id: str, request_id: str = "", metadata: Any = None) -> pb.CardRecall:
        request = pb.DestroyCardRequest(
            request_id=request_id or f"destroy-{next(_ids)}", card_id=card_id
        )
        return self.stub.DestroyCard(request, metadata=metadata or self.operator)

    def get(self, card_id: str, metadata: Any = None) -> pb.CardRecall:
        request = pb.GetCardRecallRequest(card_id=card_id)
        return self.stub.GetCardRecall(request, metadata=metadata or self.ops)

    def made(self, card_id: str) -> pb.ProductionOrder:
        """A card ordered and made: the old card a replacement takes back."""
        return self.mark_produced(self.order(card_id).order_id)


@pytest.fixture
def bank(
    card_service: FakeCardService,  # the notice relay's peer (A7.1)
    start_service: Callable[..., Any],
    token: Callable[..., Any],
) -> RecallBank:
    running = start_service("bank", build)
    wait_serving(running.channel)
    bank = RecallBank(running.channel, token)
    bank.branch("icbc-plain")
    return bank


def _near(stamp: Timestamp, moment: dt.datetime) -> bool:
    return bool(abs(stamp.ToDatetime(dt.UTC) - moment) < dt.timedelta(seconds=5))


def _refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, Any]:
    with pytest.raises(grpc.RpcError) as excinfo:
        call()
    return refusal(excinfo)


class TestRecallAndDestruction:
    def test_A16_6_an_old_card_is_taken_back_and_destroyed_with_who_and_when(
        self, bank: RecallBank, test_clock: SharedTestClock
    ) -> None:
        bank.made("old-card")
        recalled = bank.recall("old-card", pb.RECALL_REASON_REPLACED)
        assert (recalled.card_id, recalled.reason, recalled.recalled_by) == (
            "old-card",
            pb.RECALL_REASON_REPLACED,
            "card-service",
        )
        assert _near(recalled.recalled_at, test_clock.now())
        assert not recalled.HasField("destroyed_at") and recalled.destroyed_by == ""
        assert bank.get("old-card") == recalled

        test_clock.advance(dt.timedelta(days=2))
        destroyed = bank.destroy("old-card")
        assert (destroyed.card_id, destroyed.reason, destroyed.destroyed_by) == (
            "old-card",
            pb.RECALL_REASON_REPLACED,
            "bank-ops/op-7",
        )
        assert _near(destroyed.destroyed_at, test_clock.now())
        assert (destroyed.recalled_at, destroyed.recalled_by) == (
            recalled.recalled_at,
            "card-service",
        )
        assert bank.get("old-card") == destroyed
        assert bank.get("old-card", metadata=bank.service) == destroyed

    @pytest.mark.parametrize(
        "reason",
        [
            pb.RECALL_REASON_NOT_HANDED_OUT,
            pb.RECALL_REASON_HOLDER_DECEASED,
            pb.RECALL_REASON_RETURNED_BY_EMPLOYER,
        ],
        ids=["A21_1_not_handed_out", "A21_2_holder_deceased", "A7_4_returned_by_employer"],
    )
    def test_the_reason_a_card_is_taken_back_is_recorded(
        self, bank: RecallBank, reason: int
    ) -> None:
        bank.made("card-1")
        recalled = bank.recall("card-1", reason, metadata=bank.branch_ops)
        assert (recalled.reason, recalled.recalled_by) == (reason, "icbc-plain/teller-3")
        assert bank.get("card-1") == recalled
        destroyed = bank.destroy("card-1", metadata=bank.branch_ops)
        assert (destroyed.reason, destroyed.destroyed_by) == (reason, "icbc-plain/teller-3")

    def test_a_card_never_made_can_be_taken_back(self, bank: RecallBank) -> None:
        bank.order("card-1")
        assert (
            bank.recall("card-1", pb.RECALL_REASON_HOLDER_DECEASED).reason
            == pb.RECALL_REASON_HOLDER_DECEASED
        )

    def test_recalling_again_changes_nothing_and_keeps_the_first_reason(
        self, bank: RecallBank, test_clock: SharedTestClock
    ) -> None:
        bank.made("card-1")
        first = bank.recall("card-1", pb.RECALL_REASON_NOT_HANDED_OUT)
        test_clock.advance(dt.timedelta(hours=1))
        assert bank.recall("card-1", pb.RECALL_REASON_NOT_HANDED_OUT) == first
        assert (
            bank.recall("card-1", pb.RECALL_REASON_HOLDER_DECEASED, metadata=bank.operator) == first
        )
        assert bank.get("card-1") == first

    def test_A16_6_a_card_not_taken_back_is_not_destroyed(self, bank: RecallBank) -> None:
        bank.made("card-1")
        code, error = _refused(lambda: bank.destroy("card-1"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert (error.reason, error.rule) == ("NOT_RECALLED", "A16.6")
        code, error = _refused(lambda: bank.get("card-1"))
        assert (code, error.reason) == (grpc.StatusCode.NOT_FOUND, "RECALL_NOT_FOUND")

    def test_A16_6_destroying_again_changes_nothing(
        self, bank: RecallBank, test_clock: SharedTestClock, token: Callable[..., Any]
    ) -> None:
        bank.made("card-1")
        bank.recall("card-1")
        first = bank.destroy("card-1")
        test_clock.advance(dt.timedelta(hours=1))
        other = token(roles=(Role.OPS,), caller="bank-ops", operator_id="op-8")
        assert bank.destroy("card-1", metadata=other) == first
        assert bank.recall("card-1", pb.RECALL_REASON_HOLDER_DECEASED) == first
        assert bank.get("card-1") == first


class TestADestroyedCard:
    def test_A16_6_a_destroyed_card_can_do_nothing(self, bank: RecallBank) -> None:
        order = bank.order("card-1")
        bank.recall("card-1", pb.RECALL_REASON_NOT_HANDED_OUT)
        bank.destroy("card-1")
        suspend = pb.SuspendForLossRequest(
            request_id="loss-1", card_id="card-1", kind=pb.LOSS_KIND_TEMPORARY_LOSS
        )
        lift = pb.LiftLossSuspensionRequest(request_id="unlock-1", card_id="card-1")
        calls: list[Callable[[], Any]] = [
            lambda: bank.mark_produced(order.order_id),
            lambda: bank.stub.SuspendForLoss(suspend, metadata=bank.service),
            lambda: bank.stub.LiftLossSuspension(lift, metadata=bank.service),
        ]
        for call in calls:
            code, error = _refused(call)
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert (error.reason, error.rule) == ("CARD_DESTROYED", "A16.6")
        found = bank.stub.GetProductionOrder(
            pb.GetProductionOrderRequest(card_id="card-1"), metadata=bank.ops
        )
        assert (found.status, found.card_number) == (pb.ORDER_STATUS_ORDERED, "")
        account = bank.stub.GetAccount(pb.GetAccountRequest(card_id="card-1"), metadata=bank.ops)
        assert account.loss == pb.LOSS_KIND_UNSPECIFIED

    def test_a_card_taken_back_but_not_destroyed_is_still_made(self, bank: RecallBank) -> None:
        order = bank.order("card-1")
        bank.recall("card-1", pb.RECALL_REASON_RETURNED_BY_EMPLOYER)
        assert bank.mark_produced(order.order_id).status == pb.ORDER_STATUS_PRODUCED


class TestIdempotency:
    def test_a_replayed_recall_returns_its_first_answer(self, bank: RecallBank) -> None:
        bank.made("card-1")
        first = bank.recall("card-1", request_id="replace-1:recall")
        destroyed = bank.destroy("card-1")
        assert bank.recall("card-1", request_id="replace-1:recall") == first
        assert bank.get("card-1") == destroyed

    def test_a_replayed_destruction_returns_its_first_answer(self, bank: RecallBank) -> None:
        bank.made("card-1")
        bank.recall("card-1")
        first = bank.destroy("card-1", request_id="shred-1")
        assert bank.destroy("card-1", request_id="shred-1") == first

    def test_a_replayed_refusal_is_refused_again(self, bank: RecallBank) -> None:
        bank.made("card-1")
        _refused(lambda: bank.destroy("card-1", request_id="shred-1"))
        bank.recall("card-1")
        code, error = _refused(lambda: bank.destroy("card-1", request_id="shred-1"))
        assert (code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_RECALLED")
        assert bank.destroy("card-1", request_id="shred-2").destroyed_by == "bank-ops/op-7"

    def test_a_request_id_reused_for_another_request_is_refused(self, bank: RecallBank) -> None:
        bank.made("card-1")
        bank.made("card-2")
        bank.recall("card-1", request_id="recall-x")
        code, error = _refused(lambda: bank.recall("card-2", request_id="recall-x"))
        assert (code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
        assert _refused(lambda: bank.get("card-2"))[1].reason == "RECALL_NOT_FOUND"

    def test_a_request_id_is_required(self, bank: RecallBank) -> None:
        bank.made("card-1")
        request = pb.RecallCardRequest(card_id="card-1", reason=pb.RECALL_REASON_REPLACED)
        code, _ = _refused(lambda: bank.stub.RecallCard(request, metadata=bank.service))
        assert code == grpc.StatusCode.INVALID_ARGUMENT


class TestRefusals:
    def test_a_card_without_a_production_order_here_is_not_found(self, bank: RecallBank) -> None:
        bank.open("card-with-account-only")
        for card_id in ("no-such-card", "card-with-account-only"):
            for call in (bank.recall, bank.destroy, bank.get):
                code, error = _refused(partial(call, card_id))
                assert (code, error.reason) == (grpc.StatusCode.NOT_FOUND, "CARD_NOT_FOUND")

    def test_a_recall_names_its_reason(self, bank: RecallBank) -> None:
        bank.made("card-1")
        for reason in (pb.RECALL_REASON_UNSPECIFIED, 9):
            code, error = _refused(partial(bank.recall, "card-1", reason))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert [v.field for v in error.violations] == ["reason"]
        assert _refused(lambda: bank.get("card-1"))[1].reason == "RECALL_NOT_FOUND"

    def test_a_card_id_is_required(self, bank: RecallBank) -> None:
        for call in (bank.recall, bank.destroy, bank.get):
            code, error = _refused(partial(call, ""))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert [v.field for v in error.violations] == ["card_id"]


class TestRoles:
    def test_the_card_service_and_bank_ops_take_cards_back(self, bank: RecallBank) -> None:
        for card_id, metadata in (("card-1", bank.service), ("card-2", bank.ops)):
            bank.made(card_id)
            assert bank.recall(card_id, metadata=metadata).card_id == card_id
        bank.made("card-3")
        code, _ = _refused(lambda: bank.recall("card-3", metadata=bank.counter))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert _refused(lambda: bank.get("card-3"))[1].reason == "RECALL_NOT_FOUND"

    def test_only_bank_ops_destroy_a_card(self, bank: RecallBank) -> None:
        bank.made("card-1")
        bank.recall("card-1")
        for metadata in (bank.service, bank.counter):
            code, _ = _refused(partial(bank.destroy, "card-1", metadata=metadata))
            assert code == grpc.StatusCode.PERMISSION_DENIED
        assert not bank.get("card-1").HasField("destroyed_at")
        assert bank.destroy("card-1", metadata=bank.ops).destroyed_by == "bank-ops"

    def test_the_recall_is_read_by_services_and_bank_ops_only(self, bank: RecallBank) -> None:
        bank.made("card-1")
        recalled = bank.recall("card-1")
        assert bank.get("card-1", metadata=bank.service) == recalled
        assert bank.get("card-1", metadata=bank.ops) == recalled
        code, _ = _refused(lambda: bank.get("card-1", metadata=bank.counter))
        assert code == grpc.StatusCode.PERMISSION_DENIED
