"""The ledger of card accounts over real gRPC, on SQLite and PostgreSQL: balance = sum of
entries, never negative, idempotent by request_id; account classes and their non-counter limits
(A4.5); monitoring alerts that freeze non-counter business (A4.5); no debit while the card is
reported lost (A13.2, A13.4) or before the financial function is activated (A9.2); non-counter
suspension with the counter still open (A19.2); closing with the balance paid out (A19.1,
A20.1); a destroyed card can do nothing (A16.6)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from sqlalchemy import update

from services.bank import store
from services.bank.main import build
from services.platform.auth import Channel, Role
from services.platform.clock import BEIJING, SharedTestClock
from services.platform.db import Database
from sscard.bank.v1 import bank_pb2 as bpb
from sscard.bank.v1 import ledger_pb2 as pb
from sscard.bank.v1 import ledger_pb2_grpc
from sscard.common.v1 import common_pb2
from tests.scenarios.test_bank_first_card import Bank, facts
from tests.support import refusal, resident_id, wait_serving

_ids = itertools.count(1)
YUAN = 100


def rid(label: str) -> str:
    return f"{label}-{next(_ids)}"


def activate_financial_in_store_for_test(db: Database, card_id: str, at: dt.datetime) -> None:
    """Mark the card's financial function activated (A9.1) straight in the bank's store, as the
    counter's ActivateFinancial records it; for tests that are about the ledger, not activation."""
    with db.writing() as session:
        session.execute(
            update(store.accounts)
            .where(store.accounts.c.card_id == card_id)
            .values(financial_activated_at=at)
        )


class Ledger(Bank):
    """Clients of the ledger: the card service, the bank's core system (online banking, ATM,
    third-party payments), a counter, operations."""

    def __init__(self, running: Any, token: Callable[..., Any], clock: SharedTestClock) -> None:
        super().__init__(running.channel, token)
        self.db: Database = running.deps.db
        self.clock = clock
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(running.channel)
        self.online = token(Channel.INTERNAL, (Role.BANK,), caller="icbc-core", bank_code="ICBC")
        self.counter = token(
            Channel.BANK_BRANCH, (Role.COUNTER,), bank_code="ICBC", outlet_id="icbc-plain"
        )
        self.other_bank = token(
            Channel.BANK_BRANCH, (Role.COUNTER,), bank_code="BOC", outlet_id="boc-1"
        )
        self.holders: dict[str, common_pb2.IdentityDocument] = {}

    def account(self, card_id: str, activated: bool = True) -> str:
        holder = facts(resident_id())
        account_id = self.open(card_id, verified=holder).account_id
        self.holders[card_id] = holder.document
        if activated:
            activate_financial_in_store_for_test(self.db, card_id, self.clock.now())
        return str(account_id)

    def credit(
        self,
        card_id: str,
        amount: int,
        source: int = pb.ENTRY_SOURCE_TRANSIT_REFUND,
        request_id: str = "",
        counterparty: str = "transit",
        metadata: Any = None,
    ) -> pb.LedgerEntry:
        request_id = request_id or rid("credit")
        request = pb.CreditRequest(
            request_id=request_id,
            card_id=card_id,
            amount_fen=amount,
            source=source,  # type: ignore[arg-type]
            reference=f"ref-{request_id}",
            counterparty=counterparty,
        )
        return self.ledger.Credit(request, metadata=metadata or self.service)

    def debit(
        self,
        card_id: str,
        amount: int,
        channel: int = pb.PAYMENT_CHANNEL_ONLINE_BANKING,
        request_id: str = "",
        metadata: Any = None,
    ) -> pb.LedgerEntry:
        request = pb.DebitRequest(
            request_id=request_id or rid("debit"),
            card_id=card_id,
            amount_fen=amount,
            channel=channel,  # type: ignore[arg-type]
            counterparty="shop",
        )
        default = self.counter if channel == pb.PAYMENT_CHANNEL_PAYMENT_COUNTER else self.online
        return self.ledger.Debit(request, metadata=metadata or default)

    def transfer(
        self,
        from_card: str,
        amount: int,
        to_card: str = "",
        channel: int = pb.PAYMENT_CHANNEL_ONLINE_BANKING,
    ) -> pb.TransferResponse:
        request = pb.TransferRequest(
            request_id=rid("transfer"),
            from_card_id=from_card,
            amount_fen=amount,
            channel=channel,  # type: ignore[arg-type]
        )
        if to_card:
            request.to_card_id = to_card
        else:
            request.external_counterparty = "6222020000000000@BOC"
        metadata = self.counter if channel == pb.PAYMENT_CHANNEL_PAYMENT_COUNTER else self.online
        return self.ledger.Transfer(request, metadata=metadata)

    def balance(self, card_id: str) -> pb.AccountBalance:
        return self.ledger.GetBalance(pb.GetBalanceRequest(card_id=card_id), metadata=self.ops)

    def entries(self, card_id: str, page_size: int = 0) -> list[pb.LedgerEntry]:
        found: list[pb.LedgerEntry] = []
        token = ""
        while True:
            page = self.ledger.ListEntries(
                pb.ListEntriesRequest(card_id=card_id, page_size=page_size, page_token=token),
                metadata=self.ops,
            )
            found.extend(page.entries)
            token = page.next_page_token
            if not token:
                return found

    def consistent(self, card_id: str) -> int:
        """The balance, after checking it is the sum of the entries and not negative."""
        balance = self.balance(card_id).balance_fen
        assert balance == sum(e.amount_fen for e in self.entries(card_id)) and balance >= 0
        return balance

    def suspend(self, card_id: str, reason: int) -> pb.AccountBalance:
        request = pb.SuspendNonCounterRequest(
            request_id=rid("nc"),
            card_id=card_id,
            reason=reason,  # type: ignore[arg-type]
        )
        return self.ledger.SuspendNonCounter(request, metadata=self.service)

    def resume(self, card_id: str, reason: int) -> pb.AccountBalance:
        request = pb.ResumeNonCounterRequest(
            request_id=rid("nc"),
            card_id=card_id,
            reason=reason,  # type: ignore[arg-type]
        )
        return self.ledger.ResumeNonCounter(request, metadata=self.ops)

    def set_tier(self, card_id: str, tier: int) -> pb.AccountBalance:
        request = pb.SetAccountTierRequest(
            request_id=rid("tier"),
            card_id=card_id,
            tier=tier,  # type: ignore[arg-type]
        )
        return self.ledger.SetAccountTier(request, metadata=self.ops)

    def close(
        self,
        card_id: str,
        request_id: str = "",
        metadata: Any = None,
        document: common_pb2.IdentityDocument | None = None,
        agent: bpb.CounterAgent | None = None,
    ) -> pb.CloseFinancialResponse:
        """Close at the counter with the holder's document (or as ``metadata`` with none)."""
        if document is None and metadata is None:
            document = self.holders[card_id]
        request = pb.CloseFinancialRequest(
            request_id=request_id or rid("close"),
            card_id=card_id,
            payout_destination="6222020000000000@BOC",
            reference="cancellation-1",
            document=document,
            agent=agent,
        )
        return self.ledger.CloseFinancial(request, metadata=metadata or self.counter)

    def alerts(self, **filters: Any) -> list[pb.Alert]:
        return list(
            self.ledger.ListAlerts(pb.ListAlertsRequest(**filters), metadata=self.ops).alerts
        )


