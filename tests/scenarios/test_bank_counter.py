"""The issuing bank's counter over real gRPC against real identity, bank and card services, on
SQLite and PostgreSQL: the financial function is activated only at the issuing bank's counter
with the document and the card (A9.1) and never alone (A9.2); the financial password follows
the bank's rules (A12.3) and is independent of the service password (A12.1); the financial
function's formal loss needs the issuing bank (A13.4) and is unlocked there (A20.1), as is the
reserved phone changed (A20.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from services.platform.auth import Channel
from sscard.bank.v1 import bank_pb2, counter_pb2_grpc
from sscard.bank.v1 import counter_pb2 as cpb
from sscard.card.v1 import card_pb2
from sscard.common.v1 import common_pb2
from tests.cardsuite import BANK, INSTANT, OTHER_BANK, OTHER_INSTANT, Suite, active_card
from tests.support import PersonSpec, refusal, resident_id


class Counter:
    """The suite, with the bank's counter service and a way to get cards in any state."""

    def __init__(self, suite: Suite, stub: counter_pb2_grpc.CounterServiceStub) -> None:
        self.suite = suite
        self.stub = stub

    def counter(self, bank_code: str = BANK, branch_id: str = INSTANT) -> Any:
        return self.suite.branch(bank_code, branch_id)

    def ready_card(self, person: PersonSpec | None = None) -> tuple[str, PersonSpec]:
        """A card made on the spot at the issuing bank's instant branch, not collected yet."""
        person = person or self.suite.person()
        started = self.suite.apply(person, metadata=self.counter(), pickup=INSTANT)
        self.suite.settle(started.card_id)
        return started.card_id, person

    def collected_card(self, person: PersonSpec | None = None) -> tuple[str, PersonSpec]:
        card_id, person = self.ready_card(person)
        self.suite.collect(card_id, person, metadata=self.counter())
        return card_id, person

    def activate(
        self,
        card_id: str,
        person: PersonSpec,
        metadata: Any = None,
        request_id: str = "",
        card_number: str = "",
        document: common_pb2.IdentityDocument | None = None,
    ) -> bank_pb2.AccountState:
        return self.stub.ActivateFinancial(
            cpb.ActivateFinancialRequest(
                request_id=request_id or self.suite.rid("fin"),
                card_id=card_id,
                document=document or person.document(),
                card_number=card_number or self.suite.card_number(card_id),
            ),
            metadata=metadata or self.counter(),
        )

    def active(self) -> tuple[str, PersonSpec]:
        """A card with both the SS and the financial function active."""
        card_id, person = self.collected_card()
        self.activate(card_id, person)
        return card_id, person

    def state(self, card_id: str) -> bank_pb2.AccountState:
        return self.stub.GetFinancialState(
            cpb.GetFinancialStateRequest(card_id=card_id), metadata=self.suite.ops
        )

    def loss(
        self,
        card_id: str,
        person: PersonSpec,
        metadata: Any = None,
        agent: bank_pb2.CounterAgent | None = None,
    ) -> Any:
        return self.stub.ReportFinancialLoss(
            cpb.FinancialCounterRequest(
                request_id=self.suite.rid("loss"),
                card_id=card_id,
                document=person.document(),
                agent=agent,
            ),
            metadata=metadata or self.counter(),
        )

    def unlock(
        self,
        card_id: str,
        person: PersonSpec,
        metadata: Any = None,
        agent: bank_pb2.CounterAgent | None = None,
    ) -> Any:
        return self.stub.UnlockFinancial(
            cpb.FinancialCounterRequest(
                request_id=self.suite.rid("unlock"),
                card_id=card_id,
                document=person.document(),
                agent=agent,
            ),
            metadata=metadata or self.counter(),
        )

    def set_password(self, card_id: str, person: PersonSpec, password: str) -> Any:
        return self.stub.SetFinancialPassword(
            cpb.SetFinancialPasswordRequest(
                request_id=self.suite.rid("fpw"),
                card_id=card_id,
                document=person.document(),
                new_password=password,
            ),
            metadata=self.counter(),
        )

    def change_password(self, card_id: str, old: str, new: str) -> Any:
        return self.stub.ChangeFinancialPassword(
            cpb.ChangeFinancialPasswordRequest(
                request_id=self.suite.rid("fpw"),
                card_id=card_id,
                old_password=old,
                new_password=new,
            ),
            metadata=self.counter(),
        )

    def reset_password(self, card_id: str, person: PersonSpec, password: str) -> Any:
        return self.stub.ResetFinancialPassword(
            cpb.ResetFinancialPasswordRequest(
                request_id=self.suite.rid("fpw"),
                card_id=card_id,
                document=person.document(),
                new_password=password,
            ),
            metadata=self.counter(),
        )

    def verify(self, card_id: str, password: str) -> cpb.VerifyFinancialPasswordResponse:
        return self.stub.VerifyFinancialPassword(
            cpb.VerifyFinancialPasswordRequest(card_id=card_id, password=password),
            metadata=self.suite.service,
        )

    def verify_service_password(self, card_id: str, password: str) -> bool:
        answer = self.suite.card.VerifyServicePassword(
            card_pb2.VerifyServicePasswordRequest(card_id=card_id, password=password),
            metadata=self.suite.service,
        )
        return bool(answer.valid)


