"""The transit wallet and the park annual pass over real gRPC against real identity, bank, card
and transit services, on SQLite and PostgreSQL: A3.1, A10.1, A10.2, A11.1, A11.2, A13.2,
A16.3, A16.4 and the transit part of A19.1."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from services.platform.audit import AuditTrail, lane_for
from services.platform.auth import Channel, Role
from services.platform.clock import BEIJING, SharedTestClock
from services.transit import store as transit_store
from services.transit.domain import rules
from services.transit.main import build as build_transit
from sscard.bank.v1 import ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2
from sscard.transit.v1 import transit_pb2 as tpb
from sscard.transit.v1 import transit_pb2_grpc as tpb_grpc
from tests.cardsuite import (
    BANK,
    BRANCH,
    INSTANT,
    OTHER_BANK,
    OTHER_INSTANT,
    Suite,
    active_card,
    hotline_loss,
    reason_rule,
    rpc_error,
    wait_until,
)
from tests.scenarios.test_card_replacement import hand_over, replace
from tests.support import PersonSpec
from tests.trust import TestTrust

YUAN = 100


def kiosk(suite: Suite, kiosk_id: str = "KIOSK-7") -> Any:
    return suite.at(Channel.TRANSIT_OUTLET, outlet_id=kiosk_id, roles=(Role.COUNTER,))


def top_up(
    suite: Suite, card_id: str, amount_fen: int, metadata: Any = None, request_id: str = ""
) -> tpb.Entry:
    return suite.transit.TopUp(
        tpb.TopUpRequest(
            request_id=request_id or suite.rid("kiosk-txn"), card_id=card_id, amount_fen=amount_fen
        ),
        metadata=metadata or kiosk(suite),
    )


def wallet(suite: Suite, card_id: str) -> tpb.Wallet:
    return suite.transit.GetBalance(tpb.GetBalanceRequest(card_id=card_id), metadata=suite.ops)


def bank_balance(suite: Suite, ledger: ledger_pb2_grpc.LedgerServiceStub, card_id: str) -> int:
    answer = ledger.GetBalance(
        ledger_pb2.GetBalanceRequest(card_id=card_id), metadata=suite.service
    )
    return int(answer.balance_fen)


def refund_state(suite: Suite, refund_id: str) -> tpb.BalanceRefund:
    return suite.transit.GetRefund(tpb.GetRefundRequest(refund_id=refund_id), metadata=suite.ops)


def temporary_loss(suite: Suite, card_id: str, person: PersonSpec) -> None:
    hotline_loss(suite, card_id, person)


def formal_loss(suite: Suite, card_id: str, person: PersonSpec) -> None:
    suite.card.ReportFormalLoss(
        pb.ReportLossRequest(
            request_id=suite.rid("formal"), card_id=card_id, document=person.document()
        ),
        metadata=suite.at(Channel.DISTRICT_OUTLET),
    )


def unlock(suite: Suite, card_id: str, person: PersonSpec) -> None:
    suite.card.UnlockCard(
        pb.UnlockCardRequest(
            request_id=suite.rid("unlock"), card_id=card_id, document=person.document()
        ),
        metadata=suite.at(Channel.DISTRICT_OUTLET),
    )


def buy_pass(suite: Suite, card_id: str, metadata: Any = None) -> tpb.ParkPass:
    return suite.transit.PurchaseParkPass(
        tpb.PurchaseParkPassRequest(request_id=suite.rid("pass"), card_id=card_id),
        metadata=metadata or suite.at(Channel.PARK_OUTLET, outlet_id="PARK-1"),
    )


def get_pass(suite: Suite, card_id: str, year: int = 0) -> tpb.ParkPass:
    return suite.transit.GetParkPass(
        tpb.GetParkPassRequest(card_id=card_id, year=year), metadata=suite.ops
    )


def transit_told(suite: Suite, card_id: str) -> bool:
    """Whether every change of the card's status has reached transit (its pushes completed)."""
    ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
    sagas = ops.ListSagas(
        pb.ListSagasRequest(card_id=card_id, kind="transit_status"), metadata=suite.ops
    ).sagas
    return bool(sagas) and all(s.state == pb.SAGA_STATE_COMPLETED for s in sagas)


