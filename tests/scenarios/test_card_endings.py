"""The ends of a card's life, over real gRPC on both databases, moved by the shared test clock:
a holder's death reaches the card service by itself (A21.2), a card never handed out is taken
back after 6 months (A21.1), and the 6-month lock after a change of issuing bank ends (A16.7)."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.type.date_pb2 import Date

from services.platform.auth import Channel, Role
from services.platform.calendar import WorkingDayCalendar
from services.platform.clock import BEIJING, SharedTestClock, beijing_date, day_after
from sscard.bank.v1 import bank_pb2, ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from sscard.identity.v1 import identity_pb2
from sscard.transit.v1 import transit_pb2
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
from tests.scenarios.test_card_deadlines import deadlines
from tests.scenarios.test_card_in_use import loss
from tests.scenarios.test_card_replacement import hand_over, replace
from tests.support import PersonSpec


def record_death(suite: Suite, person: PersonSpec, request_id: str) -> None:
    suite.identity.RecordDeath(
        identity_pb2.RecordDeathRequest(
            request_id=request_id,
            person=identity_pb2.PersonRef(document=person.document()),
            date_of_death=Date(year=2026, month=11, day=20),
        ),
        metadata=suite.token(roles=(Role.REGISTRY,), caller="hr-feed"),
    )


def due(deadline: pb.Deadline) -> dt.datetime:
    return deadline.due_at.ToDatetime(dt.UTC)


def beijing_day(stamp: Timestamp) -> dt.date:
    return beijing_date(stamp.ToDatetime(dt.UTC))


def status(suite: Suite, card_id: str) -> int:
    return suite.get(card_id).status


def recall_reason(suite: Suite, card_id: str) -> int:
    """Why the bank took the card back; 0 while it has not."""
    try:
        answer = suite.bank.GetCardRecall(
            bank_pb2.GetCardRecallRequest(card_id=card_id), metadata=suite.ops
        )
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
        return 0
    return answer.reason


def order_status(suite: Suite, card_id: str) -> int:
    order = suite.bank.GetProductionOrder(
        bank_pb2.GetProductionOrderRequest(card_id=card_id), metadata=suite.ops
    )
    return order.status


def non_counter_suspensions(suite: Suite, card_id: str) -> list[int]:
    ledger = ledger_pb2_grpc.LedgerServiceStub(suite.bank_server.channel)
    balance = ledger.GetBalance(ledger_pb2.GetBalanceRequest(card_id=card_id), metadata=suite.ops)
    return list(balance.non_counter_suspensions)


class TestDeath:
    def test_A21_2_a_card_not_yet_handed_out_stops_and_the_bank_must_take_it_back(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        """通过与相关业务系统对比确认的已死亡人员卡,合作银行应在收到社会保障卡管理系统提醒后终止发放,
        并于10个工作日内完成回收工作。"""
        person = suite.person()
        started = suite.apply(person)
        suite.settle(started.card_id)  # in production at the bank
        record_death(suite, person, "death-a212")
        wait_until(lambda: status(suite, started.card_id) == pb.CARD_STATUS_WITHDRAWN)
        wait_until(lambda: order_status(suite, started.card_id) == bank_pb2.ORDER_STATUS_CANCELLED)
        # A4.2: the withdrawn card no longer holds the person's place in the register
        wait_until(lambda: suite.registered_card(person) == "")
        [deadline] = deadlines(suite, rule="A21.2")
        assert (deadline.target, deadline.state) == (started.card_id, pb.DEADLINE_STATE_PENDING)
        notices = suite.get(started.card_id, history=True).notices
        assert ("operations", "A21.2") in [(n.recipient, n.rule) for n in notices]

        # Recorded on Monday 23 November 2026: the 10th working day after it is 7 December.
        last_day = WorkingDayCalendar.from_env().add_working_days(dt.date(2026, 11, 23), 10)
        assert due(deadline) == day_after(last_day)
        assert not deadline.estimated_calendar  # 2026's schedule is the State Council's

        test_clock.set(day_after(last_day) - dt.timedelta(minutes=1))  # 23:59 on the 10th day
        with pytest.raises(TimeoutError):  # several scheduler polls: still the bank's time
            wait_until(
                lambda: deadlines(suite, rule="A21.2", state=pb.DEADLINE_STATE_FIRED) != [],
                timeout=1.0,
            )
        assert [d.overdue for d in deadlines(suite, rule="A21.2")] == [False]

        test_clock.set(day_after(last_day))
        wait_until(lambda: deadlines(suite, rule="A21.2", state=pb.DEADLINE_STATE_FIRED) != [])
        [fired] = deadlines(suite, rule="A21.2")
        assert fired.outcome == "flagged: not taken back in time"

    def test_A21_2_ten_working_days_counted_into_an_unconfirmed_year_are_shown_as_estimated(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        """并于10个工作日内完成回收工作。

        Recorded on Thursday 24 December 2026, the ten working days run into 2027, whose
        holiday schedule the calendar file only estimates: operations see the due date flagged."""
        calendar = WorkingDayCalendar.from_env()
        assert not calendar.is_confirmed(2027)
        test_clock.set(dt.datetime(2026, 12, 24, 10, 0, tzinfo=BEIJING))
        person = suite.person()
        started = suite.apply(person)
        suite.settle(started.card_id)
        record_death(suite, person, "death-a212-2027")
        wait_until(lambda: deadlines(suite, rule="A21.2") != [])
        [deadline] = deadlines(suite, rule="A21.2")
        last_day = calendar.add_working_days(dt.date(2026, 12, 24), 10)
        assert last_day.year == 2027
        assert (due(deadline), deadline.estimated_calendar) == (day_after(last_day), True)

    def test_A21_2_a_card_taken_back_in_time_is_not_flagged(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        person = suite.person()
        started = suite.apply(person, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
        suite.settle(started.card_id)  # made on the spot, waiting at the branch
        record_death(suite, person, "death-a212-b")
        wait_until(lambda: status(suite, started.card_id) == pb.CARD_STATUS_WITHDRAWN)
        suite.bank.RecallCard(
            bank_pb2.RecallCardRequest(
                request_id="recall-dead",
                card_id=started.card_id,
                reason=bank_pb2.RECALL_REASON_HOLDER_DECEASED,
            ),
            metadata=suite.ops,
        )
        [deadline] = deadlines(suite, rule="A21.2")
        test_clock.set(due(deadline))
        wait_until(lambda: deadlines(suite, rule="A21.2", state=pb.DEADLINE_STATE_FIRED) != [])
        [fired] = deadlines(suite, rule="A21.2")
        assert fired.outcome == "taken back by the bank in time"

    def test_A21_2_a_card_in_use_is_marked_for_cancellation_once_and_its_account_frozen(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        record_death(suite, person, "death-in-use")
        wait_until(lambda: status(suite, card_id) == pb.CARD_STATUS_CANCELLATION_DUE)
        record_death(suite, person, "death-in-use-again")  # recorded again: nothing new
        card = suite.get(card_id, history=True)
        marked = [t for t in card.transitions if t.rule == "A21.2"]
        assert len(marked) == 1
        answer = suite.card.QueryStatus(
            pb.QueryStatusRequest(card_id=card_id, document=person.document()),
            metadata=suite.at(Channel.HOTLINE),
        )
        assert "died" in answer.progress
        assert deadlines(suite, rule="A21.2") == []  # nothing for the bank to take back
        wait_until(
            lambda: (
                non_counter_suspensions(suite, card_id)
                == [ledger_pb2.NON_COUNTER_REASON_HOLDER_DIED]
            )
        )


class TestNotHandedOut:
    def test_A21_1_a_card_not_handed_out_in_6_months_is_withdrawn_and_taken_back(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        """具有金融功能的社会保障卡超过6个月未发放到个人的,由合作银行统一回收;"""
        person = suite.person()
        started = suite.apply(person, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
        suite.settle(started.card_id)  # made on Monday 23 November 2026
        [deadline] = deadlines(suite, rule="A21.1")
        assert deadline.state == pb.DEADLINE_STATE_PENDING
        assert beijing_day(deadline.due_at) == dt.date(2027, 5, 23)

        test_clock.set(due(deadline) - dt.timedelta(days=1))
        with pytest.raises(TimeoutError):  # several scheduler polls: nothing happens
            wait_until(lambda: status(suite, started.card_id) != pb.CARD_STATUS_READY, timeout=1.0)
        assert [d.state for d in deadlines(suite, rule="A21.1")] == [pb.DEADLINE_STATE_PENDING]

        test_clock.set(due(deadline))
        wait_until(lambda: status(suite, started.card_id) == pb.CARD_STATUS_WITHDRAWN)
        wait_until(
            lambda: recall_reason(suite, started.card_id) == bank_pb2.RECALL_REASON_NOT_HANDED_OUT
        )
        [fired] = deadlines(suite, rule="A21.1")
        assert fired.outcome == "withdrawn; the bank takes it back"
        wait_until(lambda: suite.registered_card(person) == "")  # the person may apply again
        again = suite.apply(person)
        assert suite.settle(again.card_id).state == pb.SAGA_STATE_COMPLETED

    def test_A21_1_a_card_collected_in_time_stays_with_its_holder(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        card_id, _ = active_card(suite)
        [deadline] = deadlines(suite, rule="A21.1")
        test_clock.set(due(deadline))
        wait_until(lambda: deadlines(suite, rule="A21.1", state=pb.DEADLINE_STATE_FIRED) != [])
        assert status(suite, card_id) == pb.CARD_STATUS_ACTIVE


def test_A16_7_the_holder_is_told_when_the_bank_change_lock_ends(
    suite: Suite, test_clock: SharedTestClock
) -> None:
    """持卡人更换合作银行后,原则上6个月内不允许再次变更合作银行。"""
    card_id, person = active_card(suite)
    started = suite.card.ReplaceCard(
        pb.ReplaceCardRequest(
            request_id="replace-a167",
            card_id=card_id,
            document=person.document(),
            name=person.name,
            reason=pb.REPLACEMENT_REASON_DAMAGED_FACE,
            new_bank_code=OTHER_BANK,
            delivery=pb.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=OTHER_INSTANT,
        ),
        metadata=suite.at(Channel.ONLINE, person),
    )
    [deadline] = deadlines(suite, rule="A16.7")
    assert (deadline.target, deadline.state) == (started.card_id, pb.DEADLINE_STATE_PENDING)
    assert beijing_day(deadline.due_at) == dt.date(2027, 5, 23)  # changed 23 November 2026

    def told() -> bool:
        notices = suite.get(started.card_id, history=True).notices
        return ("person", "A16.7") in [(n.recipient, n.rule) for n in notices]

    test_clock.set(due(deadline) - dt.timedelta(days=1))
    with pytest.raises(TimeoutError):  # several scheduler polls: the lock still holds
        wait_until(told, timeout=1.0)
    assert [d.state for d in deadlines(suite, rule="A16.7")] == [pb.DEADLINE_STATE_PENDING]

    test_clock.set(due(deadline))
    wait_until(lambda: deadlines(suite, rule="A16.7", state=pb.DEADLINE_STATE_FIRED) != [])
    assert told()


def cancel(
    suite: Suite, card_id: str, person: PersonSpec, metadata: object, **extra: object
) -> pb.Card:
    return suite.card.CancelCard(
        pb.CancelCardRequest(
            request_id=suite.rid("cancel"),
            card_id=card_id,
            document=person.document(),
            **extra,  # type: ignore[arg-type]
        ),
        metadata=metadata,
    )


class TestCancellation:
    def test_A19_1_a_card_is_cancelled_only_after_the_holders_business_is_settled(
        self, suite: Suite
    ) -> None:
        card_id, person = active_card(suite)
        error = rpc_error(lambda: cancel(suite, card_id, person, suite.at(Channel.DISTRICT_OUTLET)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_rule(error) == ("BUSINESS_NOT_SETTLED", "A19.1")
        assert status(suite, card_id) == pb.CARD_STATUS_ACTIVE

    def test_A19_1_A3_1_cancellation_is_not_offered_online(self, suite: Suite) -> None:
        card_id, person = active_card(suite, settled=dt.date(2026, 11, 1))
        # Online the holder has only their own credential, which cancels nothing ...
        error = rpc_error(lambda: cancel(suite, card_id, person, suite.at(Channel.ONLINE, person)))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_rule(error) == ("ROLE_NOT_ALLOWED", "")
        # ... and an operator's counter off the A3.1 row (the hotline) is refused too.
        error = rpc_error(lambda: cancel(suite, card_id, person, suite.at(Channel.HOTLINE)))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_rule(error) == ("CHANNEL_NOT_ALLOWED", "A3.1")
        assert status(suite, card_id) == pb.CARD_STATUS_ACTIVE

    def test_A19_1_A19_2_at_a_district_outlet_SS_ends_and_non_counter_stops_six_months_on(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        """鼓励合作银行在社会保障卡社会保障功能注销6个月后,通过暂停社会保障卡金融账户非柜面业务等方式,
        督促持卡人或其亲属办理社会保障卡金融账户注销。"""
        card_id, person = active_card(suite, settled=dt.date(2026, 11, 1))
        cancelled = cancel(suite, card_id, person, suite.at(Channel.DISTRICT_OUTLET))
        assert cancelled.status == pb.CARD_STATUS_SS_CANCELLED
        wait_until(lambda: suite.registered_card(person) == "")  # A4.2: the place is free
        again = cancel(suite, card_id, person, suite.at(Channel.DISTRICT_OUTLET))
        assert again.status == pb.CARD_STATUS_SS_CANCELLED
        account = suite.bank.GetAccount(
            bank_pb2.GetAccountRequest(card_id=card_id), metadata=suite.ops
        )
        assert (
            account.status == bank_pb2.ACCOUNT_STATUS_OPENED
        )  # the financial function is the bank's
        [deadline] = deadlines(suite, rule="A19.2")
        assert (deadline.target, deadline.state) == (card_id, pb.DEADLINE_STATE_PENDING)
        assert non_counter_suspensions(suite, card_id) == []
        error = rpc_error(lambda: suite.activate(card_id, person))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

        assert beijing_day(deadline.due_at) == dt.date(2027, 5, 23)  # cancelled 23 November

        test_clock.set(due(deadline) - dt.timedelta(days=1))
        with pytest.raises(TimeoutError):  # several scheduler polls: nothing is suspended
            wait_until(lambda: non_counter_suspensions(suite, card_id) != [], timeout=1.0)
        assert [d.state for d in deadlines(suite, rule="A19.2")] == [pb.DEADLINE_STATE_PENDING]

        test_clock.set(due(deadline))
        wait_until(lambda: deadlines(suite, rule="A19.2", state=pb.DEADLINE_STATE_FIRED) != [])
        wait_until(
            lambda: (
                non_counter_suspensions(suite, card_id)
                == [ledger_pb2.NON_COUNTER_REASON_SS_CANCELLED]
            )
        )

    def test_A19_1_an_agent_cancels_the_card_of_a_holder_who_died(self, suite: Suite) -> None:
        card_id, person = active_card(suite, settled=dt.date(2026, 11, 1))
        record_death(suite, person, "death-cancel")
        wait_until(lambda: status(suite, card_id) == pb.CARD_STATUS_CANCELLATION_DUE)
        heir = PersonSpec()
        agent = pb.Agent(
            agent_document=heir.document(),
            agent_name="王芳",
            principal_document=person.document(),
            authorisation_ref="estate-2026-001",
        )
        cancelled = cancel(suite, card_id, heir, suite.at(Channel.DISTRICT_OUTLET), agent=agent)
        assert cancelled.status == pb.CARD_STATUS_SS_CANCELLED


def cancellation_saga(suite: Suite, card_id: str) -> pb.Saga | None:
    ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
    found = ops.ListSagas(
        pb.ListSagasRequest(kind="cancellation", card_id=card_id), metadata=suite.ops
    ).sagas
    return found[0] if found else None


def test_A19_1_at_the_issuing_bank_the_card_its_account_and_transit_balance_end_together(
    suite: Suite,
) -> None:
    card_id, person = active_card(suite, settled=dt.date(2026, 11, 1))
    suite.transit.TopUp(
        transit_pb2.TopUpRequest(request_id="kiosk-0001", card_id=card_id, amount_fen=5_000),
        metadata=suite.at(Channel.TRANSIT_OUTLET),
    )
    cancelled = cancel(suite, card_id, person, suite.branch(), payout_destination="cash")
    assert cancelled.status == pb.CARD_STATUS_SS_CANCELLED
    wait_until(
        lambda: getattr(cancellation_saga(suite, card_id), "state", 0) == pb.SAGA_STATE_COMPLETED
    )

    wallet = suite.transit.GetBalance(
        transit_pb2.GetBalanceRequest(card_id=card_id), metadata=suite.service
    )
    assert wallet.balance_fen == 0
    ledger = ledger_pb2_grpc.LedgerServiceStub(suite.bank_server.channel)
    account = ledger.GetBalance(ledger_pb2.GetBalanceRequest(card_id=card_id), metadata=suite.ops)
    assert (account.balance_fen, account.closed) == (0, True)
    entries = ledger.ListEntries(
        ledger_pb2.ListEntriesRequest(card_id=card_id), metadata=suite.ops
    ).entries
    assert [(e.source, e.amount_fen) for e in reversed(entries)] == [
        (ledger_pb2.ENTRY_SOURCE_TRANSIT_REFUND, 5_000),
        (ledger_pb2.ENTRY_SOURCE_CLOSING_PAYOUT, -5_000),
    ]
    notices = suite.get(card_id, history=True).notices
    assert ("person", "A19.1") in [(n.recipient, n.rule) for n in notices]


def test_A19_1_a_cancellation_at_another_banks_branch_is_refused(suite: Suite) -> None:
    card_id, person = active_card(suite, settled=dt.date(2026, 11, 1))
    error = rpc_error(
        lambda: cancel(
            suite,
            card_id,
            person,
            suite.branch(OTHER_BANK, OTHER_INSTANT),
            payout_destination="cash",
        )
    )
    assert reason_rule(error) == ("CHANNEL_NOT_ALLOWED", "A3.1")
    assert status(suite, card_id) == pb.CARD_STATUS_ACTIVE


def _out_of_use(suite: Suite, card_id: str, person: PersonSpec, ending: str) -> None:
    """Take the card out of use in one of the ways its life ends or pauses."""
    outlet = suite.at(Channel.DISTRICT_OUTLET)
    if ending == "temporarily-lost":
        hotline_loss(suite, card_id, person)
    elif ending == "formally-lost":
        loss(suite, "ReportFormalLoss", card_id, person, outlet)
    elif ending == "replaced":
        successor = replace(suite, card_id, person).card_id
        suite.settle(successor)
        hand_over(suite, successor, person, old_card_id=card_id)
    elif ending == "cancelled":
        cancel(suite, card_id, person, outlet)
    else:
        record_death(suite, person, suite.rid("death"))
    wait_until(
        lambda: status(suite, card_id) not in (pb.CARD_STATUS_ACTIVE, pb.CARD_STATUS_COLLECTED)
    )


@pytest.mark.parametrize(
    "ending", ["temporarily-lost", "formally-lost", "replaced", "cancelled", "deceased"]
)
def test_A12_1_the_service_password_of_a_card_out_of_use_is_never_valid(
    suite: Suite, ending: str
) -> None:
    """服务密码为持卡人使用社会保障卡相关服务的验证密码。

    A card lost (临时挂失后,社会保障卡的社会保障功能和金融功能即时暂停), replaced (旧卡原有
    功能自持卡人启用新卡时失效), cancelled or whose holder died serves no one: its right
    password answers as a wrong one, or as a card that does not exist."""
    card_id, person = active_card(suite, settled=dt.date(2026, 11, 1))
    suite.card.ResetServicePassword(
        pb.ResetServicePasswordRequest(
            request_id=suite.rid("reset"),
            card_id=card_id,
            document=person.document(),
            new_password="135790",
            card_number=suite.card_number(card_id),
        ),
        metadata=suite.at(Channel.DISTRICT_OUTLET),
    )

    def valid(card: str, password: str) -> bool:
        answer = suite.card.VerifyServicePassword(
            pb.VerifyServicePasswordRequest(card_id=card, password=password),
            metadata=suite.service,
        )
        return bool(answer.valid)

    assert valid(card_id, "135790")
    _out_of_use(suite, card_id, person, ending)
    assert valid(card_id, "135790") is valid("card-does-not-exist", "135790") is False