@pytest.fixture
def counter(start_service: Callable[..., Any], token: Callable[..., Any]) -> Counter:
    started: dict[str, Any] = {}

    def start(name: str, build: Callable[..., Any], **options: Any) -> Any:
        started[name] = start_service(name, build, **options)
        return started[name]

    suite = Suite(start, token)
    return Counter(suite, counter_pb2_grpc.CounterServiceStub(started["bank"].channel))


def refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as excinfo:
        call()
    code, error = refusal(excinfo)
    return code, error.reason, error.rule


DENIED = grpc.StatusCode.PERMISSION_DENIED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


class TestActivation:
    def test_A9_1_only_a_counter_of_the_issuing_bank_activates_the_financial_function(
        self, counter: Counter
    ) -> None:
        card_id, person = counter.collected_card()
        suite = counter.suite
        for metadata in (
            suite.at(Channel.DISTRICT_OUTLET, outlet_id="dongcheng-01"),
            suite.branch(OTHER_BANK, OTHER_INSTANT),
        ):
            assert refused(lambda m=metadata: counter.activate(card_id, person, m)) == (
                DENIED,
                "CHANNEL_NOT_ALLOWED",
                "A3.1",
            )
        # Online the holder acts for themself, and a person never reaches a bank's counter.
        assert refused(
            lambda: counter.activate(card_id, person, suite.at(Channel.ONLINE, person))
        ) == (DENIED, "ROLE_NOT_ALLOWED", "")
        stranger = suite.person()
        assert refused(lambda: counter.activate(card_id, person, document=stranger.document())) == (
            PRECONDITION,
            "IDENTITY_MISMATCH",
            "A9.1",
        )
        assert refused(
            lambda: counter.activate(card_id, person, card_number="9999999999999999")
        ) == (PRECONDITION, "CARD_MISMATCH", "A9.1")
        assert not counter.state(card_id).HasField("financial_activated_at")

        state = counter.activate(card_id, person)
        assert state.HasField("financial_activated_at")
        assert counter.state(card_id).financial_activated_at == state.financial_activated_at

    def test_A9_2_activating_the_financial_function_activates_the_ss_function(
        self, counter: Counter
    ) -> None:
        card_id, person = counter.collected_card()
        assert counter.suite.get(card_id).status == card_pb2.CARD_STATUS_COLLECTED
        first = counter.activate(card_id, person, request_id="fin-once")
        assert counter.suite.get(card_id).status == card_pb2.CARD_STATUS_ACTIVE
        assert counter.activate(card_id, person, request_id="fin-once") == first
        again = counter.activate(card_id, person)
        assert again.financial_activated_at == first.financial_activated_at

    def test_A9_2_an_ss_function_active_already_is_taken_as_done(self, counter: Counter) -> None:
        card_id, person = active_card(counter.suite)
        state = counter.activate(card_id, person)
        assert state.HasField("financial_activated_at")
        assert counter.suite.get(card_id).status == card_pb2.CARD_STATUS_ACTIVE

    def test_A9_2_when_the_card_service_refuses_the_financial_function_stays_inactive(
        self, counter: Counter
    ) -> None:
        card_id, person = counter.ready_card()
        assert refused(lambda: counter.activate(card_id, person, request_id="fin-early")) == (
            PRECONDITION,
            "NOT_COLLECTED",
            "A8.1",
        )
        assert not counter.state(card_id).HasField("financial_activated_at")
        assert counter.suite.get(card_id).status == card_pb2.CARD_STATUS_READY
        counter.suite.collect(card_id, person, metadata=counter.counter())
        # The same request_id keeps its first answer; a new request activates both.
        assert refused(lambda: counter.activate(card_id, person, request_id="fin-early"))[1] == (
            "NOT_COLLECTED"
        )
        assert counter.activate(card_id, person).HasField("financial_activated_at")
        assert counter.suite.get(card_id).status == card_pb2.CARD_STATUS_ACTIVE


