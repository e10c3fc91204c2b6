"""Operations read the card service's sagas and deadlines (role `ops`), over real gRPC on both
databases: the A13.3 loss expiry is a deadline that shows pending, overdue, then fired."""

from __future__ import annotations

import datetime as dt

import grpc

from services.platform.auth import Channel
from services.platform.clock import SharedTestClock
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from tests.cardsuite import (
    Suite,
    active_card,
    hotline_loss,
    reason_rule,
    rpc_error,
    wait_until,
)


def ops_stub(suite: Suite) -> card_pb2_grpc.OpsServiceStub:
    return card_pb2_grpc.OpsServiceStub(suite.card_server.channel)


def test_sagas_are_listed_by_state_and_paged(suite: Suite) -> None:
    ops = ops_stub(suite)
    holder = suite.person()
    first = suite.apply(holder)
    suite.settle(first.card_id)
    refused = suite.apply(suite.person(insured=False))  # A2.3: refused by identity, compensated
    suite.settle(refused.card_id)
    failed = ops.ListSagas(
        pb.ListSagasRequest(state=pb.SAGA_STATE_FAILED), metadata=suite.ops
    ).sagas
    assert [(s.card_id, s.refusal_reason, s.refusal_rule, s.step) for s in failed] == [
        (refused.card_id, "NOT_ELIGIBLE", "A2.3", "failed")
    ]
    page = ops.ListSagas(pb.ListSagasRequest(page_size=1), metadata=suite.ops)
    rest = ops.ListSagas(
        pb.ListSagasRequest(page_size=1, page_token=page.next_page_token), metadata=suite.ops
    )
    assert {page.sagas[0].saga_id, rest.sagas[0].saga_id} == {first.saga_id, refused.saga_id}
    saga = ops.GetSaga(pb.GetSagaRequest(saga_id=first.saga_id), metadata=suite.ops)
    assert (saga.kind, saga.state, saga.step) == (
        "application",
        pb.SAGA_STATE_COMPLETED,
        "completed",
    )
    denied = rpc_error(
        lambda: ops.GetSaga(
            pb.GetSagaRequest(saga_id=first.saga_id), metadata=suite.at(Channel.HOTLINE)
        )
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert reason_rule(denied)[0] == "ROLE_NOT_ALLOWED"


def test_A13_3_the_loss_expiry_is_a_deadline_operations_can_follow(
    suite: Suite, test_clock: SharedTestClock
) -> None:
    ops = ops_stub(suite)
    card_id, person = active_card(suite)
    hotline_loss(suite, card_id, person)
    pending = ops.ListDeadlines(pb.ListDeadlinesRequest(rule="A13.3"), metadata=suite.ops)
    assert [(d.target, d.state, d.overdue) for d in pending.deadlines] == [
        (card_id, pb.DEADLINE_STATE_PENDING, False)
    ]
    test_clock.advance(dt.timedelta(days=16))

    def fired() -> bool:
        answer = ops.ListDeadlines(
            pb.ListDeadlinesRequest(rule="A13.3", state=pb.DEADLINE_STATE_FIRED), metadata=suite.ops
        )
        return [d.target for d in answer.deadlines] == [card_id]

    wait_until(fired)
    done = ops.ListDeadlines(
        pb.ListDeadlinesRequest(state=pb.DEADLINE_STATE_FIRED), metadata=suite.ops
    )
    assert done.deadlines[0].outcome == "SS function restored"
    overdue = ops.ListDeadlines(pb.ListDeadlinesRequest(overdue_only=True), metadata=suite.ops)
    assert list(overdue.deadlines) == []
