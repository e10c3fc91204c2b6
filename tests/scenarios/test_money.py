"""Money that must never be stranded, over real gRPC on both databases (A19.1, A19.2): a
cancellation waits for every refund still on its way, a cancellation at the issuing bank after
one at a district outlet finishes the financial half, and the books balance after every kind
of saga (``tests.money.assert_conserved``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from services.bank.main import build as build_bank
from services.platform.auth import Channel
from services.platform.clock import SharedTestClock
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc, ledger_pb2
from sscard.card.v1 import card_pb2 as pb
from sscard.transit.v1 import transit_pb2 as tpb
from tests.cardsuite import OTHER_BANK, OTHER_INSTANT, Suite, active_card, wait_until
from tests.money import YUAN, account_balance, assert_conserved, ledger, pay_in
from tests.scenarios.test_card_deadlines import deadlines
from tests.scenarios.test_card_endings import cancel, cancellation_saga, record_death
from tests.scenarios.test_card_older_generation import (
    OLDER_ACCOUNT,
    OLDER_CARD_NUMBER,
    apply_and_activate,
    ended,
    older_account_of,
)
from tests.scenarios.test_card_replacement import formal_loss, hand_over, reissue, replace
from tests.scenarios.test_transit import refund_state, top_up, wallet
from tests.support import wait_serving

SETTLED = dt.date(2026, 11, 1)


def saga_state(suite: Suite, card_id: str) -> int:
    saga = cancellation_saga(suite, card_id)
    return saga.state if saga is not None else 0


def held_or_done(suite: Suite, card_id: str) -> bool:
    """The cancellation saga completed, or retries its transit refund."""
    saga = cancellation_saga(suite, card_id)
    if saga is None:
        return False
    held = saga.step == "refund_transit_balance" and saga.retries > 0
    return held or saga.state == pb.SAGA_STATE_COMPLETED


def payouts(suite: Suite, card_id: str) -> list[tuple[int, str]]:
    entries = (
        ledger(suite)
        .ListEntries(ledger_pb2.ListEntriesRequest(card_id=card_id), metadata=suite.ops)
        .entries
    )
    return [
        (e.amount_fen, e.counterparty)
        for e in entries
        if e.source == ledger_pb2.ENTRY_SOURCE_CLOSING_PAYOUT
    ]


def restart_bank(suite: Suite, start_service: Callable[..., Any]) -> None:
    """The bank comes back on its port, on the same database."""
    running = start_service("bank", build_bank)
    wait_serving(running.channel)
    suite.bank_server = running
    suite.bank = bank_pb2_grpc.BankServiceStub(running.channel)


class TestCancellation:
    def test_A19_1_a_branch_refund_still_on_its_way_is_paid_out_with_the_rest(
        self, suite: Suite, start_service: Callable[..., Any], test_clock: SharedTestClock
    ) -> None:
        """第十九条 到发卡合作银行服务网点一并办理社会保障卡社会保障功能注销、金融功能注销和交通出行
        功能退资等手续。"""
        card_id, person = active_card(suite, settled=SETTLED)
        top_up(suite, card_id, 300 * YUAN)
        suite.bank_server.server.stop(0)  # the bank stops answering
        early = suite.transit.Refund(
            tpb.RefundRequest(
                request_id=suite.rid("refund"), card_id=card_id, amount_fen=50 * YUAN
            ),
            metadata=suite.branch(),
        )
        wait_until(lambda: refund_state(suite, early.refund_id).last_error != "")
        # Its next try is due a day from now on the suite's clock: the cancellation runs first.
        test_clock.advance(dt.timedelta(days=-1))
        cancel(suite, card_id, person, suite.branch(), payout_destination="cash")
        restart_bank(suite, start_service)
        # Held at the transit refund while the earlier refund is on its way (without the rule,
        # it would run on and close the account before the earlier refund arrives).
        wait_until(lambda: held_or_done(suite, card_id), timeout=60)
        test_clock.advance(dt.timedelta(days=1))
        wait_until(lambda: saga_state(suite, card_id) == pb.SAGA_STATE_COMPLETED, timeout=60)

        assert refund_state(suite, early.refund_id).state == tpb.REFUND_STATE_ARRIVED
        closed = wallet(suite, card_id)
        assert (closed.balance_fen, closed.status) == (0, tpb.WALLET_STATUS_CLOSED)
        assert payouts(suite, card_id) == [(-300 * YUAN, "cash")]
        assert account_balance(suite, card_id).balance_fen == 0


class TestDistrictThenBank:
    def test_A19_1_A19_2_at_the_bank_after_a_district_cancellation_the_rest_is_done(
        self, suite: Suite
    ) -> None:
        """第十九条 到区、街两级社会保障卡服务网点办理社会保障卡社会保障功能注销手续,或到发卡合作
        银行服务网点一并办理社会保障卡社会保障功能注销、金融功能注销和交通出行功能退资等手续。"""
        card_id, person = active_card(suite, settled=SETTLED)
        top_up(suite, card_id, 80 * YUAN)
        cancel(suite, card_id, person, suite.at(Channel.DISTRICT_OUTLET))
        [watch] = deadlines(suite, rule="A19.2")
        assert watch.state == pb.DEADLINE_STATE_PENDING
        done = cancel(suite, card_id, person, suite.branch(), payout_destination="cash")
        assert done.status == pb.CARD_STATUS_SS_CANCELLED
        wait_until(lambda: saga_state(suite, card_id) == pb.SAGA_STATE_COMPLETED)
        cancel(suite, card_id, person, suite.branch(), payout_destination="cash")  # nothing new

        assert (wallet(suite, card_id).balance_fen, wallet(suite, card_id).status) == (
            0,
            tpb.WALLET_STATUS_CLOSED,
        )
        account = account_balance(suite, card_id)
        assert (account.balance_fen, account.closed) == (0, True)
        assert payouts(suite, card_id) == [(-80 * YUAN, "cash")]
        assert deadlines(suite, rule="A19.2", state=pb.DEADLINE_STATE_PENDING) == []
        notices = suite.get(card_id, history=True).notices
        assert ("person", "A19.1") in [(n.recipient, n.rule) for n in notices]
        assert (
            suite.bank.GetAccount(
                bank_pb2.GetAccountRequest(card_id=card_id), metadata=suite.ops
            ).status
            == bank_pb2.ACCOUNT_STATUS_CLOSED
        )


class TestBooks:
    def test_A16_3_A16_7_A19_1_A27_3_money_in_is_money_out_plus_balances_after_every_saga_kind(
        self, suite: Suite
    ) -> None:
        """No fen is made or lost, and none stays in a closed account or wallet, whichever sagas
        moved it: applications, a replacement to another bank (the wallet moved, the old
        account paid into the new, the park pass moved), a reissue, a cancellation at the
        issuing bank (transit refund, payout, close), an older card's account closed at
        activation (A27.3), a death (the bank stops issuing, the place is freed)."""
        touched: list[str] = []
        # Replacement to another bank, then cancellation there.
        card_id, person = active_card(suite, settled=SETTLED)
        pay_in(suite, card_id, 1000 * YUAN)
        top_up(suite, card_id, 120 * YUAN)
        started = replace(suite, card_id, person, new_bank_code=OTHER_BANK, pickup=OTHER_INSTANT)
        suite.settle(started.card_id)
        hand_over(suite, started.card_id, person, OTHER_BANK, OTHER_INSTANT, old_card_id=card_id)
        wait_until(lambda: account_balance(suite, card_id).closed)
        top_up(suite, started.card_id, 30 * YUAN)
        cancel(
            suite,
            started.card_id,
            person,
            suite.branch(OTHER_BANK, OTHER_INSTANT),
            payout_destination="cash",
        )
        wait_until(
            lambda: saga_state(suite, started.card_id) == pb.SAGA_STATE_COMPLETED, timeout=60
        )
        touched += [card_id, started.card_id]

        # A reissue after a formal loss: the account carries over, the wallet moves.
        lost, holder = active_card(suite)
        pay_in(suite, lost, 55 * YUAN)
        top_up(suite, lost, 20 * YUAN)
        formal_loss(suite, lost, holder)
        again = reissue(suite, lost, holder)
        suite.settle(again.card_id)
        hand_over(suite, again.card_id, holder)
        wait_until(lambda: wallet(suite, lost).status == tpb.WALLET_STATUS_CLOSED)
        touched += [lost, again.card_id]

        # An older card's account closed into the new card's when it is activated (A27.3).
        upgrader = suite.person(legacy_generation=2)
        older_account_of(suite, upgrader, 321_00)
        choice = pb.OlderCardChoice(
            cancel_financial=True, bank_code=OTHER_BANK, card_number=OLDER_CARD_NUMBER
        )
        upgraded = apply_and_activate(suite, upgrader, choice)
        assert ended(suite, upgraded) == pb.SAGA_STATE_COMPLETED
        touched += [upgraded, OLDER_ACCOUNT]

        # A death before the card reached its holder.
        deceased = suite.person()
        ordered = suite.apply(deceased)
        suite.settle(ordered.card_id)
        record_death(suite, deceased, "death-books")
        wait_until(lambda: suite.get(ordered.card_id).status == pb.CARD_STATUS_WITHDRAWN)
        touched.append(ordered.card_id)

        seen = assert_conserved(suite, touched)
        assert seen.outside_in == (1000 + 120 + 30 + 55 + 20) * YUAN + 321_00
        assert seen.wallets_to_bank == (120 + 30 + 20) * YUAN  # every wallet emptied into a bank
