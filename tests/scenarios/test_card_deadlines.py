"""Deadlines the regulation sets, fired by the card service's scheduler as the shared test clock
moves, over real gRPC on both databases: production time (A22.1, A22.2, A22.4) and employers'
hand-out and return (A7.4)."""

from __future__ import annotations

import datetime as dt

import grpc

from services.platform.auth import Channel, Role
from services.platform.clock import BEIJING, SharedTestClock
from services.platform.slices import slices
from sscard.bank.v1 import bank_pb2
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from tests.cardsuite import (
    BANK,
    EMPLOYER_ID,
    INSTANT,
    OTHER_BANK,
    OTHER_INSTANT,
    Suite,
    reason_rule,
    rpc_error,
    wait_until,
)
from tests.support import PersonSpec


def deadlines(suite: Suite, **filters: object) -> list[pb.Deadline]:
    ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
    answer = ops.ListDeadlines(pb.ListDeadlinesRequest(**filters), metadata=suite.ops)  # type: ignore[arg-type]
    return list(answer.deadlines)


def test_A22_1_A22_4_a_card_not_made_by_its_due_date_is_flagged_with_how_late(
    suite: Suite, test_clock: SharedTestClock
) -> None:
    started = suite.apply(suite.person())
    suite.settle(started.card_id)
    [deadline] = deadlines(suite, rule="A22.1")
    assert (deadline.target, deadline.state) == (started.card_id, pb.DEADLINE_STATE_PENDING)
    test_clock.advance(dt.timedelta(days=33))
    wait_until(lambda: deadlines(suite, rule="A22.1", state=pb.DEADLINE_STATE_FIRED) != [])
    [fired] = deadlines(suite, rule="A22.1")
    assert fired.outcome.startswith("flagged: ")
    assert int(fired.outcome.split()[1]) >= 2  # days late
    notices = suite.get(started.card_id, history=True).notices
    assert [(n.recipient, n.rule) for n in notices] == [("operations", "A22.1")]


def test_A22_4_a_card_made_in_time_is_not_flagged_however_slow_the_post(
    suite: Suite, test_clock: SharedTestClock
) -> None:
    started = suite.apply(suite.person(), delivery=pb.DELIVERY_MAIL)
    suite.settle(started.card_id)
    suite.produce(started.card_id)
    suite.card.RecordCollection(
        pb.RecordCollectionRequest(
            request_id=suite.rid("post"),
            card_id=started.card_id,
            method=pb.COLLECTION_METHOD_MAIL_SENT,
        ),
        metadata=suite.factory,  # the factory's system reports the card mailed
    )
    test_clock.advance(dt.timedelta(days=45))
    [deadline] = deadlines(suite, rule="A22.1")
    assert (deadline.state, deadline.outcome) == (pb.DEADLINE_STATE_CANCELLED, "made")
    notices = suite.get(started.card_id, history=True).notices
    assert "operations" not in [n.recipient for n in notices]


EMPLOYER_DOCUMENTS = pb.EmployerDocuments(licence_number=EMPLOYER_ID, legal_representative=True)


def employer_collects(suite: Suite, count: int) -> tuple[list[str], list[PersonSpec]]:
    """An employer batch of ``count`` cards, made and collected by the employer."""
    people = [suite.person() for _ in range(count)]
    employer = suite.token(channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID)
    answer = suite.card.ApplyBatch(
        slices(
            pb.ApplyBatchRequest(
                request_id=suite.rid("batch"),
                employer=pb.Employer(employer_id=EMPLOYER_ID, name="Beijing Example Co."),
                bank_code=BANK,
                pickup_branch_id=INSTANT,
                applicants=[suite.applicant(p) for p in people],
            )
        ),
        metadata=employer,
    )
    card_ids = [r.card_id for r in answer.results]
    for card_id in card_ids:
        suite.settle(card_id)
        suite.produce(card_id)
        suite.card.RecordCollection(
            pb.RecordCollectionRequest(
                request_id=suite.rid("emp"),
                card_id=card_id,
                method=pb.COLLECTION_METHOD_BY_EMPLOYER,
                employer=EMPLOYER_DOCUMENTS,
            ),
            metadata=suite.branch(BANK, INSTANT),
        )
    return card_ids, people


