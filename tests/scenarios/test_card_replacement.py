"""Reissue and replacement over real gRPC against real identity, bank and card services, on
SQLite and PostgreSQL: A14.2, A15.1, A15.2, A16.1, A16.2, A16.5, A16.7, A16.8, A17.2, A22.2,
A22.3, and old cards: A16.6 recall and destruction, A27.2 / A27.3 older generations."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc

from services.platform.auth import Channel, Role
from services.platform.clock import BEIJING, SharedTestClock
from sscard.bank.v1 import bank_pb2, ledger_pb2
from sscard.card.v1 import card_pb2 as pb
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2
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
from tests.money import YUAN, account_balance, ledger, pay_in
from tests.scenarios.test_card_in_use import unlock
from tests.support import PersonSpec, resident_id


def formal_loss(suite: Suite, card_id: str, person: PersonSpec) -> None:
    suite.card.ReportFormalLoss(
        pb.ReportLossRequest(
            request_id=suite.rid("formal"), card_id=card_id, document=person.document()
        ),
        metadata=suite.at(Channel.DISTRICT_OUTLET),
    )


def reissue(
    suite: Suite, card_id: str, person: PersonSpec, metadata: Any = None, pickup: str = INSTANT
) -> pb.ApplyResponse:
    return suite.card.ReissueCard(
        pb.ReissueCardRequest(
            request_id=suite.rid("reissue"),
            card_id=card_id,
            document=person.document(),
            delivery=pb.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=pickup,
        ),
        metadata=metadata or suite.at(Channel.ONLINE, person),
    )


def replace(
    suite: Suite,
    card_id: str,
    person: PersonSpec,
    reason: int = pb.REPLACEMENT_REASON_DAMAGED_FACE,
    metadata: Any = None,
    pickup: str = INSTANT,
    **extra: Any,
) -> pb.ApplyResponse:
    return suite.card.ReplaceCard(
        pb.ReplaceCardRequest(
            request_id=suite.rid("replace"),
            card_id=card_id,
            document=person.document(),
            name=person.name,
            reason=reason,  # type: ignore[arg-type]
            delivery=pb.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=pickup,
            **extra,
        ),
        metadata=metadata or suite.at(Channel.ONLINE, person),
    )


def hand_over(
    suite: Suite,
    card_id: str,
    person: PersonSpec,
    bank: str = BANK,
    branch: str = INSTANT,
    old_card_id: str = "",
) -> None:
    """Make (if not made on the spot), collect at the branch (against the old card, for a
    replacement) and activate the new card."""
    if suite.get(card_id).status == pb.CARD_STATUS_IN_PRODUCTION:
        suite.produce(card_id)
    suite.collect(card_id, person, metadata=suite.branch(bank, branch), old_card_id=old_card_id)
    suite.activate(card_id, person)


def account(suite: Suite, card_id: str) -> bank_pb2.AccountState:
    return suite.bank.GetAccount(
        bank_pb2.GetAccountRequest(card_id=card_id), metadata=suite.service
    )


class TestReissue:
    def test_A15_1_A14_2_a_formally_lost_card_is_reissued_and_can_no_longer_be_unlocked(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        early = rpc_error(lambda: reissue(suite, card_id, person))
        assert reason_rule(early) == ("NOT_FORMALLY_LOST", "A15.1")
        formal_loss(suite, card_id, person)
        started = reissue(suite, card_id, person)
        assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED
        assert suite.registered_card(person) == started.card_id
        assert reason_rule(
            rpc_error(lambda: unlock(suite, card_id, person, suite.at(Channel.DISTRICT_OUTLET)))
        ) == (
            "CARD_REISSUED",
            "A14.2",
        )
        again = rpc_error(lambda: reissue(suite, card_id, person))
        assert reason_rule(again) == ("ALREADY_REISSUED", "A15.1")

    def test_A14_2_the_lost_card_cannot_be_unlocked_once_the_reissue_is_accepted(
        self, suite: Suite
    ) -> None:
        """已办理补领业务的,旧卡不再办理解挂业务。

        The reissue's saga cannot finish while the identity service is down (its first step
        moves the person's place); the lost card is already out of reach of an unlock."""
        card_id, person = active_card(suite)
        formal_loss(suite, card_id, person)
        suite.identity_server.server.stop(0)
        started = reissue(suite, card_id, person)
        refused = rpc_error(
            lambda: unlock(suite, card_id, person, suite.at(Channel.DISTRICT_OUTLET))
        )
        assert reason_rule(refused) == ("CARD_REISSUED", "A14.2")
        assert suite.get(card_id).status == pb.CARD_STATUS_FORMALLY_LOST
        application = suite.card.GetApplication(
            pb.GetApplicationRequest(card_id=started.card_id), metadata=suite.ops
        )
        assert application.state == pb.SAGA_STATE_RUNNING  # the reissue's saga had not finished

    def test_A14_1_a_refused_reissue_leaves_the_lost_card_to_be_unlocked(
        self, suite: Suite
    ) -> None:
        """持卡人正式挂失后找回原卡的,应持本人有效身份证件和社会保障卡原件到区、街两级社会保障卡服务网点或发卡合作银行服务网点办理解挂手续。

        A reissue the bank refuses is undone: no reissue was made, so the found card is
        unlocked."""
        card_id, person = active_card(suite)
        formal_loss(suite, card_id, person)
        started = reissue(suite, card_id, person, pickup="ICBC-NOWHERE")
        assert suite.settle(started.card_id).state == pb.SAGA_STATE_FAILED
        assert (
            unlock(suite, card_id, person, suite.at(Channel.DISTRICT_OUTLET)).status
            == pb.CARD_STATUS_ACTIVE
        )

    def test_A15_1_A14_1_the_reissued_card_works_the_account_the_lost_one_suspended(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        hotline_loss(suite, card_id, person)
        wait_until(lambda: account(suite, card_id).loss == bank_pb2.LOSS_KIND_TEMPORARY_LOSS)
        formal_loss(suite, card_id, person)
        started = reissue(suite, card_id, person)
        suite.settle(started.card_id)
        assert account(suite, started.card_id).loss == bank_pb2.LOSS_KIND_TEMPORARY_LOSS
        hand_over(suite, started.card_id, person)
        wait_until(lambda: account(suite, started.card_id).loss == bank_pb2.LOSS_KIND_UNSPECIFIED)
        assert account(suite, started.card_id).account_id == account(suite, card_id).account_id

    def test_A15_1_reissue_is_online_or_at_the_issuing_bank_only(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        formal_loss(suite, card_id, person)
        for metadata in (
            suite.at(Channel.DISTRICT_OUTLET),
            suite.at(Channel.HOTLINE),
            suite.branch(OTHER_BANK, OTHER_INSTANT),
        ):
            assert reason_rule(
                rpc_error(lambda m=metadata: reissue(suite, card_id, person, m))
            ) == (
                "CHANNEL_NOT_ALLOWED",
                "A3.1",
            )

    def test_A22_2_a_reissue_applied_on_the_friday_before_national_day_is_due_after_it(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        # Friday 2026-09-25 is Mid-Autumn; then a weekend, three working days, and National
        # Day from 1 to 7 October: the fourth working day is Thursday 8 October.
        friday = dt.datetime(2026, 9, 25, 10, 0, tzinfo=BEIJING)
        test_clock.set(friday)
        card_id, person = active_card(suite)
        formal_loss(suite, card_id, person)
        started = suite.card.ReissueCard(
            pb.ReissueCardRequest(
                request_id=suite.rid("reissue"),
                card_id=card_id,
                document=person.document(),
                delivery=pb.DELIVERY_MAIL,
            ),
            metadata=suite.at(Channel.ONLINE, person),
        )
        suite.settle(started.card_id)
        card = suite.get(started.card_id, history=True)
        assert (card.due_date.year, card.due_date.month, card.due_date.day) == (2026, 10, 8)
        assert card.transitions[-1].rule == "A22.2"

    def test_A22_3_A15_2_a_reissue_at_an_instant_branch_is_made_on_the_spot_with_the_notice(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        formal_loss(suite, card_id, person)
        started = reissue(suite, card_id, person, suite.branch(BANK, INSTANT))
        suite.settle(started.card_id)
        card = suite.get(started.card_id, history=True)
        assert card.status == pb.CARD_STATUS_READY
        assert "A15.2" in [n.rule for n in card.notices]
        assert any("subsidies" in n.text for n in card.notices)


class TestReplacement:
    def test_A16_1_only_a_lawful_reason_replaces_a_card(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        for reason in (pb.REPLACEMENT_REASON_OTHER, pb.REPLACEMENT_REASON_UNSPECIFIED):
            error = rpc_error(lambda r=reason: replace(suite, card_id, person, r))
            assert reason_rule(error) == ("INVALID_REPLACEMENT_REASON", "A16.1")

    def test_A16_2_replacement_is_online_or_at_the_issuing_bank(self, suite: Suite) -> None:
        card_id, person = active_card(suite)
        error = rpc_error(
            lambda: replace(suite, card_id, person, metadata=suite.at(Channel.DISTRICT_OUTLET))
        )
        assert reason_rule(error) == ("CHANNEL_NOT_ALLOWED", "A3.1")

    def test_A16_2_a_replacement_is_collected_at_the_branch_never_mailed(
        self, suite: Suite
    ) -> None:
        """第十六条：持卡人应持本人有效身份证件原件和旧卡原件到发卡合作银行服务网点换领新卡。"""
        card_id, person = active_card(suite)
        mailed = rpc_error(
            lambda: suite.card.ReplaceCard(
                pb.ReplaceCardRequest(
                    request_id=suite.rid("replace"),
                    card_id=card_id,
                    document=person.document(),
                    name=person.name,
                    reason=pb.REPLACEMENT_REASON_DAMAGED_FACE,
                    delivery=pb.DELIVERY_MAIL,
                ),
                metadata=suite.at(Channel.ONLINE, person),
            )
        )
        assert mailed.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_rule(mailed) == ("REPLACEMENT_COLLECTED_AT_BRANCH", "A16.2")
        assert suite.get(card_id).status == pb.CARD_STATUS_ACTIVE
        started = replace(suite, card_id, person, pb.REPLACEMENT_REASON_DAMAGED_FACE)
        assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED

    def test_A16_5_A16_8_the_old_card_works_until_the_new_one_is_activated(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        started = replace(suite, card_id, person, pb.REPLACEMENT_REASON_CHIP_FAILURE)
        suite.settle(started.card_id)
        assert suite.get(card_id).status == pb.CARD_STATUS_ACTIVE
        new = suite.get(started.card_id, history=True)
        assert "A16.8" in [n.rule for n in new.notices]
        assert suite.get(started.card_id).status != pb.CARD_STATUS_ACTIVE  # never two active cards
        hand_over(suite, started.card_id, person, old_card_id=card_id)
        old = suite.get(card_id, history=True)
        assert old.status == pb.CARD_STATUS_REPLACED
        assert old.transitions[-1].rule == "A16.5"
        assert suite.get(started.card_id).status == pb.CARD_STATUS_ACTIVE

    def test_A16_7_a_holder_changes_bank_and_not_again_within_six_months(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        card_id, person = active_card(suite)
        started = replace(suite, card_id, person, new_bank_code=OTHER_BANK, pickup=OTHER_INSTANT)
        assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED
        assert account(suite, started.card_id).bank_code == OTHER_BANK
        hand_over(suite, started.card_id, person, OTHER_BANK, OTHER_INSTANT, card_id)
        # The old bank's account closes once the new card is active (the holder kept none).
        wait_until(lambda: account(suite, card_id).status == bank_pb2.ACCOUNT_STATUS_CLOSED)
        soon = rpc_error(
            lambda: replace(
                suite,
                started.card_id,
                person,
                new_bank_code=BANK,
                metadata=suite.at(Channel.ONLINE, person),
            )
        )
        assert reason_rule(soon) == ("BANK_CHANGE_TOO_SOON", "A16.7")
        test_clock.advance(dt.timedelta(days=190))
        later = replace(suite, started.card_id, person, new_bank_code=BANK)
        assert suite.settle(later.card_id).state == pb.SAGA_STATE_COMPLETED

    def test_A17_2_a_replacement_after_a_basic_information_change_carries_the_new_data(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        renamed = PersonSpec(
            number=resident_id(dt.date(1990, 3, 7), region="110108"),
            name="张珊",
            person_id=person.person_id,  # the same person, once the registry has the change
        )
        # Before the registry knows the new document, identity cannot confirm it is the holder's.
        refused = suite.settle(
            replace(suite, card_id, renamed, pb.REPLACEMENT_REASON_BASIC_INFO_CHANGED).card_id
        )
        assert (refused.refusal_reason, refused.refusal_rule) == ("NOT_THE_APPLICANT", "A5.1")
        # Nor does another person's document replace the holder's card.
        other = suite.person()
        other_id = replace(
            suite,
            card_id,
            other,
            pb.REPLACEMENT_REASON_BASIC_INFO_CHANGED,
            suite.at(Channel.ONLINE, person),
        )
        assert suite.settle(other_id.card_id).refusal_reason == "NOT_THE_APPLICANT"
        suite.identity.ChangeBasicInfo(
            identity_pb2.ChangeBasicInfoRequest(
                request_id=suite.rid("rename"),
                person=identity_pb2.PersonRef(document=person.document()),
                new_name=renamed.name,
                new_document=common_pb2.IdentityDocument(
                    type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=renamed.number
                ),
            ),
            metadata=suite.token(roles=(Role.REGISTRY,), caller="hr-feed"),
        )
        started = replace(suite, card_id, renamed, pb.REPLACEMENT_REASON_BASIC_INFO_CHANGED)
        assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED
        new = suite.get(started.card_id)
        assert new.holder_name == "张珊"
        assert new.document.number_masked.endswith(renamed.number[-4:])


class TestOldCards:
    def test_A16_2_A16_6_the_new_card_is_handed_over_against_the_old_one_taken_back_on_the_spot(
        self, suite: Suite
    ) -> None:
        """第十六条：持卡人应持本人有效身份证件原件和旧卡原件到发卡合作银行服务网点换领新卡。
        ……旧卡由发卡合作银行现场收回,统一销毁。"""
        card_id, person = active_card(suite)
        started = replace(suite, card_id, person, pb.REPLACEMENT_REASON_DAMAGED_FACE)
        suite.settle(started.card_id)
        suite.produce(started.card_id)
        at_branch = suite.branch(BANK, INSTANT)
        for presented in ("", started.card_id):
            refused = rpc_error(
                lambda p=presented: suite.collect(  # type: ignore[misc]
                    started.card_id, person, metadata=at_branch, old_card_id=p
                )
            )
            assert reason_rule(refused) == ("OLD_CARD_NOT_PRESENTED", "A16.2")
        assert suite.get(started.card_id).status == pb.CARD_STATUS_READY
        suite.collect(started.card_id, person, metadata=at_branch, old_card_id=card_id)

        def recalled() -> bool:
            try:
                return bool(
                    suite.bank.GetCardRecall(
                        bank_pb2.GetCardRecallRequest(card_id=card_id), metadata=suite.service
                    ).reason
                    == bank_pb2.RECALL_REASON_REPLACED
                )
            except grpc.RpcError:
                return False

        wait_until(recalled)  # taken back at collection, before the new card is activated
        assert (
            suite.get(card_id).status == pb.CARD_STATUS_ACTIVE
        )  # its functions end at activation (A16.5)
        destroyed = suite.bank.DestroyCard(
            bank_pb2.DestroyCardRequest(request_id=suite.rid("destroy"), card_id=card_id),
            metadata=suite.token(roles=(Role.OPS,), caller="branch-ops", operator_id="T-07"),
        )
        assert destroyed.destroyed_at.seconds > 0
        assert "T-07" in destroyed.destroyed_by
        suite.activate(started.card_id, person)
        assert suite.get(card_id).status == pb.CARD_STATUS_REPLACED

    def test_A27_2_A27_3_the_older_cards_ss_function_stops_when_the_3rd_generation_is_active(
        self, suite: Suite
    ) -> None:
        """第二十七条：申领第三代社会保障卡后,原第一、二代社会保障卡不回收,其原有社会保障功能
        自持卡人启用新卡时失效,原有金融功能可自行选择是否注销。"""
        person = suite.person(legacy_generation=2)

        def registry() -> identity_pb2.Person:
            return suite.identity.GetPerson(
                identity_pb2.GetPersonRequest(
                    person=identity_pb2.PersonRef(document=person.document())
                ),
                metadata=suite.service,
            ).person

        started = suite.apply(person, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
        assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED
        suite.collect(started.card_id, person, metadata=suite.branch(BANK, INSTANT))
        # Collected but not yet activated: the generation-2 card still works.
        assert not registry().HasField("legacy_card_ss_stopped_at")
        suite.activate(started.card_id, person)
        wait_until(lambda: registry().HasField("legacy_card_ss_stopped_at"))
        assert registry().legacy_card_generation == 2  # not recalled: still on record
        notices = suite.get(started.card_id, history=True).notices
        older = [n for n in notices if n.rule == "A27.3"]
        assert len(older) == 1
        assert "generation-2" in older[0].text


class TestMoneyOnBankChange:
    def test_A16_7_A20_1_the_old_account_closes_only_with_its_balance_paid_into_the_new_one(
        self, suite: Suite
    ) -> None:
        """第十六条 持卡人因根据实际需要变更合作银行的,发卡合作银行应当予以配合。
        第二十条 若涉及相关补贴、津贴等资金发放,需尽快到原业务办理渠道变更银行卡号,确保补贴、
        津贴等资金顺利发放。"""
        card_id, person = active_card(suite)
        pay_in(suite, card_id, 1234_56)
        old_account = account(suite, card_id).account_id
        flip = rpc_error(
            lambda: suite.bank.CloseAccount(
                bank_pb2.CloseAccountRequest(request_id=suite.rid("flip"), account_id=old_account),
                metadata=suite.service,
            )
        )
        assert reason_rule(flip) == ("ACCOUNT_HAS_BALANCE", "A20.1")
        started = replace(suite, card_id, person, new_bank_code=OTHER_BANK, pickup=OTHER_INSTANT)
        suite.settle(started.card_id)
        hand_over(suite, started.card_id, person, OTHER_BANK, OTHER_INSTANT, old_card_id=card_id)
        wait_until(lambda: account(suite, card_id).status == bank_pb2.ACCOUNT_STATUS_CLOSED)
        assert account_balance(suite, card_id).balance_fen == 0
        assert account_balance(suite, started.card_id).balance_fen == 1234_56
        wait_until(
            lambda: "A20.1" in [n.rule for n in suite.get(started.card_id, history=True).notices]
        )
        [told] = [n for n in suite.get(started.card_id, history=True).notices if n.rule == "A20.1"]
        assert told.recipient == "person" and "new card's account" in told.text

    def test_A16_7_A20_1_the_old_balance_goes_where_the_holder_directed(self, suite: Suite) -> None:
        """第二十条 持卡人办理社会保障卡金融功能挂失、解挂、注销、代办以及预留手机号码修改的程序和
        时限等规则,按照发卡合作银行的规定执行。"""
        card_id, person = active_card(suite)
        pay_in(suite, card_id, 300 * YUAN)
        started = replace(
            suite,
            card_id,
            person,
            new_bank_code=OTHER_BANK,
            pickup=OTHER_INSTANT,
            old_account_payout_destination="6222020000000000@CCB",
        )
        suite.settle(started.card_id)
        hand_over(suite, started.card_id, person, OTHER_BANK, OTHER_INSTANT, old_card_id=card_id)
        wait_until(lambda: account(suite, card_id).status == bank_pb2.ACCOUNT_STATUS_CLOSED)
        entries = ledger(suite).ListEntries(
            ledger_pb2.ListEntriesRequest(card_id=card_id), metadata=suite.ops
        )
        payout = [e for e in entries.entries if e.source == ledger_pb2.ENTRY_SOURCE_CLOSING_PAYOUT]
        assert [(e.amount_fen, e.counterparty) for e in payout] == [
            (-300 * YUAN, "6222020000000000@CCB")
        ]
        assert account_balance(suite, started.card_id).balance_fen == 0
        # The holder is told where the money went, without the account's number in full.
        (told,) = [n for n in suite.get(started.card_id, history=True).notices if n.rule == "A20.1"]
        assert "paid to account ************0000@CCB" in told.text
        assert "6222020000000000" not in told.text