class TestFinancialPassword:
    def test_A12_3_the_financial_password_follows_the_banks_rules(self, counter: Counter) -> None:
        card_id, person = counter.collected_card()
        assert refused(lambda: counter.set_password(card_id, person, "583920"))[1:] == (
            "FINANCIAL_NOT_ACTIVATED",
            "A12.3",
        )
        counter.activate(card_id, person)
        birth = person.number[8:14]
        for weak in ("111111", "123456", "987654", birth):
            code, reason, rule = refused(lambda w=weak: counter.set_password(card_id, person, w))
            assert (code, reason, rule) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "WEAK_FINANCIAL_PASSWORD",
                "A12.3",
            )
        assert counter.set_password(card_id, person, "583920").card_id == card_id
        assert counter.state(card_id).financial_password_set
        assert refused(lambda: counter.set_password(card_id, person, "583921"))[1] == (
            "FINANCIAL_PASSWORD_ALREADY_SET"
        )
        assert counter.verify(card_id, "583920").valid

    def test_A12_3_five_wrong_tries_lock_until_reset_at_the_counter(self, counter: Counter) -> None:
        card_id, person = counter.active()
        counter.set_password(card_id, person, "583920")
        for _ in range(4):
            assert refused(lambda: counter.change_password(card_id, "000001", "602817"))[1:] == (
                "FINANCIAL_PASSWORD_REJECTED",
                "A12.3",
            )
        assert counter.verify(card_id, "000002").tries_left == 0
        locked = counter.verify(card_id, "583920")
        assert (locked.valid, locked.locked) == (False, True)
        assert refused(lambda: counter.change_password(card_id, "583920", "602817"))[1:] == (
            "FINANCIAL_PASSWORD_LOCKED",
            "A12.3",
        )
        counter.reset_password(card_id, person, "602817")
        fresh = counter.verify(card_id, "602817")
        assert (fresh.valid, fresh.locked, fresh.tries_left) == (True, False, 5)
        counter.change_password(card_id, "602817", "715938")
        assert counter.verify(card_id, "715938").valid
        assert not counter.verify(card_id, "602817").valid

    def test_A12_1_the_financial_and_service_passwords_are_independent(
        self, counter: Counter
    ) -> None:
        card_id, person = counter.active()
        suite = counter.suite
        suite.card.ResetServicePassword(
            card_pb2.ResetServicePasswordRequest(
                request_id=suite.rid("spw"),
                card_id=card_id,
                document=person.document(),
                new_password="246813",
            ),
            metadata=suite.at(Channel.ONLINE, person),
        )
        counter.set_password(card_id, person, "583920")
        assert counter.verify_service_password(card_id, "246813")
        assert not counter.verify(card_id, "246813").valid

        counter.change_password(card_id, "583920", "602817")
        assert counter.verify_service_password(card_id, "246813")
        assert not counter.verify_service_password(card_id, "602817")

        suite.card.ChangeServicePassword(
            card_pb2.ChangeServicePasswordRequest(
                request_id=suite.rid("spw"),
                card_id=card_id,
                old_password="246813",
                new_password="135792",
            ),
            metadata=suite.at(Channel.ONLINE, person),
        )
        assert counter.verify(card_id, "602817").valid
        assert not counter.verify(card_id, "135792").valid