def transit_view(transit: Any, card_id: str) -> str:
    """The card's status in transit's own view, read from its database."""
    with transit.deps.db.engine.connect() as connection:
        return str(
            connection.execute(
                text("SELECT status FROM card_status WHERE card_id = :c"), {"c": card_id}
            ).scalar_one_or_none()
        )


@pytest.fixture
def ledger(
    service_env: dict[str, str], trust: TestTrust
) -> Iterator[ledger_pb2_grpc.LedgerServiceStub]:
    """The bank's ledger, where refunded transit balances arrive."""
    channel = trust.channel(f"127.0.0.1:{service_env['SSCARD_BANK_PORT']}")
    yield ledger_pb2_grpc.LedgerServiceStub(channel)
    channel.close()


class TestTopUp:
    def test_A10_1_a_collected_card_is_topped_up_at_any_bank_an_outlet_or_the_app(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        top_up(suite, card_id, 50 * YUAN, metadata=suite.branch(OTHER_BANK, OTHER_INSTANT))
        top_up(suite, card_id, 20 * YUAN)
        app = suite.at(Channel.TRANSIT_APP, person)
        last = top_up(suite, card_id, 10 * YUAN, metadata=app)
        assert last.balance_after_fen == 80 * YUAN
        assert wallet(suite, card_id).balance_fen == 80 * YUAN
        page = suite.transit.ListTransactions(
            tpb.ListTransactionsRequest(card_id=card_id, page_size=2), metadata=suite.ops
        )
        assert [e.amount_fen for e in page.entries] == [10 * YUAN, 20 * YUAN]  # newest first
        rest = suite.transit.ListTransactions(
            tpb.ListTransactionsRequest(
                card_id=card_id, page_size=2, page_token=page.next_page_token
            ),
            metadata=suite.ops,
        )
        assert [(e.kind, e.amount_fen, e.channel) for e in rest.entries] == [
            (tpb.ENTRY_KIND_TOP_UP, 50 * YUAN, common_pb2.CHANNEL_BANK_BRANCH)
        ]
        assert rest.next_page_token == ""

    def test_A10_1_a_card_not_yet_collected_is_not_topped_up(self, suite: Suite) -> None:
        person = suite.person()
        started = suite.apply(person, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
        suite.settle(started.card_id)  # made on the spot, waiting at the branch
        error = rpc_error(lambda: top_up(suite, started.card_id, 10 * YUAN))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_rule(error) == ("CARD_NOT_COLLECTED", "A10.1")
        suite.collect(started.card_id, person, metadata=suite.branch(BANK, INSTANT))
        assert top_up(suite, started.card_id, 10 * YUAN).balance_after_fen == 10 * YUAN

    def test_A3_1_top_up_through_a_channel_not_in_the_matrix_is_refused(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        for metadata in (
            suite.at(Channel.ONLINE, person),  # the holder online, not in the transit app
            suite.at(Channel.DISTRICT_OUTLET),
            suite.at(Channel.PARK_OUTLET),
        ):
            error = rpc_error(lambda m=metadata: top_up(suite, card_id, 10 * YUAN, m))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert reason_rule(error) == ("CHANNEL_NOT_ALLOWED", "A3.1")
        assert wallet(suite, card_id).balance_fen == 0

    def test_A10_2_top_ups_are_whole_yuan(self, suite: Suite) -> None:
        card_id, _ = active_card(suite)
        for amount in (150, 0, -100):
            error = rpc_error(lambda a=amount: top_up(suite, card_id, a))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert reason_rule(error) == ("TOP_UP_NOT_WHOLE_YUAN", "A10.2")

    def test_A10_2_one_top_up_is_at_most_the_per_top_up_maximum(self, suite: Suite) -> None:
        card_id, _ = active_card(suite)
        error = rpc_error(lambda: top_up(suite, card_id, rules.MAX_TOP_UP_FEN + YUAN))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_rule(error) == ("TOP_UP_OVER_MAXIMUM", "A10.2")

    def test_A10_2_the_balance_never_passes_the_cap(self, suite: Suite) -> None:
        card_id, _ = active_card(suite)
        top_up(suite, card_id, 900 * YUAN)
        error = rpc_error(lambda: top_up(suite, card_id, 200 * YUAN))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_rule(error) == ("BALANCE_CAP_EXCEEDED", "A10.2")
        assert top_up(suite, card_id, 100 * YUAN).balance_after_fen == rules.BALANCE_CAP_FEN

    def test_A10_2_a_kiosk_that_retries_its_transaction_never_pays_twice(
        self, suite: Suite
    ) -> None:
        card_id, _ = active_card(suite)
        first = top_up(suite, card_id, 30 * YUAN, request_id="KIOSK-7-000123")
        again = top_up(suite, card_id, 30 * YUAN, request_id="KIOSK-7-000123")
        assert again == first
        assert wallet(suite, card_id).balance_fen == 30 * YUAN
        # Another kiosk (its own credential) numbering its transactions the same way: another
        # top-up, since keys are scoped by caller.
        other_kiosk = suite.token(
            channel=Channel.TRANSIT_OUTLET, roles=(Role.COUNTER,), caller="kiosk-9"
        )
        other = top_up(suite, card_id, 30 * YUAN, other_kiosk, "KIOSK-7-000123")
        assert other.entry_id != first.entry_id
        assert wallet(suite, card_id).balance_fen == 60 * YUAN
        reused = rpc_error(lambda: top_up(suite, card_id, 40 * YUAN, request_id="KIOSK-7-000123"))
        assert reason_rule(reused)[0] == "REQUEST_ID_REUSED"

    def test_A10_2_every_top_up_and_its_replay_is_in_transits_intact_audit_trail(
        self, suite: Suite
    ) -> None:
        card_id, _ = active_card(suite)
        booked = [top_up(suite, card_id, 10 * YUAN, request_id=f"KIOSK-7-{n}") for n in range(3)]
        assert top_up(suite, card_id, 10 * YUAN, request_id="KIOSK-7-1") == booked[1]
        assert [e.balance_after_fen for e in booked] == [10 * YUAN, 20 * YUAN, 30 * YUAN]
        over = rpc_error(lambda: top_up(suite, card_id, rules.BALANCE_CAP_FEN, request_id="x"))
        assert reason_rule(over) == ("BALANCE_CAP_EXCEEDED", "A10.2")
        with Session(suite.transit_server.deps.db.engine) as session:
            trail = AuditTrail(transit_store.metadata)
            assert trail.verify(session).intact
            rows = trail.rows(session, card_id=card_id)
        assert {r.lane for r in rows} == {lane_for(card_id)}  # the card's own chain
        top_ups = [r.item for r in rows if r.item.method == "TopUp"]  # a replay adds none
        assert [(i.request_id, i.outcome) for i in top_ups] == [
            ("KIOSK-7-0", "OK"),
            ("KIOSK-7-1", "OK"),
            ("KIOSK-7-2", "OK"),
            ("x", "BALANCE_CAP_EXCEEDED"),
        ]

    def test_A10_2_a_retry_after_the_card_was_reported_lost_returns_the_committed_top_up(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        first = top_up(suite, card_id, 30 * YUAN, request_id="KIOSK-7-000555")
        temporary_loss(suite, card_id, person)
        assert top_up(suite, card_id, 30 * YUAN, request_id="KIOSK-7-000555") == first
        assert wallet(suite, card_id).balance_fen == 30 * YUAN


class TestFreezing:
    def test_A13_2_a_loss_stops_top_ups_at_once_and_an_unlock_resumes_them(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        top_up(suite, card_id, 10 * YUAN)
        temporary_loss(suite, card_id, person)
        error = rpc_error(lambda: top_up(suite, card_id, 10 * YUAN))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_rule(error) == ("CARD_LOST", "A13.2")
        formal_loss(suite, card_id, person)
        assert reason_rule(rpc_error(lambda: top_up(suite, card_id, 10 * YUAN))) == (
            "CARD_LOST",
            "A13.2",
        )
        unlock(suite, card_id, person)
        assert top_up(suite, card_id, 10 * YUAN).balance_after_fen == 20 * YUAN

    def test_A13_2_a_loss_is_in_transits_own_view_before_it_is_acknowledged(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        top_up(suite, card_id, 10 * YUAN)
        temporary_loss(suite, card_id, person)
        assert transit_view(suite.transit_server, card_id) == "TEMPORARILY_LOST"
        suite.card_server.server.stop(0)
        error = rpc_error(lambda: top_up(suite, card_id, 10 * YUAN))
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # a lost card is asked about
        assert wallet(suite, card_id).balance_fen == 10 * YUAN

    def test_A10_1_top_ups_go_on_without_the_card_service_and_an_unknown_card_waits_for_it(
        self, suite: Suite
    ) -> None:
        card_id, _ = active_card(suite)
        top_up(suite, card_id, 10 * YUAN)
        person = suite.person()
        waiting = suite.apply(person, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
        suite.settle(waiting.card_id)  # made, not yet collected: transit has never heard of it
        suite.card_server.server.stop(0)
        assert top_up(suite, card_id, 10 * YUAN).balance_after_fen == 20 * YUAN
        error = rpc_error(lambda: top_up(suite, waiting.card_id, 10 * YUAN))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert wallet(suite, waiting.card_id).balance_fen == 0  # no money taken

    def test_A13_2_only_the_card_service_tells_transit_a_cards_status(self, suite: Suite) -> None:
        card_id, _ = active_card(suite)
        top_up(suite, card_id, 10 * YUAN)
        denied = rpc_error(
            lambda: suite.transit.RecordCardStatus(
                tpb.RecordCardStatusRequest(
                    request_id="forged-1",
                    card_id=card_id,
                    status=pb.CARD_STATUS_REPLACED,
                    version=2**62,
                ),
                metadata=suite.service,  # another sscard service's credential
            )
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_rule(denied) == ("NOT_THE_CARD_SERVICE", "A13.2")
        assert transit_view(suite.transit_server, card_id) in ("COLLECTED", "ACTIVE")

    def test_A10_1_a_card_transit_holds_no_view_of_is_asked_about_once(self, suite: Suite) -> None:
        card_id, _ = active_card(suite)
        with suite.transit_server.deps.db.engine.begin() as connection:
            # As for every card issued before transit kept its own view.
            connection.execute(text("DELETE FROM card_status"))
        assert top_up(suite, card_id, 10 * YUAN).balance_after_fen == 10 * YUAN
        suite.card_server.server.stop(0)  # the answer was kept
        assert top_up(suite, card_id, 10 * YUAN).balance_after_fen == 20 * YUAN

    def test_A13_2_a_loss_while_transit_is_down_is_recorded_and_reaches_transit_later(
        self, suite: Suite, start_service: Callable[..., Any]
    ) -> None:
        card_id, person = active_card(suite)
        top_up(suite, card_id, 10 * YUAN)
        suite.transit_server.server.stop(0)
        lost = hotline_loss(suite, card_id, person)
        assert lost.status == pb.CARD_STATUS_TEMPORARILY_LOST  # recorded all the same
        assert any(
            n.rule == "A13.2" and "transit" in n.text and "not yet confirmed" in n.text
            for n in lost.notices
        )
        restarted = start_service("transit", build_transit)
        transit = tpb_grpc.TransitServiceStub(restarted.channel)
        wait_until(lambda: transit_told(suite, card_id), timeout=60)
        assert transit_view(restarted, card_id) == "TEMPORARILY_LOST"
        error = rpc_error(
            lambda: transit.TopUp(
                tpb.TopUpRequest(request_id="late-1", card_id=card_id, amount_fen=10 * YUAN),
                metadata=kiosk(suite),
            )
        )
        assert reason_rule(error) == ("CARD_LOST", "A13.2")


class TestRefund:
    def test_A3_1_a_refund_is_made_at_a_bank_branch(
        self, suite: Suite, ledger: ledger_pb2_grpc.LedgerServiceStub
    ) -> None:
        card_id, person = active_card(suite)
        top_up(suite, card_id, 100 * YUAN)

        def refund_at(metadata: Any) -> grpc.RpcError:
            return rpc_error(
                lambda: suite.transit.Refund(
                    tpb.RefundRequest(request_id=suite.rid("refund"), card_id=card_id),
                    metadata=metadata,
                )
            )

        at_kiosk = refund_at(kiosk(suite))
        assert reason_rule(at_kiosk) == ("CHANNEL_NOT_ALLOWED", "A3.1")
        in_app = refund_at(suite.at(Channel.TRANSIT_APP, person))  # a refund is counter business
        assert (in_app.code(), reason_rule(in_app)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            ("ROLE_NOT_ALLOWED", ""),
        )
        too_much = rpc_error(
            lambda: suite.transit.Refund(
                tpb.RefundRequest(
                    request_id=suite.rid("refund"), card_id=card_id, amount_fen=101 * YUAN
                ),
                metadata=suite.branch(),
            )
        )
        assert reason_rule(too_much)[0] == "INSUFFICIENT_BALANCE"
        part = suite.transit.Refund(
            tpb.RefundRequest(
                request_id=suite.rid("refund"), card_id=card_id, amount_fen=40 * YUAN
            ),
            metadata=suite.branch(),
        )
        assert (part.amount_fen, part.balance_after_fen, part.to_card_id) == (
            40 * YUAN,
            60 * YUAN,
            card_id,
        )
        wait_until(lambda: refund_state(suite, part.refund_id).state == tpb.REFUND_STATE_ARRIVED)
        assert bank_balance(suite, ledger, card_id) == 40 * YUAN
        # The wallet stays open after a refund at the branch.
        assert top_up(suite, card_id, 10 * YUAN).balance_after_fen == 70 * YUAN

    def test_A19_1_cancellation_at_the_bank_moves_the_whole_balance_to_the_cards_account(
        self, suite: Suite, ledger: ledger_pb2_grpc.LedgerServiceStub
    ) -> None:
        card_id, _ = active_card(suite)
        top_up(suite, card_id, 123 * YUAN)

        def cancel(request_id: str) -> tpb.BalanceRefund:
            return suite.transit.RefundBalance(
                tpb.RefundBalanceRequest(
                    request_id=request_id, card_id=card_id, reason=tpb.REFUND_REASON_CANCELLATION
                ),
                metadata=suite.service,
            )

        moved = cancel("cancel-saga:3")
        assert cancel("cancel-saga:3") == moved  # a retried saga step moves nothing again
        assert (moved.amount_fen, moved.to_card_id, moved.state) == (
            123 * YUAN,
            card_id,
            tpb.REFUND_STATE_SENDING,
        )
        wait_until(lambda: refund_state(suite, moved.refund_id).state == tpb.REFUND_STATE_ARRIVED)
        assert bank_balance(suite, ledger, card_id) == 123 * YUAN
        closed = wallet(suite, card_id)
        assert (closed.balance_fen, closed.status, closed.closed_reason) == (
            0,
            tpb.WALLET_STATUS_CLOSED,
            tpb.REFUND_REASON_CANCELLATION,
        )
        assert cancel("cancel-again").state == tpb.REFUND_STATE_NOTHING_TO_REFUND
        error = rpc_error(lambda: top_up(suite, card_id, 10 * YUAN))
        assert reason_rule(error) == ("WALLET_CLOSED", "A10.2")
        counter = rpc_error(
            lambda: suite.transit.RefundBalance(
                tpb.RefundBalanceRequest(
                    request_id="x", card_id=card_id, reason=tpb.REFUND_REASON_CANCELLATION
                ),
                metadata=suite.branch(),
            )
        )
        assert counter.code() == grpc.StatusCode.PERMISSION_DENIED


class TestReplacement:
    def test_A16_3_the_old_cards_balance_reaches_the_bank_account_when_the_new_card_is_collected(
        self, suite: Suite, ledger: ledger_pb2_grpc.LedgerServiceStub
    ) -> None:
        card_id, person = active_card(suite)
        top_up(suite, card_id, 300 * YUAN)
        started = replace(
            suite,
            card_id,
            person,
            pb.REPLACEMENT_REASON_CHIP_FAILURE,
            metadata=suite.at(Channel.ONLINE, person),
        )
        assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED
        assert wallet(suite, card_id).balance_fen == 300 * YUAN  # not before collection
        before = bank_balance(suite, ledger, card_id)
        hand_over(suite, started.card_id, person, old_card_id=card_id)
        wait_until(lambda: wallet(suite, card_id).status == tpb.WALLET_STATUS_CLOSED)
        entries = suite.transit.ListTransactions(
            tpb.ListTransactionsRequest(card_id=card_id), metadata=suite.ops
        ).entries
        assert (entries[0].kind, entries[0].amount_fen) == (
            tpb.ENTRY_KIND_TRANSFER_OUT,
            -300 * YUAN,
        )
        refund_id = entries[0].reference
        wait_until(lambda: refund_state(suite, refund_id).state == tpb.REFUND_STATE_ARRIVED)
        assert refund_state(suite, refund_id).to_card_id == started.card_id
        # Same bank: the new card carries the old card's account.
        assert bank_balance(suite, ledger, card_id) == before + 300 * YUAN
        assert wallet(suite, card_id).balance_fen == 0
        error = rpc_error(lambda: top_up(suite, card_id, 10 * YUAN))
        assert reason_rule(error) == ("CARD_NOT_USABLE", "A10.2")
        assert top_up(suite, started.card_id, 10 * YUAN).balance_after_fen == 10 * YUAN

    def test_A16_4_A16_5_the_park_pass_stays_on_the_old_card_until_moved_at_collection(
        self, suite: Suite
    ) -> None:
        """第十六条：若旧卡已开通公园游览功能,可现场将对应功能转移至新卡。旧卡原有功能自持卡人
        启用新卡时失效。"""
        card_id, person = active_card(
            suite, preferential=(identity_pb2.PREFERENTIAL_TREATMENT_PARK_PASS,)
        )
        bought = buy_pass(suite, card_id)
        new = replace(
            suite,
            card_id,
            person,
            pb.REPLACEMENT_REASON_DAMAGED_FACE,
            metadata=suite.at(Channel.ONLINE, person),
        )
        assert suite.settle(new.card_id).state == pb.SAGA_STATE_COMPLETED
        # While the new card is made, the holder still enters parks with the old one.
        assert get_pass(suite, card_id).pass_id == bought.pass_id
        assert rpc_error(lambda: get_pass(suite, new.card_id)).code() == grpc.StatusCode.NOT_FOUND
        suite.produce(new.card_id)
        suite.collect(
            new.card_id,
            person,
            metadata=suite.branch(BANK, INSTANT),
            old_card_id=card_id,
            move_park_pass=True,
        )

        def moved() -> bool:
            try:
                return bool(get_pass(suite, new.card_id).pass_id == bought.pass_id)
            except grpc.RpcError:
                return False

        wait_until(moved)
        assert get_pass(suite, new.card_id).original_card_id == card_id
        assert rpc_error(lambda: get_pass(suite, card_id)).code() == grpc.StatusCode.NOT_FOUND

    def test_A16_4_a_pass_not_moved_at_collection_ends_with_the_old_card(
        self, suite: Suite
    ) -> None:
        """第十六条：若旧卡已开通公园游览功能,可现场将对应功能转移至新卡。旧卡原有功能自持卡人
        启用新卡时失效。"""
        first, person = active_card(
            suite, preferential=(identity_pb2.PREFERENTIAL_TREATMENT_PARK_PASS,)
        )
        no_old = rpc_error(
            lambda: suite.collect(
                first, person, metadata=suite.branch(BANK, INSTANT), move_park_pass=True
            )
        )
        assert reason_rule(no_old) == ("NO_OLD_CARD", "A16.4")
        bought = buy_pass(suite, first)
        new = replace(suite, first, person, pb.REPLACEMENT_REASON_CHIP_FAILURE)
        suite.settle(new.card_id)
        hand_over(suite, new.card_id, person, old_card_id=first)
        assert get_pass(suite, first).pass_id == bought.pass_id
        assert suite.get(first).status == pb.CARD_STATUS_REPLACED
        assert rpc_error(lambda: get_pass(suite, new.card_id)).code() == grpc.StatusCode.NOT_FOUND


class TestParkPass:
    def test_A11_1_an_eligible_holder_buys_the_pass_for_the_calendar_year(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        person = suite.person(preferential=(identity_pb2.PREFERENTIAL_TREATMENT_PARK_PASS,))
        started = suite.apply(person, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
        suite.settle(started.card_id)
        suite.collect(started.card_id, person, metadata=suite.branch(BANK, INSTANT))
        card_id = started.card_id
        refused = rpc_error(lambda: buy_pass(suite, card_id, kiosk(suite)))
        assert reason_rule(refused) == ("CHANNEL_NOT_ALLOWED", "A3.1")
        online = rpc_error(lambda: buy_pass(suite, card_id, suite.at(Channel.ONLINE, person)))
        assert (online.code(), reason_rule(online)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            ("ROLE_NOT_ALLOWED", ""),
        )
        other_bank = rpc_error(
            lambda: buy_pass(suite, card_id, suite.branch(OTHER_BANK, OTHER_INSTANT))
        )
        assert reason_rule(other_bank) == ("CHANNEL_NOT_ALLOWED", "A3.1")
        bought = buy_pass(suite, card_id, suite.branch(BANK, BRANCH))
        year = test_clock.now().astimezone(BEIJING).year
        assert bought.year == year
        assert (bought.valid_from.month, bought.valid_from.day) == (1, 1)
        assert (bought.valid_until.year, bought.valid_until.month, bought.valid_until.day) == (
            year,
            12,
            31,
        )
        again = rpc_error(lambda: buy_pass(suite, card_id))
        assert again.code() == grpc.StatusCode.ALREADY_EXISTS
        assert reason_rule(again) == ("PARK_PASS_ALREADY_HELD", "A11.1")
        new_year = dt.datetime(year + 1, 1, 1, 0, 30, tzinfo=BEIJING)
        test_clock.advance(new_year - test_clock.now())
        assert buy_pass(suite, card_id).year == year + 1
        assert get_pass(suite, card_id, year).pass_id == bought.pass_id

    def test_A11_2_a_holder_without_the_preferential_flag_is_not_eligible(
        self, suite: Suite
    ) -> None:
        card_id, _ = active_card(suite)
        error = rpc_error(lambda: buy_pass(suite, card_id))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_rule(error) == ("NOT_ELIGIBLE_FOR_PARK_PASS", "A11.2")

    def test_A16_4_a_retried_move_moves_the_pass_once_and_only_for_the_card_service(
        self, suite: Suite
    ) -> None:
        card_id, _ = active_card(
            suite, preferential=(identity_pb2.PREFERENTIAL_TREATMENT_PARK_PASS,)
        )
        bought = buy_pass(suite, card_id)

        def move(request_id: str, from_card: str, to_card: str) -> tpb.TransferParkPassResponse:
            answer: tpb.TransferParkPassResponse = suite.transit.TransferParkPass(
                tpb.TransferParkPassRequest(
                    request_id=request_id, from_card_id=from_card, to_card_id=to_card
                ),
                metadata=suite.service,
            )
            return answer

        there = move("saga-9:4", card_id, "card-new")
        assert move("saga-9:4", card_id, "card-new") == there  # a retried step moves once
        assert [(p.pass_id, p.card_id) for p in there.passes] == [(bought.pass_id, "card-new")]
        back = move("saga-9:4:undo", "card-new", card_id)
        assert [(p.card_id, p.original_card_id) for p in back.passes] == [(card_id, "")]
        assert get_pass(suite, card_id).pass_id == bought.pass_id
        assert move("saga-9:4:undo-again", "card-new", card_id).passes == []  # nothing left
        kiosk_call = rpc_error(
            lambda: suite.transit.TransferParkPass(
                tpb.TransferParkPassRequest(
                    request_id="x", from_card_id=card_id, to_card_id="card-new"
                ),
                metadata=suite.at(Channel.PARK_OUTLET),
            )
        )
        assert kiosk_call.code() == grpc.StatusCode.PERMISSION_DENIED
