"""The bank's side of a lost card over real gRPC, on SQLite and PostgreSQL: a temporary loss
suspends the financial function at once (A13.2), a formal loss at the issuing bank covers it
(A13.4) and is never downgraded, unlocking lifts the suspension (A14.1). Every mutating call is
idempotent by request_id; only the suite's own services suspend or lift."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.bank.main import build
from services.platform.clock import SharedTestClock
from sscard.bank.v1 import bank_pb2 as pb
from tests.scenarios.test_bank_first_card import Bank
from tests.support import refusal, wait_serving

_ids = itertools.count(1)


class LossBank(Bank):
    """The bank as the card service reports a loss or an unlock to it."""

    def suspend(self, card_id: str, kind: int, request_id: str = "") -> pb.AccountState:
        request = pb.SuspendForLossRequest(
            request_id=request_id or f"suspend-{next(_ids)}",
            card_id=card_id,
            kind=kind,  # type: ignore[arg-type]
        )
        return self.stub.SuspendForLoss(request, metadata=self.service)

    def lift(self, card_id: str, request_id: str = "") -> pb.AccountState:
        request = pb.LiftLossSuspensionRequest(
            request_id=request_id or f"lift-{next(_ids)}", card_id=card_id
        )
        return self.stub.LiftLossSuspension(request, metadata=self.service)

    def get(self, card_id: str) -> pb.AccountState:
        return self.stub.GetAccount(pb.GetAccountRequest(card_id=card_id), metadata=self.ops)


@pytest.fixture
def bank(start_service: Callable[..., Any], token: Callable[..., Any]) -> LossBank:
    running = start_service("bank", build)
    wait_serving(running.channel)
    bank = LossBank(running.channel, token)
    bank.branch("icbc-plain")
    return bank


def _near(stamp: Timestamp, moment: dt.datetime) -> bool:
    return bool(abs(stamp.ToDatetime(dt.UTC) - moment) < dt.timedelta(seconds=5))


class TestSuspension:
    def test_A13_2_a_temporary_loss_suspends_the_financial_function_at_once(
        self, bank: LossBank, test_clock: SharedTestClock
    ) -> None:
        opened = bank.open("card-1")
        fresh = bank.get("card-1")
        assert (fresh.account_id, fresh.card_id, fresh.bank_code, fresh.status) == (
            opened.account_id,
            "card-1",
            "ICBC",
            pb.ACCOUNT_STATUS_OPENED,
        )
        assert fresh.loss == pb.LOSS_KIND_UNSPECIFIED and not fresh.HasField("suspended_at")

        state = bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS)
        assert (state.account_id, state.status, state.loss) == (
            opened.account_id,
            pb.ACCOUNT_STATUS_OPENED,
            pb.LOSS_KIND_TEMPORARY_LOSS,
        )
        assert _near(state.suspended_at, test_clock.now())
        assert bank.get("card-1") == state

    def test_A13_4_a_formal_loss_at_the_issuing_bank_covers_the_financial_function(
        self, bank: LossBank, test_clock: SharedTestClock
    ) -> None:
        bank.open("card-1")
        temporary = bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS)
        test_clock.advance(dt.timedelta(days=2))
        formal = bank.suspend("card-1", pb.LOSS_KIND_FORMAL_LOSS)
        assert formal.loss == pb.LOSS_KIND_FORMAL_LOSS
        assert formal.suspended_at == temporary.suspended_at  # suspended since the first report
        assert bank.get("card-1") == formal

    def test_A13_4_a_formal_loss_alone_suspends_the_financial_function(
        self, bank: LossBank, test_clock: SharedTestClock
    ) -> None:
        bank.open("card-1")
        formal = bank.suspend("card-1", pb.LOSS_KIND_FORMAL_LOSS)
        assert formal.loss == pb.LOSS_KIND_FORMAL_LOSS and _near(
            formal.suspended_at, test_clock.now()
        )

    def test_A13_4_a_formal_loss_is_never_downgraded_by_a_later_temporary_one(
        self, bank: LossBank, test_clock: SharedTestClock
    ) -> None:
        bank.open("card-1")
        formal = bank.suspend("card-1", pb.LOSS_KIND_FORMAL_LOSS)
        test_clock.advance(dt.timedelta(hours=1))
        assert bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS) == formal
        assert bank.get("card-1") == formal

    def test_A13_2_the_same_loss_reported_again_changes_nothing(
        self, bank: LossBank, test_clock: SharedTestClock
    ) -> None:
        bank.open("card-1")
        first = bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS)
        test_clock.advance(dt.timedelta(hours=1))
        assert bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS) == first


class TestLift:
    def test_A14_1_unlocking_lifts_the_suspension(self, bank: LossBank) -> None:
        opened = bank.open("card-1")
        bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS)
        bank.suspend("card-1", pb.LOSS_KIND_FORMAL_LOSS)
        lifted = bank.lift("card-1")
        assert (lifted.account_id, lifted.status, lifted.loss) == (
            opened.account_id,
            pb.ACCOUNT_STATUS_OPENED,
            pb.LOSS_KIND_UNSPECIFIED,
        )
        assert not lifted.HasField("suspended_at")
        assert bank.get("card-1") == lifted

    def test_A14_1_lifting_a_suspension_that_is_not_there_changes_nothing(
        self, bank: LossBank
    ) -> None:
        bank.open("card-1")
        before = bank.get("card-1")
        assert bank.lift("card-1") == before

    def test_A13_2_after_a_lift_a_new_loss_suspends_again(
        self, bank: LossBank, test_clock: SharedTestClock
    ) -> None:
        bank.open("card-1")
        first = bank.suspend("card-1", pb.LOSS_KIND_FORMAL_LOSS)
        bank.lift("card-1")
        test_clock.advance(dt.timedelta(days=1))
        again = bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS)
        assert (
            again.loss == pb.LOSS_KIND_TEMPORARY_LOSS and again.suspended_at != first.suspended_at
        )
        assert _near(again.suspended_at, test_clock.now())


class TestIdempotency:
    def test_a_replayed_suspension_returns_its_first_answer_and_changes_nothing(
        self, bank: LossBank
    ) -> None:
        bank.open("card-1")
        first = bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS, request_id="loss-1:suspend")
        lifted = bank.lift("card-1", request_id="unlock-1:lift")
        assert (
            bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS, request_id="loss-1:suspend")
            == first
        )
        assert bank.get("card-1") == lifted  # the replay did not suspend again

    def test_a_replayed_lift_returns_its_first_answer_and_changes_nothing(
        self, bank: LossBank
    ) -> None:
        bank.open("card-1")
        bank.suspend("card-1", pb.LOSS_KIND_FORMAL_LOSS)
        lifted = bank.lift("card-1", request_id="unlock-1:lift")
        suspended = bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS)
        assert bank.lift("card-1", request_id="unlock-1:lift") == lifted
        assert bank.get("card-1") == suspended  # the replay did not lift again

    def test_a_request_id_reused_for_another_request_is_refused(self, bank: LossBank) -> None:
        bank.open("card-1")
        bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS, request_id="loss-1:suspend")
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.suspend("card-1", pb.LOSS_KIND_FORMAL_LOSS, request_id="loss-1:suspend")
        code, error = refusal(excinfo)
        assert (code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")

    def test_a_request_id_is_required(self, bank: LossBank) -> None:
        bank.open("card-1")
        request = pb.LiftLossSuspensionRequest(card_id="card-1")
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.stub.LiftLossSuspension(request, metadata=bank.service)
        assert refusal(excinfo)[0] == grpc.StatusCode.INVALID_ARGUMENT


class TestRefusals:
    def _close(self, bank: LossBank, card_id: str) -> None:
        account_id = bank.get(card_id).account_id
        request = pb.CloseAccountRequest(request_id=f"close-{card_id}", account_id=account_id)
        bank.stub.CloseAccount(request, metadata=bank.service)

    @pytest.mark.parametrize(
        ("kind", "rule"),
        [(pb.LOSS_KIND_TEMPORARY_LOSS, "A13.2"), (pb.LOSS_KIND_FORMAL_LOSS, "A13.4")],
        ids=["temporary", "formal"],
    )
    def test_a_closed_account_refuses_a_suspension(
        self, bank: LossBank, kind: int, rule: str
    ) -> None:
        bank.open("card-1")
        self._close(bank, "card-1")
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.suspend("card-1", kind)
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert (error.reason, error.rule) == ("ACCOUNT_CLOSED", rule)
        closed = bank.get("card-1")
        assert (closed.status, closed.loss) == (pb.ACCOUNT_STATUS_CLOSED, pb.LOSS_KIND_UNSPECIFIED)

    def test_A14_1_a_closed_account_refuses_a_lift(self, bank: LossBank) -> None:
        bank.open("card-1")
        bank.suspend("card-1", pb.LOSS_KIND_TEMPORARY_LOSS)
        self._close(bank, "card-1")
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.lift("card-1")
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert (error.reason, error.rule) == ("ACCOUNT_CLOSED", "A14.1")

    def test_an_unknown_card_is_not_found(self, bank: LossBank) -> None:
        calls: list[Callable[[], Any]] = [
            lambda: bank.suspend("no-such-card", pb.LOSS_KIND_TEMPORARY_LOSS),
            lambda: bank.lift("no-such-card"),
            lambda: bank.get("no-such-card"),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as excinfo:
                call()
            code, error = refusal(excinfo)
            assert (code, error.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")

    def test_a_suspension_names_its_loss(self, bank: LossBank) -> None:
        bank.open("card-1")
        for kind in (pb.LOSS_KIND_UNSPECIFIED, 7):
            with pytest.raises(grpc.RpcError) as excinfo:
                bank.suspend("card-1", kind)
            code, error = refusal(excinfo)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert [v.field for v in error.violations] == ["kind"]
        assert bank.get("card-1").loss == pb.LOSS_KIND_UNSPECIFIED

    def test_only_the_suite_s_services_suspend_or_lift(self, bank: LossBank) -> None:
        bank.open("card-1")
        suspend = pb.SuspendForLossRequest(
            request_id="r1", card_id="card-1", kind=pb.LOSS_KIND_TEMPORARY_LOSS
        )
        lift = pb.LiftLossSuspensionRequest(request_id="r2", card_id="card-1")
        for metadata in (bank.ops, bank.counter):
            for call, request in (
                (bank.stub.SuspendForLoss, suspend),
                (bank.stub.LiftLossSuspension, lift),
            ):
                with pytest.raises(grpc.RpcError) as excinfo:
                    call(request, metadata=metadata)
                assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert bank.get("card-1").loss == pb.LOSS_KIND_UNSPECIFIED

    def test_the_account_is_read_by_services_and_bank_ops_only(self, bank: LossBank) -> None:
        bank.open("card-1")
        request = pb.GetAccountRequest(card_id="card-1")
        assert bank.stub.GetAccount(request, metadata=bank.service) == bank.get("card-1")
        with pytest.raises(grpc.RpcError) as excinfo:
            bank.stub.GetAccount(request, metadata=bank.counter)
        assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED
