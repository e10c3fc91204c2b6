"""A holder of a 1st / 2nd generation card applying for a 3rd-generation one (A27.3): the older
card's financial function is cancelled when the new card is activated only if the holder chose
so when applying, its balance paid out as they directed, never left in a closed account. Real
gRPC, SQLite and PostgreSQL."""

from __future__ import annotations

import grpc
import pytest

from services.platform.auth import Channel
from sscard.bank.v1 import bank_pb2
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from tests.cardsuite import BANK, INSTANT, OTHER_BANK, Suite, wait_until
from tests.money import account_balance, pay_in
from tests.scenarios.test_bank_first_card import facts
from tests.support import PersonSpec, refusal

OLDER_CARD_NUMBER = "6217850000001234567"
OLDER_ACCOUNT = f"older:{OTHER_BANK}:{OLDER_CARD_NUMBER}"  # how the bank keeps it


def older_account_of(suite: Suite, person: PersonSpec, balance_fen: int) -> None:
    """The generation-2 card's account at its bank (OTHER_BANK), with money in it."""
    suite.bank.OpenAccount(
        bank_pb2.OpenAccountRequest(
            request_id=suite.rid("older"),
            card_id=OLDER_ACCOUNT,
            bank_code=OTHER_BANK,
            presented=facts(person.number, person.name, person.valid_until),
            verified=facts(person.number, person.name, person.valid_until),
        ),
        metadata=suite.service,
    )
    pay_in(suite, OLDER_ACCOUNT, balance_fen)


def apply_and_activate(suite: Suite, person: PersonSpec, choice: pb.OlderCardChoice | None) -> str:
    started = suite.card.Apply(
        pb.ApplyRequest(
            request_id=suite.rid("apply"),
            applicant=suite.applicant(person),
            bank_code=BANK,
            delivery=pb.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=INSTANT,
            older_card=choice,
        ),
        metadata=suite.branch(BANK, INSTANT),
    )
    assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED
    suite.collect(started.card_id, person, metadata=suite.branch(BANK, INSTANT))
    suite.activate(started.card_id, person)
    return str(started.card_id)


def retirement(suite: Suite, card_id: str) -> int:
    """The state of the retirement saga that follows the activation (0 before it starts)."""
    ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
    found = ops.ListSagas(
        pb.ListSagasRequest(card_id=card_id, kind="retirement"), metadata=suite.ops
    ).sagas
    return found[0].state if found else 0


def ended(suite: Suite, card_id: str) -> int:
    wait_until(
        lambda: retirement(suite, card_id) in (pb.SAGA_STATE_COMPLETED, pb.SAGA_STATE_FAILED)
    )
    return retirement(suite, card_id)


def notices(suite: Suite, card_id: str, rule: str) -> list[str]:
    return [n.text for n in suite.get(card_id, history=True).notices if n.rule == rule]


class TestOlderCardsFinancialFunction:
    def test_A27_3_chosen_the_older_account_closes_at_activation_its_balance_paid_to_the_new(
        self, suite: Suite
    ) -> None:
        """申领第三代社会保障卡后,原第一、二代社会保障卡不回收,其原有社会保障功能自持卡人启用新卡时
        失效,原有金融功能可自行选择是否注销。

        The holder chose cancellation when applying: the older card's account keeps working
        until the new card is activated, then closes with its whole balance in the new card's
        account, and the holder is told where it went."""
        person = suite.person(legacy_generation=2)
        older_account_of(suite, person, 321_00)
        choice = pb.OlderCardChoice(
            cancel_financial=True, bank_code=OTHER_BANK, card_number=OLDER_CARD_NUMBER
        )
        card_id = apply_and_activate(suite, person, choice)
        assert ended(suite, card_id) == pb.SAGA_STATE_COMPLETED
        older = account_balance(suite, OLDER_ACCOUNT)
        assert (older.closed, older.balance_fen) == (True, 0)
        assert account_balance(suite, card_id).balance_fen == 321_00
        [told] = notices(suite, card_id, "A27.3")[-1:]
        assert "your new card's account" in told and OTHER_BANK in told

    def test_A27_3_not_chosen_the_older_account_stays_open_with_its_balance(
        self, suite: Suite
    ) -> None:
        """原有金融功能可自行选择是否注销: without the choice, only the SS function stops."""
        person = suite.person(legacy_generation=2)
        older_account_of(suite, person, 45_00)
        card_id = apply_and_activate(suite, person, None)
        assert ended(suite, card_id) == pb.SAGA_STATE_COMPLETED
        older = account_balance(suite, OLDER_ACCOUNT)
        assert (older.closed, older.balance_fen) == (False, 45_00)
        assert account_balance(suite, card_id).balance_fen == 0
        [told] = notices(suite, card_id, "A27.3")
        assert "stays open" in told

    def test_A27_3_an_older_account_of_someone_else_is_not_closed(self, suite: Suite) -> None:
        """The bank closes only the applicant's own older account (IDENTITY_MISMATCH): naming
        another person's card number closes nothing, and the holder and operations are told."""
        owner = suite.person(legacy_generation=2)
        older_account_of(suite, owner, 10_00)
        person = suite.person(legacy_generation=2)
        choice = pb.OlderCardChoice(
            cancel_financial=True, bank_code=OTHER_BANK, card_number=OLDER_CARD_NUMBER
        )
        card_id = apply_and_activate(suite, person, choice)
        assert ended(suite, card_id) == pb.SAGA_STATE_FAILED
        older = account_balance(suite, OLDER_ACCOUNT)
        assert (older.closed, older.balance_fen) == (False, 10_00)
        card = suite.get(card_id, history=True)
        assert card.status == pb.CARD_STATUS_ACTIVE  # the new card works all the same
        told = [(n.recipient, n.rule) for n in card.notices]
        assert ("person", "A27.3") in told and ("operations", "A20.1") in told

    def test_A27_3_the_choice_names_the_older_card(self, suite: Suite) -> None:
        """A choice without the older card's bank and number is refused with the fields."""
        person = suite.person(legacy_generation=2)
        with pytest.raises(grpc.RpcError) as excinfo:
            suite.card.Apply(
                pb.ApplyRequest(
                    request_id=suite.rid("apply"),
                    applicant=suite.applicant(person),
                    bank_code=BANK,
                    delivery=pb.DELIVERY_MAIL,
                    older_card=pb.OlderCardChoice(cancel_financial=True, card_number="12"),
                ),
                metadata=suite.at(Channel.DISTRICT_OUTLET),
            )
        code, error = refusal(excinfo)
        assert (code, error.reason, error.rule) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_APPLICATION",
            "A5.1",
        )
        assert {v.field for v in error.violations} == {
            "older_card.bank_code",
            "older_card.card_number",
        }

    def test_A27_3_a_choice_without_an_older_card_on_record_closes_nothing(
        self, suite: Suite
    ) -> None:
        """Only a holder of a 1st / 2nd generation card has an older financial function to
        cancel: with none on record nothing is closed, and the holder is told to ask the bank."""
        person = suite.person()
        older_account_of(suite, person, 12_00)
        choice = pb.OlderCardChoice(
            cancel_financial=True, bank_code=OTHER_BANK, card_number=OLDER_CARD_NUMBER
        )
        card_id = apply_and_activate(suite, person, choice)
        [told] = notices(suite, card_id, "A27.3")
        assert "No 1st or 2nd generation" in told
        assert retirement(suite, card_id) == 0  # no older card to retire
        older = account_balance(suite, OLDER_ACCOUNT)
        assert (older.closed, older.balance_fen) == (False, 12_00)