def at_beijing_daytime(clock: SharedTestClock) -> None:
    """Move the suite's clock to 10:00 Beijing time of the next day (no night-time patterns)."""
    now = clock.now().astimezone(BEIJING)
    target = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(10), BEIJING)
    clock.advance(target - now)


def start_ledger(
    start_service: Callable[..., Any], token: Callable[..., Any], test_clock: SharedTestClock
) -> Ledger:
    at_beijing_daytime(test_clock)
    running = start_service("bank", build)
    wait_serving(running.channel)
    client = Ledger(running, token, test_clock)
    client.branch("icbc-plain")
    return client


@pytest.fixture
def ledger(
    start_service: Callable[..., Any], token: Callable[..., Any], test_clock: SharedTestClock
) -> Ledger:
    return start_ledger(start_service, token, test_clock)


def rejected(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as excinfo:
        call()
    code, error = refusal(excinfo)
    return code, error.reason, error.rule, dict(error.metadata)


PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
INVALID = grpc.StatusCode.INVALID_ARGUMENT


class TestLedger:
    def test_balance_is_the_sum_of_entries_never_negative_and_listed_newest_first(
        self, ledger: Ledger
    ) -> None:
        account_id = ledger.account("card-1")
        first = ledger.credit("card-1", 500 * YUAN)
        assert (first.account_id, first.card_id, first.amount_fen, first.balance_after_fen) == (
            account_id,
            "card-1",
            500 * YUAN,
            500 * YUAN,
        )
        assert first.source == pb.ENTRY_SOURCE_TRANSIT_REFUND and first.counterparty == "transit"
        paid = ledger.debit("card-1", 120 * YUAN, pb.PAYMENT_CHANNEL_ATM)
        assert (paid.amount_fen, paid.balance_after_fen, paid.source, paid.channel) == (
            -120 * YUAN,
            380 * YUAN,
            pb.ENTRY_SOURCE_NON_COUNTER,
            pb.PAYMENT_CHANNEL_ATM,
        )
        code, reason, _, meta = rejected(lambda: ledger.debit("card-1", 380 * YUAN + 1))
        assert (code, reason, meta["balance_fen"]) == (PRECONDITION, "INSUFFICIENT_FUNDS", "38000")
        for n in range(5):
            ledger.credit("card-1", n + 1, pb.ENTRY_SOURCE_COUNTER, metadata=ledger.counter)
        entries = ledger.entries("card-1", page_size=2)
        assert len(entries) == 7 and entries[-1] == first and entries[-2] == paid
        assert [e.amount_fen for e in entries[:5]] == [5, 4, 3, 2, 1]
        assert ledger.consistent("card-1") == 380 * YUAN + 15

    def test_every_movement_is_idempotent_by_request_id(self, ledger: Ledger) -> None:
        ledger.account("card-1")
        once = ledger.credit("card-1", 100 * YUAN, request_id="refund-7")
        assert ledger.credit("card-1", 100 * YUAN, request_id="refund-7") == once
        paid = ledger.debit("card-1", 30 * YUAN, request_id="pay-1")
        assert ledger.debit("card-1", 30 * YUAN, request_id="pay-1") == paid
        code, reason, _, _ = rejected(lambda: ledger.credit("card-1", 999, request_id="refund-7"))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
        assert len(ledger.entries("card-1")) == 2 and ledger.consistent("card-1") == 70 * YUAN

    def test_a_transit_refund_is_booked_once_however_late_its_retry(self, ledger: Ledger) -> None:
        """A refund's relay retries until it has an answer; when the first Credit committed but
        its answer was lost, the retry may come after the request id's key has expired (here: a
        new request id). The refund id, the entry's reference, books it once."""
        card = "card-refund-once"
        ledger.account(card)

        def refund(request_id: str) -> pb.LedgerEntry:
            return ledger.ledger.Credit(
                pb.CreditRequest(
                    request_id=request_id,
                    card_id=card,
                    amount_fen=30 * YUAN,
                    source=pb.ENTRY_SOURCE_TRANSIT_REFUND,
                    reference="refund-0001",
                    counterparty="transit",
                ),
                metadata=ledger.service,
            )

        first = refund("refund-0001")
        again = refund("refund-0001-after-its-key-expired")
        assert again.entry_id == first.entry_id
        assert ledger.balance(card).balance_fen == 30 * YUAN

    def test_bad_requests_name_their_fields(self, ledger: Ledger) -> None:
        ledger.account("card-1")
        with pytest.raises(grpc.RpcError) as excinfo:
            ledger.ledger.Debit(
                pb.DebitRequest(request_id="x", card_id="card-1", amount_fen=-5),
                metadata=ledger.online,
            )
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert {v.field for v in error.violations} == {"amount_fen", "channel"}
        code, reason, _, _ = rejected(
            lambda: ledger.credit("card-1", 1, pb.ENTRY_SOURCE_CLOSING_PAYOUT)
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
        with pytest.raises(grpc.RpcError) as excinfo:
            ledger.ledger.ListEntries(
                pb.ListEntriesRequest(card_id="card-1", page_token="abc"), metadata=ledger.ops
            )
        assert [v.field for v in refusal(excinfo)[1].violations] == ["page_token"]
        code, reason, _, _ = rejected(lambda: ledger.credit("no-such-card", 1))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")

    def test_transfers_book_both_entries_together_or_nothing(self, ledger: Ledger) -> None:
        ledger.account("card-1")
        ledger.account("card-2", activated=False)  # receiving needs no activation
        ledger.credit("card-1", 1_000 * YUAN)
        moved = ledger.transfer("card-1", 400 * YUAN, to_card="card-2")
        assert (moved.debit.amount_fen, moved.credit.amount_fen) == (-400 * YUAN, 400 * YUAN)
        assert moved.debit.transfer_id == moved.credit.transfer_id == moved.transfer_id
        out = ledger.transfer("card-1", 100 * YUAN, channel=pb.PAYMENT_CHANNEL_PAYMENT_COUNTER)
        assert not out.HasField("credit") and out.debit.counterparty == "6222020000000000@BOC"
        code, reason, _, _ = rejected(lambda: ledger.transfer("card-1", 501 * YUAN, "card-2"))
        assert (code, reason) == (PRECONDITION, "INSUFFICIENT_FUNDS")
        assert ledger.consistent("card-1") == 500 * YUAN
        assert ledger.consistent("card-2") == 400 * YUAN

    def test_A3_1_counter_payments_only_at_the_issuing_banks_counter(
        self, ledger: Ledger, token: Callable[..., Any]
    ) -> None:
        """A3.1: counter business at the account's own bank; non-counter from its systems."""
        ledger.account("card-1")
        ledger.credit("card-1", 100 * YUAN)
        for channel, metadata in (
            (
                pb.PAYMENT_CHANNEL_PAYMENT_COUNTER,
                ledger.service,
            ),  # a service cannot book a counter payment
            (
                pb.PAYMENT_CHANNEL_ONLINE_BANKING,
                ledger.counter,
            ),  # a counter does not book online payments
            (pb.PAYMENT_CHANNEL_PAYMENT_COUNTER, ledger.other_bank),  # another bank's counter
        ):
            code, reason, rule, _ = rejected(
                lambda c=channel, m=metadata: ledger.debit("card-1", 1, c, metadata=m)
            )
            assert (code, reason, rule) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "CHANNEL_NOT_ALLOWED",
                "A3.1",
            )
        with pytest.raises(grpc.RpcError) as excinfo:
            ledger.ledger.GetBalance(
                pb.GetBalanceRequest(card_id="card-1"), metadata=ledger.other_bank
            )
        assert refusal(excinfo)[1].reason == "CHANNEL_NOT_ALLOWED"
        assert ledger.ledger.GetBalance(
            pb.GetBalanceRequest(card_id="card-1"), metadata=ledger.counter
        ).balance_fen == (100 * YUAN)
        app = token(Channel.ONLINE, (Role.PERSON,), caller="someone")
        code, reason, _, _ = rejected(lambda: ledger.debit("card-1", 1, metadata=app))
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
        # Another bank's core system does not see this bank's accounts at all.
        other_core = token(Channel.INTERNAL, (Role.BANK,), caller="boc-core", bank_code="BOC")
        for call in (
            lambda: ledger.debit("card-1", 1, metadata=other_core),
            lambda: ledger.credit("card-1", 1, pb.ENTRY_SOURCE_NON_COUNTER, metadata=other_core),
        ):
            code, reason, _, _ = rejected(call)
            assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
        assert ledger.consistent("card-1") == 100 * YUAN


class TestRefusals:
    def test_A9_2_no_debit_before_the_financial_function_is_activated(self, ledger: Ledger) -> None:
        """A9.2: a transit refund is credited; nothing leaves until activation."""
        ledger.account("card-1", activated=False)
        ledger.credit("card-1", 100 * YUAN)
        for channel in (pb.PAYMENT_CHANNEL_PAYMENT_COUNTER, pb.PAYMENT_CHANNEL_ONLINE_BANKING):
            code, reason, rule, _ = rejected(lambda c=channel: ledger.debit("card-1", 1 * YUAN, c))
            assert (code, reason, rule) == (PRECONDITION, "FINANCIAL_NOT_ACTIVE", "A9.2")
        activate_financial_in_store_for_test(ledger.db, "card-1", ledger.clock.now())
        assert ledger.debit("card-1", 1 * YUAN).balance_after_fen == 99 * YUAN

    @pytest.mark.parametrize(
        ("kind", "rule"),
        [(bpb.LOSS_KIND_TEMPORARY_LOSS, "A13.2"), (bpb.LOSS_KIND_FORMAL_LOSS, "A13.4")],
    )
    def test_A13_2_A13_4_no_debit_while_the_card_is_reported_lost(
        self, ledger: Ledger, kind: int, rule: str
    ) -> None:
        ledger.account("card-1")
        ledger.credit("card-1", 100 * YUAN)
        ledger.stub.SuspendForLoss(
            bpb.SuspendForLossRequest(request_id=rid("loss"), card_id="card-1", kind=kind),  # type: ignore[arg-type]
            metadata=ledger.service,
        )
        for call in (
            lambda: ledger.debit("card-1", 1 * YUAN, pb.PAYMENT_CHANNEL_PAYMENT_COUNTER),
            lambda: ledger.debit("card-1", 1 * YUAN, pb.PAYMENT_CHANNEL_THIRD_PARTY),
            lambda: ledger.transfer("card-1", 1 * YUAN),
        ):
            code, reason, got_rule, _ = rejected(call)
            assert (code, reason, got_rule) == (PRECONDITION, "ACCOUNT_SUSPENDED", rule)
        assert ledger.credit("card-1", 5 * YUAN).balance_after_fen == 105 * YUAN
        ledger.stub.LiftLossSuspension(
            bpb.LiftLossSuspensionRequest(request_id=rid("lift"), card_id="card-1"),
            metadata=ledger.service,
        )
        assert ledger.debit("card-1", 5 * YUAN).balance_after_fen == 100 * YUAN

    def test_A16_6_a_destroyed_card_can_do_nothing(self, ledger: Ledger) -> None:
        ledger.order("card-1", account_id=ledger.account("card-1"))
        ledger.credit("card-1", 100 * YUAN)
        ledger.stub.RecallCard(
            bpb.RecallCardRequest(
                request_id=rid("recall"), card_id="card-1", reason=bpb.RECALL_REASON_REPLACED
            ),
            metadata=ledger.service,
        )
        ledger.stub.DestroyCard(
            bpb.DestroyCardRequest(request_id=rid("destroy"), card_id="card-1"),
            metadata=ledger.ops,
        )
        for call in (
            lambda: ledger.credit("card-1", 1),
            lambda: ledger.debit("card-1", 1, pb.PAYMENT_CHANNEL_PAYMENT_COUNTER),
            lambda: ledger.debit("card-1", 1, pb.PAYMENT_CHANNEL_ATM),
            lambda: ledger.close("card-1"),
        ):
            code, reason, rule, _ = rejected(call)
            assert (code, reason, rule) == (PRECONDITION, "CARD_DESTROYED", "A16.6")
        assert ledger.consistent("card-1") == 100 * YUAN

    def test_A16_6_a_successor_card_works_the_account_the_destroyed_old_card_cannot(
        self, ledger: Ledger
    ) -> None:
        """A16.6: after a replacement the new card carries the old card's account."""
        account_id = ledger.account("card-1")
        ledger.order("card-1", account_id=account_id)
        ledger.credit("card-1", 100 * YUAN)
        ledger.order("card-2", kind=bpb.PRODUCTION_KIND_REPLACEMENT, account_id=account_id)
        ledger.stub.RecallCard(
            bpb.RecallCardRequest(
                request_id=rid("recall"), card_id="card-1", reason=bpb.RECALL_REASON_REPLACED
            ),
            metadata=ledger.service,
        )
        ledger.stub.DestroyCard(
            bpb.DestroyCardRequest(request_id=rid("destroy"), card_id="card-1"),
            metadata=ledger.ops,
        )
        entry = ledger.credit("card-2", 5 * YUAN)
        assert (entry.account_id, entry.card_id, entry.balance_after_fen) == (
            account_id,
            "card-2",
            105 * YUAN,
        )
        assert (
            ledger.debit("card-2", 5 * YUAN, pb.PAYMENT_CHANNEL_ATM).balance_after_fen == 100 * YUAN
        )
        code, reason, rule, _ = rejected(lambda: ledger.debit("card-1", 1, pb.PAYMENT_CHANNEL_ATM))
        assert (code, reason, rule) == (PRECONDITION, "CARD_DESTROYED", "A16.6")
        assert ledger.balance("card-2").account_id == account_id
        assert ledger.consistent("card-2") == 100 * YUAN


class TestNonCounterSuspension:
    def test_A19_2_non_counter_business_is_suspended_while_the_counter_still_works(
        self, ledger: Ledger, test_clock: SharedTestClock
    ) -> None:
        ledger.account("card-1")
        ledger.credit("card-1", 1_000 * YUAN)
        state = ledger.suspend("card-1", pb.NON_COUNTER_REASON_SS_CANCELLED)
        assert list(state.non_counter_suspensions) == [pb.NON_COUNTER_REASON_SS_CANCELLED]
        assert abs(state.non_counter_suspended_at.ToDatetime(dt.UTC) - test_clock.now()) < (
            dt.timedelta(seconds=5)
        )
        assert (
            ledger.suspend("card-1", pb.NON_COUNTER_REASON_SS_CANCELLED) == state
        )  # again: unchanged
        for call in (
            lambda: ledger.debit("card-1", 1 * YUAN, pb.PAYMENT_CHANNEL_ONLINE_BANKING),
            lambda: ledger.debit("card-1", 1 * YUAN, pb.PAYMENT_CHANNEL_ATM),
            lambda: ledger.debit("card-1", 1 * YUAN, pb.PAYMENT_CHANNEL_THIRD_PARTY),
            lambda: ledger.transfer("card-1", 1 * YUAN),
        ):
            code, reason, rule, _meta = rejected(call)
            assert (code, reason, rule) == (PRECONDITION, "NON_COUNTER_SUSPENDED", "A19.2")
        assert ledger.debit(
            "card-1", 10 * YUAN, pb.PAYMENT_CHANNEL_PAYMENT_COUNTER
        ).balance_after_fen == (990 * YUAN)
        assert ledger.transfer(
            "card-1", 10 * YUAN, channel=pb.PAYMENT_CHANNEL_PAYMENT_COUNTER
        ).debit
        assert ledger.credit("card-1", 1 * YUAN).amount_fen == 1 * YUAN
        resumed = ledger.resume("card-1", pb.NON_COUNTER_REASON_SS_CANCELLED)
        assert not resumed.non_counter_suspensions
        assert not resumed.HasField("non_counter_suspended_at")
        assert ledger.debit("card-1", 1 * YUAN, pb.PAYMENT_CHANNEL_ATM).amount_fen == -1 * YUAN

    def test_A19_2_only_services_and_operations_suspend(self, ledger: Ledger) -> None:
        ledger.account("card-1")
        request = pb.SuspendNonCounterRequest(
            request_id="s", card_id="card-1", reason=pb.NON_COUNTER_REASON_OPERATIONS
        )
        with pytest.raises(grpc.RpcError) as excinfo:
            ledger.ledger.SuspendNonCounter(request, metadata=ledger.counter)
        assert refusal(excinfo)[0] == grpc.StatusCode.PERMISSION_DENIED


class TestTiers:
    def test_A4_5_a_social_security_card_account_is_class_I_by_default(
        self, ledger: Ledger
    ) -> None:
        ledger.account("card-1")
        ledger.credit("card-1", 30_000 * YUAN)
        balance = ledger.balance("card-1")
        assert balance.tier == pb.ACCOUNT_TIER_TIER_I and balance.limits == pb.TierLimits()
        ledger.debit(
            "card-1", 20_000 * YUAN, pb.PAYMENT_CHANNEL_ONLINE_BANKING
        )  # class I: no class limit
        assert ledger.balance("card-1").non_counter_today_fen == 20_000 * YUAN

    def test_A4_5_class_II_limits_non_counter_payments_per_day_but_not_the_counter(
        self, ledger: Ledger, test_clock: SharedTestClock
    ) -> None:
        ledger.account("card-1")
        ledger.credit("card-1", 40_000 * YUAN)
        state = ledger.set_tier("card-1", pb.ACCOUNT_TIER_TIER_II)
        assert state.tier == pb.ACCOUNT_TIER_TIER_II
        assert state.limits.daily_non_counter_fen == 10_000 * YUAN
        code, reason, rule, meta = rejected(
            lambda: ledger.debit("card-1", 10_000 * YUAN + 1, pb.PAYMENT_CHANNEL_THIRD_PARTY)
        )
        assert (code, reason, rule) == (PRECONDITION, "TIER_LIMIT_EXCEEDED", "A4.5")
        assert meta["limit_fen"] == str(10_000 * YUAN) and meta["tier"] == "II"
        ledger.debit("card-1", 6_000 * YUAN, pb.PAYMENT_CHANNEL_ONLINE_BANKING)
        code, reason, rule, meta = rejected(
            lambda: ledger.transfer(
                "card-1", 4_000 * YUAN + 1, channel=pb.PAYMENT_CHANNEL_ONLINE_BANKING
            )
        )
        assert (reason, rule, meta["limit"]) == (
            "TIER_LIMIT_EXCEEDED",
            "A4.5",
            "the daily non-counter payment limit",
        )
        ledger.debit("card-1", 4_000 * YUAN, pb.PAYMENT_CHANNEL_ATM)  # exactly up to the limit
        ledger.debit(
            "card-1", 15_000 * YUAN, pb.PAYMENT_CHANNEL_PAYMENT_COUNTER
        )  # the counter: no class limit
        test_clock.advance(dt.timedelta(days=1))  # the next Beijing calendar day
        ledger.debit("card-1", 5_000 * YUAN, pb.PAYMENT_CHANNEL_ONLINE_BANKING)
        assert ledger.balance("card-1").non_counter_today_fen == 5_000 * YUAN
        assert ledger.consistent("card-1") == 10_000 * YUAN

    def test_A4_5_class_III_caps_the_balance(self, ledger: Ledger) -> None:
        ledger.account("card-1")
        ledger.set_tier("card-1", pb.ACCOUNT_TIER_TIER_III)
        ledger.credit("card-1", 2_000 * YUAN)
        code, reason, rule, meta = rejected(lambda: ledger.credit("card-1", 1))
        assert (code, reason, rule, meta["limit_fen"]) == (
            PRECONDITION,
            "TIER_LIMIT_EXCEEDED",
            "A4.5",
            str(2_000 * YUAN),
        )
        assert ledger.consistent("card-1") == 2_000 * YUAN

    def test_A4_5_only_operations_set_the_class(self, ledger: Ledger) -> None:
        ledger.account("card-1")
        request = pb.SetAccountTierRequest(
            request_id="t", card_id="card-1", tier=pb.ACCOUNT_TIER_TIER_III
        )
        with pytest.raises(grpc.RpcError) as excinfo:
            ledger.ledger.SetAccountTier(request, metadata=ledger.service)
        assert refusal(excinfo)[0] == grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture
def configured_ledger(
    service_env: dict[str, str],
    start_service: Callable[..., Any],
    token: Callable[..., Any],
    test_clock: SharedTestClock,
) -> Ledger:
    service_env["SSCARD_BANK_TIER_LIMITS"] = '{"II": {"single_fen": 50000}}'
    service_env["SSCARD_BANK_DEFAULT_TIER"] = "II"
    return start_ledger(start_service, token, test_clock)


def test_A4_5_limits_and_the_default_class_are_configuration(configured_ledger: Ledger) -> None:
    configured_ledger.account("card-1")
    configured_ledger.credit("card-1", 1_000 * YUAN)
    balance = configured_ledger.balance("card-1")
    assert (
        balance.tier == pb.ACCOUNT_TIER_TIER_II and balance.limits.single_non_counter_fen == 50_000
    )
    _code, reason, _, meta = rejected(lambda: configured_ledger.debit("card-1", 50_001))
    assert (reason, meta["limit_fen"]) == ("TIER_LIMIT_EXCEEDED", "50000")


class TestMonitoring:
    def test_A4_5_a_freezing_pattern_raises_one_alert_and_freezes_non_counter_until_resolved(
        self, ledger: Ledger
    ) -> None:
        account_id = ledger.account("card-1")
        for n in range(12):  # 10+ counterparties within a day: MANY_COUNTERPARTIES freezes
            ledger.credit(
                "card-1", 600 * YUAN, pb.ENTRY_SOURCE_NON_COUNTER, counterparty=f"payer-{n}"
            )
        alerts = ledger.alerts(account_id=account_id)
        assert [a.rule for a in alerts] == ["MANY_COUNTERPARTIES"]  # raised once
        alert = alerts[0]
        assert (alert.card_id, alert.freeze, alert.status) == (
            "card-1",
            True,
            pb.ALERT_STATUS_ALERT_OPEN,
        )
        assert len(alert.entry_ids) == 10 and "payer" not in alert.summary
        state = ledger.balance("card-1")
        assert list(state.non_counter_suspensions) == [pb.NON_COUNTER_REASON_MONITORING_REVIEW]
        code, reason, rule, _ = rejected(
            lambda: ledger.debit("card-1", 1 * YUAN, pb.PAYMENT_CHANNEL_ATM)
        )
        assert (code, reason, rule) == (PRECONDITION, "NON_COUNTER_SUSPENDED", "A4.5")
        ledger.debit(
            "card-1", 1 * YUAN, pb.PAYMENT_CHANNEL_PAYMENT_COUNTER
        )  # the counter stays open

        assert ledger.alerts(status=pb.ALERT_STATUS_ALERT_RESOLVED) == []
        assert [a.alert_id for a in ledger.alerts(rule="MANY_COUNTERPARTIES")] == [alert.alert_id]
        assigned = ledger.ledger.AssignAlert(
            pb.AssignAlertRequest(request_id=rid("a"), alert_id=alert.alert_id, assignee="wang"),
            metadata=ledger.ops,
        )
        assert (assigned.status, assigned.assignee) == (pb.ALERT_STATUS_ALERT_ASSIGNED, "wang")
        resolved = ledger.ledger.ResolveAlert(
            pb.ResolveAlertRequest(
                request_id=rid("r"), alert_id=alert.alert_id, resolution="a club's dues"
            ),
            metadata=ledger.ops,
        )
        assert (resolved.status, resolved.resolution) == (
            pb.ALERT_STATUS_ALERT_RESOLVED,
            "a club's dues",
        )
        assert resolved.HasField("resolved_at") and resolved.resolved_by
        assert not ledger.balance("card-1").non_counter_suspensions
        assert ledger.debit("card-1", 1 * YUAN, pb.PAYMENT_CHANNEL_ATM).amount_fen == -1 * YUAN
        assert [a.status for a in ledger.alerts(account_id=account_id)] == [
            pb.ALERT_STATUS_ALERT_RESOLVED
        ]

    def test_A4_5_resolving_keeps_a_suspension_for_another_reason(self, ledger: Ledger) -> None:
        ledger.account("card-1")
        ledger.suspend("card-1", pb.NON_COUNTER_REASON_SS_CANCELLED)
        for n in range(10):
            ledger.credit(
                "card-1", 600 * YUAN, pb.ENTRY_SOURCE_NON_COUNTER, counterparty=f"payer-{n}"
            )
        (alert,) = ledger.alerts()
        ledger.ledger.ResolveAlert(
            pb.ResolveAlertRequest(request_id=rid("r"), alert_id=alert.alert_id, resolution="ok"),
            metadata=ledger.ops,
        )
        assert list(ledger.balance("card-1").non_counter_suspensions) == [
            pb.NON_COUNTER_REASON_SS_CANCELLED
        ]

    def test_A4_5_alerts_are_for_operations_only(self, ledger: Ledger) -> None:
        with pytest.raises(grpc.RpcError) as excinfo:
            ledger.ledger.ListAlerts(pb.ListAlertsRequest(), metadata=ledger.service)
        assert refusal(excinfo)[0] == grpc.StatusCode.PERMISSION_DENIED


class TestClose:
    def test_A19_1_closing_pays_the_whole_balance_out_and_closes_the_account(
        self, ledger: Ledger
    ) -> None:
        ledger.account("card-1")
        ledger.credit("card-1", 123_45)
        ledger.debit("card-1", 23_00, pb.PAYMENT_CHANNEL_ATM)
        closed = ledger.close("card-1", request_id="close-1")
        assert closed.payout.source == pb.ENTRY_SOURCE_CLOSING_PAYOUT
        assert (closed.payout.amount_fen, closed.payout.balance_after_fen) == (-100_45, 0)
        assert closed.payout.counterparty == "6222020000000000@BOC"
        assert closed.account.balance_fen == 0 and closed.account.closed
        assert ledger.close("card-1", request_id="close-1") == closed  # the same answer
        again = ledger.close("card-1", metadata=ledger.service)  # the cancellation saga
        assert not again.HasField("payout") and again.closed_at == closed.closed_at
        account = ledger.stub.GetAccount(
            bpb.GetAccountRequest(card_id="card-1"), metadata=ledger.ops
        )
        assert account.status == bpb.ACCOUNT_STATUS_CLOSED
        assert ledger.consistent("card-1") == 0
        code, reason, _, _ = rejected(lambda: ledger.credit("card-1", 1))
        assert (code, reason) == (PRECONDITION, "ACCOUNT_CLOSED")

    def test_A20_1_closing_at_the_counter_needs_the_account_holders_document(
        self, ledger: Ledger
    ) -> None:
        """持卡人办理社会保障卡金融功能挂失、解挂、注销、代办以及预留手机号码修改的程序和时限等规则,按照
        发卡合作银行的规定执行。"""
        ledger.account("card-1")
        ledger.credit("card-1", 50_00)
        stranger = common_pb2.IdentityDocument(
            type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=resident_id()
        )
        for document, refused_with in (
            (stranger, (PRECONDITION, "IDENTITY_MISMATCH", "A20.1")),
            (
                common_pb2.IdentityDocument(),
                (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", "A19.1"),
            ),
        ):
            code, reason, rule, _ = rejected(
                lambda document=document: ledger.close(
                    "card-1", metadata=ledger.counter, document=document
                )
            )
            assert (code, reason, rule) == refused_with
        assert ledger.balance("card-1").balance_fen == 50_00  # nothing paid out, still open
        closed = ledger.close("card-1")
        assert closed.account.closed and closed.payout.amount_fen == -50_00

    def test_A20_1_an_agent_closes_at_the_counter_with_the_holders_document_and_authorisation(
        self, ledger: Ledger
    ) -> None:
        """持卡人办理社会保障卡金融功能……注销、代办……的程序和时限等规则,按照发卡合作银行的规定执行;
        代理人代为办理时,应当提交代理人和被代理人的有效身份证件原件,以及被代理人书面授权委托书
        (A24.2).

        The bank's rules let an agent close the financial function: with the holder's document
        (the account holder's), the agent's own, and the holder's written authorisation; the
        balance is paid out as for the holder. Anything missing, nothing moves."""
        ledger.account("card-1")
        ledger.credit("card-1", 80_00)
        holder = ledger.holders["card-1"]
        stranger = common_pb2.IdentityDocument(
            type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=resident_id()
        )
        agent = bpb.CounterAgent(
            agent_document=stranger, agent_name="李四", authorisation_ref="AUTH-7"
        )
        unauthorised = bpb.CounterAgent(agent_document=stranger, agent_name="李四")
        as_holder = bpb.CounterAgent(
            agent_document=holder, agent_name="李四", authorisation_ref="AUTH-7"
        )
        other = common_pb2.IdentityDocument(
            type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=resident_id()
        )
        for document, presented, refused_with in (
            (holder, unauthorised, (INVALID, "AGENT_DOCUMENTS_MISSING", "A24.2")),
            (holder, as_holder, (INVALID, "AGENT_DOCUMENTS_MISSING", "A24.2")),
            (other, agent, (PRECONDITION, "IDENTITY_MISMATCH", "A20.1")),
        ):
            code, reason, rule, _ = rejected(
                lambda d=document, a=presented: ledger.close(
                    "card-1", metadata=ledger.counter, document=d, agent=a
                )
            )
            assert (code, reason, rule) == refused_with
        code, reason, _, _ = rejected(
            lambda: ledger.close("card-1", metadata=ledger.service, agent=agent)
        )
        assert (code, reason) == (INVALID, "INVALID_REQUEST")  # an agent acts at a counter
        assert ledger.balance("card-1").balance_fen == 80_00  # nothing paid out, still open

        closed = ledger.close("card-1", metadata=ledger.counter, document=holder, agent=agent)
        assert closed.account.closed and closed.payout.amount_fen == -80_00
        assert closed.account.balance_fen == 0
        assert ledger.consistent("card-1") == 0

    def test_A20_1_only_the_issuing_banks_counter_or_the_suite_closes(self, ledger: Ledger) -> None:
        """A20.1: financial cancellation follows the issuing bank, at its counter."""
        ledger.account("card-1")
        holder = ledger.holders["card-1"]
        code, reason, rule, _ = rejected(
            lambda: ledger.close("card-1", metadata=ledger.other_bank, document=holder)
        )
        assert (code, reason, rule) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CHANNEL_NOT_ALLOWED",
            "A3.1",
        )
        closed = ledger.close("card-1", metadata=ledger.service)
        assert closed.account.closed and not closed.HasField("payout")