def test_A7_4_the_30_natural_days_end_at_midnight_after_the_30th_day(
    suite: Suite, test_clock: SharedTestClock
) -> None:
    """第七条：用人单位未发放至单位职工的社会保障卡,应于30个自然日内退回发卡合作银行。"""
    collected_at = dt.datetime(2026, 3, 2, 10, 0, tzinfo=BEIJING)
    test_clock.set_offset(collected_at - dt.datetime.now(dt.UTC))
    card_ids, _ = employer_collects(suite, 2)
    [due] = {d.due_at.ToDatetime(dt.UTC) for d in deadlines(suite, rule="A7.4")}
    assert due == dt.datetime(2026, 4, 2, 0, 0, tzinfo=BEIJING)  # 1 April is the 30th day
    test_clock.advance(dt.datetime(2026, 4, 1, 23, 59, tzinfo=BEIJING) - test_clock.now())
    handed = suite.card.RecordHandout(
        pb.RecordHandoutRequest(request_id=suite.rid("hand"), card_id=card_ids[0]),
        metadata=suite.token(channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID),
    )
    assert handed.status == pb.CARD_STATUS_COLLECTED  # still in time on day 30 at 23:59
    test_clock.advance(dt.datetime(2026, 4, 2, 0, 0, tzinfo=BEIJING) - test_clock.now())
    wait_until(lambda: suite.get(card_ids[1]).status == pb.CARD_STATUS_RETURN_DUE)
    assert suite.get(card_ids[0]).status == pb.CARD_STATUS_COLLECTED
    late = suite.get(card_ids[1], history=True)
    assert late.transitions[-1].rule == "A7.4"
    assert ("employer", "A7.4") in [(n.recipient, n.rule) for n in late.notices]
    states = {d.target: d.state for d in deadlines(suite, rule="A7.4")}
    assert states == {
        card_ids[0]: pb.DEADLINE_STATE_CANCELLED,
        card_ids[1]: pb.DEADLINE_STATE_FIRED,
    }


def test_A7_4_a_returned_card_waits_at_the_branch_for_its_holder(
    suite: Suite, test_clock: SharedTestClock
) -> None:
    """第七条：用人单位未发放至单位职工的社会保障卡,应于30个自然日内退回发卡合作银行。"""
    test_clock.set_offset(dt.datetime(2026, 3, 2, 10, 0, tzinfo=BEIJING) - dt.datetime.now(dt.UTC))
    [late, early], [late_holder, early_holder] = employer_collects(suite, 2)

    def give_back(card_id: str, documents: pb.EmployerDocuments, bank: str = BANK) -> pb.Card:
        return suite.card.RecordEmployerReturn(
            pb.RecordEmployerReturnRequest(
                request_id=suite.rid("return"), card_id=card_id, employer=documents
            ),
            metadata=suite.branch(bank, INSTANT if bank == BANK else OTHER_INSTANT),
        )

    def taken_back(card_id: str) -> bool:
        try:
            recall = suite.bank.GetCardRecall(
                bank_pb2.GetCardRecallRequest(card_id=card_id), metadata=suite.service
            )
        except grpc.RpcError:
            return False
        return bool(recall.reason == bank_pb2.RECALL_REASON_RETURNED_BY_EMPLOYER)

    assert (
        give_back(early, EMPLOYER_DOCUMENTS).status == pb.CARD_STATUS_READY
    )  # back while still in time
    test_clock.advance(dt.timedelta(days=31))
    wait_until(lambda: suite.get(late).status == pb.CARD_STATUS_RETURN_DUE)
    elsewhere = rpc_error(lambda: give_back(late, EMPLOYER_DOCUMENTS, OTHER_BANK))
    assert reason_rule(elsewhere) == ("CHANNEL_NOT_ALLOWED", "A3.1")
    unsigned = rpc_error(lambda: give_back(late, pb.EmployerDocuments(licence_number=EMPLOYER_ID)))
    assert reason_rule(unsigned) == ("EMPLOYER_DOCUMENTS_MISSING", "A7.4")
    returned = give_back(late, EMPLOYER_DOCUMENTS)
    assert (returned.status, returned.pickup_branch_id) == (pb.CARD_STATUS_READY, INSTANT)
    wait_until(lambda: taken_back(late) and taken_back(early))
    notices = suite.get(late, history=True).notices
    assert ("person", "A7.4") in [(n.recipient, n.rule) for n in notices]
    again = rpc_error(
        lambda: suite.card.RecordHandout(
            pb.RecordHandoutRequest(request_id=suite.rid("hand"), card_id=late),
            metadata=suite.token(
                channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID
            ),
        )
    )
    assert reason_rule(again) == ("NOT_WITH_EMPLOYER", "A7.3")
    for card_id, holder in ((late, late_holder), (early, early_holder)):
        suite.collect(card_id, holder, metadata=suite.branch(BANK, INSTANT))
        assert suite.activate(card_id, holder).status == pb.CARD_STATUS_ACTIVE
    states = {d.target: d.state for d in deadlines(suite, rule="A7.4")}
    assert states == {late: pb.DEADLINE_STATE_FIRED, early: pb.DEADLINE_STATE_CANCELLED}
