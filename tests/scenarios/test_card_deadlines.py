"""Deadlines the regulation sets, fired by the card service's scheduler as the shared test clock
moves, over real gRPC on both databases: production time (A22.1, A22.2, A22.4) and employers'
hand-out (A7.4)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.platform.auth import Channel, Role
from services.platform.clock import BEIJING, SharedTestClock
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from tests.cardsuite import BANK, EMPLOYER_ID, INSTANT, Suite, wait_until


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
    assert (deadline.target, deadline.state) == (started.card_id, pb.PENDING)
    test_clock.advance(dt.timedelta(days=33))
    wait_until(lambda: deadlines(suite, rule="A22.1", state=pb.FIRED) != [])
    [fired] = deadlines(suite, rule="A22.1")
    assert fired.outcome.startswith("flagged: ")
    assert int(fired.outcome.split()[1]) >= 2  # days late
    notices = suite.get(started.card_id, history=True).notices
    assert [(n.recipient, n.rule) for n in notices] == [("operations", "A22.1")]


def test_A22_4_a_card_made_in_time_is_not_flagged_however_slow_the_post(
    suite: Suite, test_clock: SharedTestClock
) -> None:
    started = suite.apply(suite.person(), delivery=pb.MAIL)
    suite.settle(started.card_id)
    suite.produce(started.card_id)
    suite.card.RecordCollection(
        pb.RecordCollectionRequest(
            request_id=suite.rid("post"), card_id=started.card_id, method=pb.MAIL_SENT
        ),
        metadata=suite.at(Channel.INTERNAL, roles=(Role.SERVICE,)),
    )
    test_clock.advance(dt.timedelta(days=45))
    [deadline] = deadlines(suite, rule="A22.1")
    assert (deadline.state, deadline.outcome) == (pb.CANCELLED, "made")
    notices = suite.get(started.card_id, history=True).notices
    assert "operations" not in [n.recipient for n in notices]


def test_A7_4_cards_an_employer_has_not_handed_out_in_30_days_are_marked_for_return(
    suite: Suite, test_clock: SharedTestClock
) -> None:
    """用人单位未发放至单位职工的社会保障卡,应于30个自然日内退回发卡合作银行。"""
    people = [suite.person(), suite.person()]
    answer = suite.card.ApplyBatch(
        pb.ApplyBatchRequest(
            request_id="batch-a74",
            employer=pb.Employer(employer_id=EMPLOYER_ID, name="Beijing Example Co."),
            bank_code=BANK,
            pickup_branch_id=INSTANT,
            applicants=[suite.applicant(p) for p in people],
        ),
        metadata=suite.at(Channel.ONLINE),
    )
    card_ids = [r.card_id for r in answer.results]
    for card_id in card_ids:
        suite.settle(card_id)
        suite.produce(card_id)
        suite.card.RecordCollection(
            pb.RecordCollectionRequest(
                request_id=suite.rid("emp"),
                card_id=card_id,
                method=pb.BY_EMPLOYER,
                employer=pb.EmployerDocuments(
                    licence_number=EMPLOYER_ID, legal_representative=True
                ),
            ),
            metadata=suite.branch(BANK, INSTANT),
        )
    suite.card.RecordHandout(
        pb.RecordHandoutRequest(request_id=suite.rid("hand"), card_id=card_ids[0]),
        metadata=suite.token(channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID),
    )
    # Collected on Monday 23 November 2026: the 30 days run from the 24th to the end of
    # Wednesday 23 December.
    test_clock.set(dt.datetime(2026, 12, 23, 23, 59, tzinfo=BEIJING))
    with pytest.raises(TimeoutError):  # several scheduler polls: still the employer's time
        wait_until(lambda: suite.get(card_ids[1]).status == pb.RETURN_DUE, timeout=1.0)
    assert {d.state for d in deadlines(suite, rule="A7.4")} == {pb.CANCELLED, pb.PENDING}

    test_clock.set(dt.datetime(2026, 12, 24, 0, 0, tzinfo=BEIJING))
    wait_until(lambda: suite.get(card_ids[1]).status == pb.RETURN_DUE)
    assert suite.get(card_ids[0]).status == pb.COLLECTED
    late = suite.get(card_ids[1], history=True)
    assert late.transitions[-1].rule == "A7.4"
    assert ("employer", "A7.4") in [(n.recipient, n.rule) for n in late.notices]
    states = {d.target: d.state for d in deadlines(suite, rule="A7.4")}
    assert states == {card_ids[0]: pb.CANCELLED, card_ids[1]: pb.FIRED}
