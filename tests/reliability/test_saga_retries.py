"""A saga whose dependency stays down gives up retrying and waits, visibly, for an operator,
who resumes it once the dependency is back; a dependency back after a short outage is used
again without anyone's help."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from sqlalchemy.orm import Session

from services.bank.main import build as build_bank
from services.card import store as card_store
from services.platform.audit import AuditTrail
from services.platform.auth import Role
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from tests.cardsuite import Suite, reason_rule, rpc_error
from tests.support import wait_serving


def _stuck(suite: Suite, ops: Any, card_id: str) -> pb.Saga:
    """The card's saga once it has given up retrying and waits for an operator."""
    saga = ops.ListSagas(pb.ListSagasRequest(card_id=card_id), metadata=suite.ops).sagas[0]
    deadline = time.monotonic() + 60
    while saga.state != pb.SAGA_STATE_NEEDS_ATTENTION:
        assert saga.state == pb.SAGA_STATE_RUNNING, saga
        assert time.monotonic() < deadline, "the saga never gave up retrying"
        time.sleep(0.1)
        saga = ops.GetSaga(pb.GetSagaRequest(saga_id=saga.saga_id), metadata=suite.ops)
    return saga


def _steps(saga: pb.Saga) -> list[tuple[str, int, bool, bool]]:
    """Each step: name, state, and whether it has a time done and a time undone."""
    return [(s.name, s.state, s.HasField("done_at"), s.HasField("undone_at")) for s in saga.steps]


def _suite(
    start: Callable[..., Any], token: Callable[..., Any], env: dict[str, str], retries: str
) -> Suite:
    env["SSCARD_SAGA_MAX_RETRIES"] = retries
    return Suite(start, token)


def test_a_saga_whose_bank_stays_down_waits_for_an_operator_who_resumes_it(
    start_service: Callable[..., Any], token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    suite = _suite(start_service, token, service_env, "3")
    ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
    person = suite.person()
    suite.bank_server.server.stop(0)
    card_id = suite.apply(person).card_id

    saga = _stuck(suite, ops, card_id)
    assert saga.retries == 3
    assert saga.step == "open_account"
    assert _steps(saga) == [
        ("reserve_issuance", pb.SAGA_STEP_STATE_STEP_DONE, True, False),
        ("record_verified", pb.SAGA_STEP_STATE_STEP_DONE, True, False),
        ("open_account", pb.SAGA_STEP_STATE_STEP_CURRENT, False, False),
        ("order_card", pb.SAGA_STEP_STATE_STEP_PENDING, False, False),
        ("in_production", pb.SAGA_STEP_STATE_STEP_PENDING, False, False),
    ]
    assert "DEPENDENCY_UNAVAILABLE" in saga.last_error
    listed = ops.ListSagas(
        pb.ListSagasRequest(state=pb.SAGA_STATE_NEEDS_ATTENTION), metadata=suite.ops
    ).sagas
    assert [s.saga_id for s in listed] == [saga.saga_id]
    time.sleep(1)  # nothing retries it on its own any more
    again = ops.GetSaga(pb.GetSagaRequest(saga_id=saga.saga_id), metadata=suite.ops)
    assert (again.state, again.retries) == (pb.SAGA_STATE_NEEDS_ATTENTION, 3)

    bank = start_service("bank", build_bank, migrate=False)
    wait_serving(bank.channel)
    resumed = ops.RetrySaga(
        pb.RetrySagaRequest(request_id="retry-1", saga_id=saga.saga_id), metadata=suite.ops
    )
    assert resumed.state == pb.SAGA_STATE_RUNNING
    assert resumed.retries == 0
    assert suite.settle(card_id).state == pb.SAGA_STATE_COMPLETED


def test_a_bank_back_after_an_outage_is_used_without_an_operator(
    start_service: Callable[..., Any], token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    suite = _suite(start_service, token, service_env, "1000")
    ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
    person = suite.person()
    suite.bank_server.server.stop(0)
    card_id = suite.apply(person).card_id
    saga = ops.ListSagas(pb.ListSagasRequest(card_id=card_id), metadata=suite.ops).sagas[0]
    deadline = time.monotonic() + 60
    while saga.retries < 8:  # past the backoff's cap
        assert time.monotonic() < deadline
        time.sleep(0.2)
        saga = ops.GetSaga(pb.GetSagaRequest(saga_id=saga.saga_id), metadata=suite.ops)
    bank = start_service("bank", build_bank, migrate=False)
    wait_serving(bank.channel)
    assert suite.settle(card_id, timeout=30).state == pb.SAGA_STATE_COMPLETED


def test_an_operator_compensates_a_stuck_saga_and_the_person_may_apply_again(
    start_service: Callable[..., Any], token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    suite = _suite(start_service, token, service_env, "2")
    ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
    staff = token(roles=(Role.OPS,), caller="ops-console", operator_id="staff-li")
    person = suite.person()
    suite.bank_server.server.stop(0)
    card_id = suite.apply(person).card_id
    saga = _stuck(suite, ops, card_id)

    request = pb.CompensateSagaRequest(request_id="give-up-1", saga_id=saga.saga_id)
    answer = ops.CompensateSaga(request, metadata=staff)
    assert answer.state in (pb.SAGA_STATE_COMPENSATING, pb.SAGA_STATE_FAILED)
    assert ops.CompensateSaga(request, metadata=staff) == answer  # the same answer, once
    application = suite.settle(card_id)
    assert (application.state, application.refusal_reason) == (
        pb.SAGA_STATE_FAILED,
        "OPERATOR_COMPENSATED",
    )
    failed = ops.GetSaga(pb.GetSagaRequest(saga_id=saga.saga_id), metadata=suite.ops)
    assert _steps(failed)[:3] == [
        ("reserve_issuance", pb.SAGA_STEP_STATE_STEP_UNDONE, True, True),
        ("record_verified", pb.SAGA_STEP_STATE_STEP_UNDONE, True, True),
        ("open_account", pb.SAGA_STEP_STATE_STEP_PENDING, False, False),
    ]
    error = rpc_error(
        lambda: ops.CompensateSaga(
            pb.CompensateSagaRequest(request_id="give-up-2", saga_id=saga.saga_id), metadata=staff
        )
    )
    assert reason_rule(error)[0] == "SAGA_FINISHED"

    # The identity reservation was released: the person's next application goes through.
    bank = start_service("bank", build_bank, migrate=False)
    wait_serving(bank.channel)
    again = suite.apply(person).card_id
    assert suite.settle(again).state == pb.SAGA_STATE_COMPLETED

    with Session(suite.card_server.deps.db.engine) as session:
        rows = AuditTrail(card_store.metadata).rows(session, card_id=card_id)
    [given_up] = [r.item for r in rows if r.item.method == "CompensateSaga"]
    assert (given_up.client_id, given_up.operator_id, given_up.outcome) == (
        "ops-console",
        "staff-li",
        "OK",
    )


def test_a_saga_still_at_work_is_not_compensated(
    start_service: Callable[..., Any], token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    suite = _suite(start_service, token, service_env, "1000")
    ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
    person = suite.person()
    suite.bank_server.server.stop(0)
    card_id = suite.apply(person).card_id
    saga = ops.ListSagas(pb.ListSagasRequest(card_id=card_id), metadata=suite.ops).sagas[0]
    request = pb.CompensateSagaRequest(request_id="give-up-1", saga_id=saga.saga_id)
    error = rpc_error(lambda: ops.CompensateSaga(request, metadata=suite.ops))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_rule(error)[0] == "SAGA_NOT_WAITING"
