"""The card in use, over real gRPC against real identity, bank and card services, on SQLite and
PostgreSQL, with the shared test clock where time matters: service passwords (A12.1, A12.2),
loss (A13.1–A13.4), unlock (A14.1, A14.3), the financial function left to the bank (A20.1),
information changes (A17.1, A17.2), agents (A24.1, A24.2)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.bank.main import build as build_bank
from services.card.main import build as build_card
from services.platform.auth import Channel, Role
from services.platform.clock import BEIJING, SharedTestClock
from services.platform.grpc_errors import from_rpc_error
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc, ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from sscard.common.v1 import common_pb2
from tests.cardsuite import (
    BANK,
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
from tests.scenarios.test_bank_ledger import activate_financial_in_store_for_test
from tests.support import PersonSpec, wait_serving


def loss(
    suite: Suite, method: str, card_id: str, person: PersonSpec, metadata: Any, **extra: Any
) -> pb.Card:
    request = pb.ReportLossRequest(
        request_id=suite.rid(method), card_id=card_id, document=person.document(), **extra
    )
    return getattr(suite.card, method)(request, metadata=metadata)  # type: ignore[no-any-return]


def unlock(suite: Suite, card_id: str, person: PersonSpec, metadata: Any) -> pb.Card:
    return suite.card.UnlockCard(
        pb.UnlockCardRequest(
            request_id=suite.rid("unlock"), card_id=card_id, document=person.document()
        ),
        metadata=metadata,
    )


def bank_loss(suite: Suite, card_id: str) -> int:
    account = suite.bank.GetAccount(
        bank_pb2.GetAccountRequest(card_id=card_id), metadata=suite.service
    )
    return int(account.loss)


def agent_for(person: PersonSpec, authorisation: str = "AUTH-0042") -> pb.Agent:
    helper = PersonSpec()
    return pb.Agent(
        agent_document=helper.document(),
        agent_name="王芳",
        principal_document=person.document(),
        authorisation_ref=authorisation,
    )


class TestLoss:
    def test_A13_1_A13_2_a_temporary_loss_by_the_hotline_suspends_both_functions_at_once(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        card = hotline_loss(suite, card_id, person)
        assert card.status == pb.CARD_STATUS_TEMPORARILY_LOST
        assert "suspended" in card.status_text
        wait_until(lambda: bank_loss(suite, card_id) == bank_pb2.LOSS_KIND_TEMPORARY_LOSS)

    def test_A12_the_hotline_acts_only_for_a_caller_who_gives_the_service_password(
        self, suite: Suite
    ) -> None:
        """服务密码为持卡人使用社会保障卡相关服务的验证密码。

        Knowing a holder's ID number is not enough to stop their card by telephone."""
        card_id, person = active_card(suite)
        hotline = suite.at(Channel.HOTLINE)
        for password in ("", "000000"):
            refused = rpc_error(
                lambda password=password: loss(
                    suite,
                    "ReportTemporaryLoss",
                    card_id,
                    person,
                    hotline,
                    service_password=password,
                )
            )
            assert reason_rule(refused) == ("SERVICE_PASSWORD_REJECTED", "A12.2")
        assert suite.get(card_id).status == pb.CARD_STATUS_ACTIVE
        assert hotline_loss(suite, card_id, person).status == pb.CARD_STATUS_TEMPORARILY_LOST

    @pytest.mark.parametrize("method", ["ReportTemporaryLoss", "ReportFormalLoss"])
    def test_A13_2_a_loss_stops_payments_before_it_is_acknowledged(
        self, suite: Suite, test_clock: SharedTestClock, method: str
    ) -> None:
        """临时挂失后,社会保障卡的社会保障功能和金融功能即时暂停。

        The first online payment after the loss report's answer is refused."""
        card_id, person = active_card(suite)
        ledger = ledger_pb2_grpc.LedgerServiceStub(suite.bank_server.channel)
        activate_financial_in_store_for_test(suite.bank_server.deps.db, card_id, test_clock.now())
        ledger.Credit(
            ledger_pb2.CreditRequest(
                request_id=suite.rid("credit"),
                card_id=card_id,
                amount_fen=100_00,
                source=ledger_pb2.ENTRY_SOURCE_TRANSIT_REFUND,
                counterparty="transit",
            ),
            metadata=suite.service,
        )
        online = suite.token(Channel.INTERNAL, (Role.BANK,), caller="icbc-core", bank_code=BANK)

        def pay() -> ledger_pb2.LedgerEntry:
            return ledger.Debit(
                ledger_pb2.DebitRequest(
                    request_id=suite.rid("pay"),
                    card_id=card_id,
                    amount_fen=10_00,
                    channel=ledger_pb2.PAYMENT_CHANNEL_ONLINE_BANKING,
                    counterparty="shop",
                ),
                metadata=online,
            )

        assert pay().balance_after_fen == 90_00
        loss(suite, method, card_id, person, suite.branch(BANK, INSTANT))
        refused = rpc_error(pay)
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_rule(refused)[1] in {"A13.2", "A13.4"}

    def test_A13_2_with_the_bank_down_the_answer_says_the_suspension_is_pending(
        self, suite: Suite, start_service: Callable[..., Any]
    ) -> None:
        """临时挂失后,社会保障卡的社会保障功能和金融功能即时暂停。

        The bank does not answer: the SS function stops, the answer says the financial
        function is not yet suspended, and the suspension follows once the bank is back."""
        card_id, person = active_card(suite)
        suite.bank_server.server.stop(0)
        card = hotline_loss(suite, card_id, person)
        assert card.status == pb.CARD_STATUS_TEMPORARILY_LOST
        assert "not yet confirmed" in card.status_text
        assert [n.rule for n in card.notices] == ["A13.2"]
        history = suite.get(card_id, history=True)
        assert any("not yet confirmed" in n.text for n in history.notices)
        bank = start_service("bank", build_bank)
        wait_serving(bank.channel)
        stub = bank_pb2_grpc.BankServiceStub(bank.channel)
        wait_until(
            lambda: (
                stub.GetAccount(
                    bank_pb2.GetAccountRequest(card_id=card_id), metadata=suite.service
                ).loss
                == bank_pb2.LOSS_KIND_TEMPORARY_LOSS
            ),
            timeout=30,
        )

    def test_A13_1_a_formal_loss_needs_a_counter_and_the_id_document(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        hotline = rpc_error(
            lambda: loss(suite, "ReportFormalLoss", card_id, person, suite.at(Channel.HOTLINE))
        )
        assert reason_rule(hotline) == ("CHANNEL_NOT_ALLOWED", "A3.1")
        # Online the holder acts with their own credential, which no formal loss accepts.
        online = rpc_error(
            lambda: loss(
                suite, "ReportFormalLoss", card_id, person, suite.at(Channel.ONLINE, person)
            )
        )
        assert online.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        assert reason_rule(online) == ("ROLE_NOT_ALLOWED", "")
        stranger = PersonSpec()
        error = rpc_error(
            lambda: loss(
                suite, "ReportFormalLoss", card_id, stranger, suite.at(Channel.DISTRICT_OUTLET)
            )
        )
        assert reason_rule(error) == ("DOCUMENT_MISMATCH", "A13.1")

    def test_A13_3_the_ss_function_restores_itself_at_midnight_ending_the_fifteenth_day(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        """社会保障功能临时挂失的有效期为 15 个自然日。持卡人在临时挂失有效期内未办理正式挂失的,
        有效期届满后社会保障卡原有社会保障功能自动恢复。

        Reported at 23:50 on Monday 23 November 2026: that day does not count (Civil Code
        art. 201), the 15th day is Tuesday 8 December and the period ends at its 24:00
        (art. 203). The financial function is the issuing bank's to unlock."""
        card_id, person = active_card(suite)
        test_clock.set(dt.datetime(2026, 11, 23, 23, 50, tzinfo=BEIJING))
        loss(suite, "ReportTemporaryLoss", card_id, person, suite.at(Channel.ONLINE, person))
        answer = suite.card.QueryStatus(
            pb.QueryStatusRequest(card_id=card_id, document=person.document()),
            metadata=suite.at(Channel.HOTLINE),
        )
        assert "works again from 00:00 on 2026-12-09" in answer.progress
        assert (
            f"financial function stays suspended until you have it unlocked at a branch of {BANK}"
            in answer.progress
        )

        test_clock.set(dt.datetime(2026, 12, 8, 23, 59, tzinfo=BEIJING))
        with pytest.raises(TimeoutError):  # several scheduler polls: still lost
            wait_until(
                lambda: suite.get(card_id).status != pb.CARD_STATUS_TEMPORARILY_LOST, timeout=1.0
            )

        test_clock.set(dt.datetime(2026, 12, 9, 0, 0, tzinfo=BEIJING))
        wait_until(lambda: suite.get(card_id).status == pb.CARD_STATUS_ACTIVE)
        card = suite.get(card_id, history=True)
        last = card.transitions[-1]
        assert (last.rule, last.channel) == ("A13.3", common_pb2.CHANNEL_INTERNAL)
        [told] = [n.text for n in card.notices if (n.recipient, n.rule) == ("person", "A13.3")]
        assert "social security function of your card works again" in told
        assert "financial function stays suspended" in told
        assert bank_loss(suite, card_id) == bank_pb2.LOSS_KIND_TEMPORARY_LOSS

    def test_A13_3_the_expiry_survives_a_restart_of_the_card_service(
        self,
        suite: Suite,
        start_service: Callable[..., Any],
        test_clock: SharedTestClock,
        token: Callable[..., Any],
    ) -> None:
        card_id, person = active_card(suite)
        loss(suite, "ReportTemporaryLoss", card_id, person, suite.at(Channel.ONLINE, person))
        suite.card_server.server.stop(0)
        test_clock.advance(dt.timedelta(days=16))
        restarted = start_service("card", build_card)
        wait_serving(restarted.channel)
        card = card_pb2_grpc.CardServiceStub(restarted.channel)
        wait_until(
            lambda: (
                card.GetCard(pb.GetCardRequest(card_id=card_id), metadata=suite.ops).status
                == pb.CARD_STATUS_ACTIVE
            )
        )

    def test_A13_3_a_formal_loss_stops_the_fifteen_day_clock(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        card_id, person = active_card(suite)
        loss(suite, "ReportTemporaryLoss", card_id, person, suite.at(Channel.ONLINE, person))
        loss(suite, "ReportFormalLoss", card_id, person, suite.at(Channel.DISTRICT_OUTLET))
        test_clock.advance(dt.timedelta(days=20))
        with pytest.raises(TimeoutError):
            wait_until(
                lambda: suite.get(card_id).status != pb.CARD_STATUS_FORMALLY_LOST, timeout=1.0
            )

    def test_A13_4_a_district_outlet_reports_the_ss_function_only(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        loss(suite, "ReportTemporaryLoss", card_id, person, suite.at(Channel.ONLINE, person))
        wait_until(lambda: bank_loss(suite, card_id) == bank_pb2.LOSS_KIND_TEMPORARY_LOSS)
        card = loss(suite, "ReportFormalLoss", card_id, person, suite.at(Channel.DISTRICT_OUTLET))
        assert card.status == pb.CARD_STATUS_FORMALLY_LOST
        with pytest.raises(TimeoutError):
            wait_until(
                lambda: bank_loss(suite, card_id) == bank_pb2.LOSS_KIND_FORMAL_LOSS, timeout=1.0
            )

    def test_A13_4_the_issuing_bank_reports_the_financial_function_too(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        other = rpc_error(
            lambda: loss(
                suite, "ReportFormalLoss", card_id, person, suite.branch(OTHER_BANK, OTHER_INSTANT)
            )
        )
        assert reason_rule(other) == ("CHANNEL_NOT_ALLOWED", "A3.1")
        loss(suite, "ReportFormalLoss", card_id, person, suite.branch(BANK, INSTANT))
        wait_until(lambda: bank_loss(suite, card_id) == bank_pb2.LOSS_KIND_FORMAL_LOSS)


class TestUnlock:
    def test_A14_3_only_a_formally_lost_card_is_unlocked(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        outlet = suite.at(Channel.DISTRICT_OUTLET)
        assert reason_rule(rpc_error(lambda: unlock(suite, card_id, person, outlet))) == (
            "NOT_FORMALLY_LOST",
            "A14.3",
        )
        loss(suite, "ReportTemporaryLoss", card_id, person, suite.at(Channel.ONLINE, person))
        assert reason_rule(rpc_error(lambda: unlock(suite, card_id, person, outlet)))[0] == (
            "NOT_FORMALLY_LOST"
        )

    def test_A14_1_unlocking_at_the_issuing_bank_restores_both_functions_at_once(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        branch = suite.branch(BANK, INSTANT)
        loss(suite, "ReportFormalLoss", card_id, person, branch)
        wait_until(lambda: bank_loss(suite, card_id) == bank_pb2.LOSS_KIND_FORMAL_LOSS)
        card = unlock(suite, card_id, person, branch)
        assert card.status == pb.CARD_STATUS_ACTIVE
        assert card.card_id == card_id
        wait_until(lambda: bank_loss(suite, card_id) == bank_pb2.LOSS_KIND_UNSPECIFIED)
        assert suite.get(card_id, history=True).transitions[-1].rule == "A14.1"

    def test_A20_1_a_district_outlet_unlock_leaves_the_financial_function_to_the_bank(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        loss(suite, "ReportTemporaryLoss", card_id, person, suite.at(Channel.ONLINE, person))
        wait_until(lambda: bank_loss(suite, card_id) == bank_pb2.LOSS_KIND_TEMPORARY_LOSS)
        outlet = suite.at(Channel.DISTRICT_OUTLET)
        loss(suite, "ReportFormalLoss", card_id, person, outlet)
        assert unlock(suite, card_id, person, outlet).status == pb.CARD_STATUS_ACTIVE
        with pytest.raises(TimeoutError):
            wait_until(lambda: bank_loss(suite, card_id) == bank_pb2.LOSS_KIND_UNSPECIFIED, 1.0)
        unlock_at_bank = rpc_error(
            lambda: unlock(suite, card_id, person, suite.branch(BANK, INSTANT))
        )
        assert reason_rule(unlock_at_bank) == ("NOT_FORMALLY_LOST", "A14.3")


class TestInformation:
    def _update(
        self, suite: Suite, card_id: str, person: PersonSpec, metadata: Any, **fields: Any
    ) -> Any:
        return suite.card.UpdateContactInfo(
            pb.UpdateContactInfoRequest(
                request_id=suite.rid("info"), card_id=card_id, document=person.document(), **fields
            ),
            metadata=metadata,
        )

    def test_A17_1_mobile_occupation_and_address_change_online_or_at_a_counter(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        card = self._update(
            suite,
            card_id,
            person,
            suite.at(Channel.ONLINE, person),
            mobile="13987654321",
            occupation="doctor",
        )
        assert card.mobile_masked == "139****4321"
        error = rpc_error(
            lambda: self._update(
                suite, card_id, person, suite.at(Channel.DISTRICT_OUTLET), mobile="123"
            )
        )
        assert reason_rule(error) == ("INVALID_CONTACT_INFO", "A17.1")
        assert [v.field for v in from_rpc_error(error).violations] == ["mobile"]
        hotline = rpc_error(
            lambda: self._update(suite, card_id, person, suite.at(Channel.HOTLINE), address="x")
        )
        assert reason_rule(hotline) == ("CHANNEL_NOT_ALLOWED", "A3.1")

    def test_A17_2_the_card_service_refuses_to_change_basic_information(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        error = rpc_error(
            lambda: self._update(
                suite, card_id, person, suite.at(Channel.ONLINE, person), name="张四"
            )
        )
        assert reason_rule(error) == ("BASIC_INFO_CHANGE_VIA_IDENTITY", "A17.2")


class TestAgents:
    def test_A24_1_an_agent_may_report_a_temporary_loss_but_not_a_formal_one(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        outlet = suite.at(Channel.DISTRICT_OUTLET)
        agent = agent_for(person)
        card = loss(suite, "ReportTemporaryLoss", card_id, person, outlet, agent=agent)
        assert card.status == pb.CARD_STATUS_TEMPORARILY_LOST
        error = rpc_error(
            lambda: loss(suite, "ReportFormalLoss", card_id, person, outlet, agent=agent)
        )
        assert reason_rule(error) == ("AGENT_NOT_ALLOWED", "A24.1")

    def test_A24_1_an_agent_may_not_reset_the_service_password(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        error = rpc_error(
            lambda: suite.card.ResetServicePassword(
                pb.ResetServicePasswordRequest(
                    request_id=suite.rid("reset"),
                    card_id=card_id,
                    document=person.document(),
                    new_password="135790",
                    agent=agent_for(person),
                ),
                metadata=suite.at(Channel.ONLINE, person),
            )
        )
        assert reason_rule(error) == ("AGENT_NOT_ALLOWED", "A24.1")

    def test_A24_2_an_agent_without_the_written_authorisation_is_refused(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        error = rpc_error(
            lambda: loss(
                suite,
                "ReportTemporaryLoss",
                card_id,
                person,
                suite.at(Channel.ONLINE, person),
                agent=agent_for(person, authorisation=""),
            )
        )
        assert reason_rule(error) == ("AGENT_DOCUMENTS_MISSING", "A24.2")


class TestServicePassword:
    def _reset(self, suite: Suite, card_id: str, person: PersonSpec, password: str) -> Any:
        return suite.card.ResetServicePassword(
            pb.ResetServicePasswordRequest(
                request_id=suite.rid("reset"),
                card_id=card_id,
                document=person.document(),
                new_password=password,
                card_number=suite.card_number(card_id),
            ),
            metadata=suite.at(Channel.DISTRICT_OUTLET),
        )

    def _verify(self, suite: Suite, card_id: str, password: str) -> bool:
        answer = suite.card.VerifyServicePassword(
            pb.VerifyServicePasswordRequest(card_id=card_id, password=password),
            metadata=suite.service,
        )
        return bool(answer.valid)

    def _change(
        self,
        suite: Suite,
        person: PersonSpec,
        card_id: str,
        old: str,
        new: str,
        metadata: Any = None,
        **extra: Any,
    ) -> Any:
        return suite.card.ChangeServicePassword(
            pb.ChangeServicePasswordRequest(
                request_id=suite.rid("change"),
                card_id=card_id,
                old_password=old,
                new_password=new,
                **extra,
            ),
            metadata=metadata or suite.at(Channel.ONLINE, person),
        )

    def test_A12_2_a_change_at_a_counter_needs_the_holders_id_document_and_the_card(
        self, suite: Suite
    ) -> None:
        """持卡人可通过线上渠道,或持本人有效身份证件和社会保障卡原件到区、街两级社会保障卡服务网点或
        发卡合作银行服务网点办理服务密码修改或重置。"""
        card_id, person = active_card(suite)
        other_id, other = active_card(suite)
        self._reset(suite, card_id, person, "135790")
        outlet = suite.at(Channel.DISTRICT_OUTLET)
        number = suite.card_number(card_id)
        for extra, refused_for in (
            ({"card_number": number}, "DOCUMENT_MISMATCH"),  # no ID document
            ({"document": other.document(), "card_number": number}, "DOCUMENT_MISMATCH"),
            ({"document": person.document()}, "CARD_MISMATCH"),  # no card
            (
                {"document": person.document(), "card_number": suite.card_number(other_id)},
                "CARD_MISMATCH",
            ),
        ):
            error = rpc_error(
                lambda extra=extra: self._change(
                    suite, person, card_id, "135790", "246802", outlet, **extra
                )
            )
            assert reason_rule(error) == (refused_for, "A12.2")
        assert self._verify(suite, card_id, "135790")
        branch = suite.branch(BANK, INSTANT)
        self._change(
            suite,
            person,
            card_id,
            "135790",
            "246802",
            branch,
            document=person.document(),
            card_number=number,
        )
        assert self._verify(suite, card_id, "246802")

    def test_A12_2_a_reset_at_a_counter_needs_the_card(self, suite: Suite) -> None:
        """持卡人可通过线上渠道,或持本人有效身份证件和社会保障卡原件到区、街两级社会保障卡服务网点或
        发卡合作银行服务网点办理服务密码修改或重置。"""
        card_id, person = active_card(suite)
        other_id, _ = active_card(suite)
        for card_number in ("", suite.card_number(other_id)):
            error = rpc_error(
                lambda card_number=card_number: suite.card.ResetServicePassword(
                    pb.ResetServicePasswordRequest(
                        request_id=suite.rid("reset"),
                        card_id=card_id,
                        document=person.document(),
                        new_password="135790",
                        card_number=card_number,
                    ),
                    metadata=suite.branch(BANK, INSTANT),
                )
            )
            assert reason_rule(error) == ("CARD_MISMATCH", "A12.2")
        assert not self._verify(suite, card_id, "135790")
        self._reset(suite, card_id, person, "135790")
        assert self._verify(suite, card_id, "135790")

    def test_A24_2_an_agent_changes_the_password_only_for_the_principals_card(
        self, suite: Suite
    ) -> None:
        """代理人代为办理时,应当提交代理人和被代理人的有效身份证件原件,以及被代理人书面授权委托书。"""
        card_id, person = active_card(suite)
        self._reset(suite, card_id, person, "135790")
        stranger = suite.person()
        error = rpc_error(
            lambda: self._change(
                suite, person, card_id, "135790", "246802", agent=agent_for(stranger)
            )
        )
        assert reason_rule(error) == ("DOCUMENT_MISMATCH", "A24.2")
        assert self._verify(suite, card_id, "135790")
        outlet = suite.at(Channel.DISTRICT_OUTLET)
        number = suite.card_number(card_id)
        self._change(
            suite,
            person,
            card_id,
            "135790",
            "246802",
            outlet,
            agent=agent_for(person),
            card_number=number,
        )
        assert self._verify(suite, card_id, "246802")

    def test_A12_2_reset_with_id_and_card_then_change_with_the_old_password(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        answer = self._reset(suite, card_id, person, "135790")
        assert "135790" not in str(answer)
        assert self._verify(suite, card_id, "135790")
        self._change(suite, person, card_id, "135790", "246802", agent=agent_for(person))
        assert not self._verify(suite, card_id, "135790")
        assert self._verify(suite, card_id, "246802")
        weak = rpc_error(lambda: self._change(suite, person, card_id, "246802", "123456"))
        assert reason_rule(weak) == ("WEAK_SERVICE_PASSWORD", "A12.2")

    def test_A12_2_five_wrong_tries_lock_the_password_for_fifteen_minutes(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        card_id, person = active_card(suite)
        self._reset(suite, card_id, person, "135790")
        for _ in range(5):
            assert not self._verify(suite, card_id, "000111")
        assert not self._verify(suite, card_id, "135790")  # locked, even with the right one
        wrong = rpc_error(lambda: self._change(suite, person, card_id, "135790", "246802"))
        test_clock.advance(dt.timedelta(minutes=16))
        assert self._verify(suite, card_id, "135790")
        unknown = rpc_error(
            lambda: self._change(suite, person, "card-does-not-exist", "135790", "246802")
        )
        assert reason_rule(wrong) == reason_rule(unknown) == ("SERVICE_PASSWORD_REJECTED", "A12.2")

    def test_A12_2_a_card_that_does_not_exist_gets_the_same_answer_as_a_wrong_password(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        self._reset(suite, card_id, person, "135790")
        assert not self._verify(suite, card_id, "999111")
        assert not self._verify(suite, "card-does-not-exist", "999111")

    def test_A12_1_changing_the_service_password_never_touches_the_financial_account(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        before = suite.bank.GetAccount(
            bank_pb2.GetAccountRequest(card_id=card_id), metadata=suite.service
        )
        self._reset(suite, card_id, person, "135790")
        self._change(suite, person, card_id, "135790", "246802")
        after = suite.bank.GetAccount(
            bank_pb2.GetAccountRequest(card_id=card_id), metadata=suite.service
        )
        assert before == after


def test_A24_1_agents_may_query_status(suite: Suite) -> None:
    card_id, person = active_card(suite)
    answer = suite.card.QueryStatus(
        pb.QueryStatusRequest(card_id=card_id, agent=agent_for(person)),
        metadata=suite.at(Channel.HOTLINE, roles=(Role.COUNTER,)),
    )
    assert answer.status == pb.CARD_STATUS_ACTIVE


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_database_dump_shows_no_id_or_phone_number_in_the_clear(
    suite: Suite, service_env: dict[str, str]
) -> None:
    card_id, person = active_card(suite)
    suite.card.UpdateContactInfo(
        pb.UpdateContactInfoRequest(
            request_id="dump-1", card_id=card_id, document=person.document(), mobile="13699887766"
        ),
        metadata=suite.at(Channel.ONLINE, person),
    )
    for service in ("identity", "card", "bank"):
        path = service_env[f"SSCARD_{service.upper()}_DB_URL"].removeprefix("sqlite:///")
        dump = b"".join(Path(f).read_bytes() for f in (path, path + "-wal") if Path(f).exists())
        assert person.number.encode() not in dump, service
        assert b"13699887766" not in dump and b"13812345678" not in dump, service