class TestLossAndPhone:
    def test_A13_4_A20_1_the_financial_function_is_lost_and_unlocked_at_the_issuing_bank(
        self, counter: Counter
    ) -> None:
        card_id, person = counter.active()
        suite = counter.suite
        district = suite.at(Channel.DISTRICT_OUTLET, outlet_id="dongcheng-01")
        assert refused(lambda: counter.loss(card_id, person, district)) == (
            DENIED,
            "CHANNEL_NOT_ALLOWED",
            "A3.1",
        )
        other = suite.branch(OTHER_BANK, OTHER_INSTANT)
        assert refused(lambda: counter.loss(card_id, person, other))[1:] == (
            "CHANNEL_NOT_ALLOWED",
            "A3.1",
        )
        lost = counter.loss(card_id, person)
        assert (lost.loss, lost.HasField("suspended_at")) == (bank_pb2.LOSS_KIND_FORMAL_LOSS, True)
        assert counter.loss(card_id, person).suspended_at == lost.suspended_at
        # The financial function only: the SS function is untouched.
        assert suite.get(card_id).status == card_pb2.CARD_STATUS_ACTIVE

        assert refused(lambda: counter.unlock(card_id, person, district)) == (
            DENIED,
            "CHANNEL_NOT_ALLOWED",
            "A3.1",
        )
        online = suite.at(Channel.ONLINE, person)
        assert refused(lambda: counter.unlock(card_id, person, online)) == (
            DENIED,
            "ROLE_NOT_ALLOWED",
            "",
        )
        unlocked = counter.unlock(card_id, person)
        assert unlocked.loss == bank_pb2.LOSS_KIND_UNSPECIFIED
        assert not unlocked.HasField("suspended_at")
        assert counter.state(card_id).loss == bank_pb2.LOSS_KIND_UNSPECIFIED

    def test_A20_1_an_agent_reports_the_financial_function_lost_but_the_holder_unlocks_it(
        self, counter: Counter
    ) -> None:
        """持卡人办理社会保障卡金融功能挂失、解挂、注销、代办……按照发卡合作银行的规定执行 (A20.1);
        the bank's rules take A24's limits: an agent may report a loss, with its own document, the
        holder's and the holder's written authorisation (A24.2), but not unlock."""
        card_id, person = counter.active()
        stranger = common_pb2.IdentityDocument(
            type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=resident_id()
        )
        agent = bank_pb2.CounterAgent(
            agent_document=stranger, agent_name="李四", authorisation_ref="AUTH-3"
        )
        nameless = bank_pb2.CounterAgent(agent_document=stranger, authorisation_ref="AUTH-3")
        assert refused(lambda: counter.loss(card_id, person, agent=nameless)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "AGENT_DOCUMENTS_MISSING",
            "A24.2",
        )
        assert counter.state(card_id).loss == bank_pb2.LOSS_KIND_UNSPECIFIED
        someone = counter.suite.person()
        assert refused(lambda: counter.loss(card_id, someone, agent=agent)) == (
            PRECONDITION,
            "IDENTITY_MISMATCH",
            "A13.4",
        )
        assert counter.loss(card_id, person, agent=agent).loss == bank_pb2.LOSS_KIND_FORMAL_LOSS

        assert refused(lambda: counter.unlock(card_id, person, agent=agent)) == (
            DENIED,
            "AGENT_NOT_ALLOWED",
            "A20.1",
        )
        assert counter.state(card_id).loss == bank_pb2.LOSS_KIND_FORMAL_LOSS
        assert counter.unlock(card_id, person).loss == bank_pb2.LOSS_KIND_UNSPECIFIED

    def test_A20_1_the_reserved_phone_is_changed_at_the_counter_and_shown_masked(
        self, counter: Counter
    ) -> None:
        card_id, person = counter.active()

        def change(phone: str, metadata: Any = None) -> bank_pb2.AccountState:
            return counter.stub.ChangeReservedPhone(
                cpb.ChangeReservedPhoneRequest(
                    request_id=counter.suite.rid("phone"),
                    card_id=card_id,
                    document=person.document(),
                    phone=phone,
                ),
                metadata=metadata or counter.counter(),
            )

        state = change("13912345678")
        assert state.reserved_phone_masked == "139****5678"
        assert "13912345678" not in str(state)
        assert counter.state(card_id).reserved_phone_masked == "139****5678"
        code, reason, _ = refused(lambda: change("139123"))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
        district = counter.suite.at(Channel.DISTRICT_OUTLET, outlet_id="dongcheng-01")
        assert refused(lambda: change("13700000000", district))[1:] == (
            "CHANNEL_NOT_ALLOWED",
            "A3.1",
        )
        online = counter.suite.at(Channel.ONLINE, person)
        assert refused(lambda: change("13700000000", online)) == (DENIED, "ROLE_NOT_ALLOWED", "")
