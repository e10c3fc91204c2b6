"""Application sagas survive what real deployments do to them, with real processes:
- the card-service process is SIGKILLed right after each step (and during compensation), then
  restarted: every saga completes or compensates, exactly once, with nothing left behind;
- two card-service processes share one PostgreSQL and run 200 applications side by side: no
  saga runs twice, so the bank holds exactly one account per successful application.
Identity and the bank run in-process; the card service runs as `python -m services.card`."""

from __future__ import annotations

import pytest

from sscard.card.v1 import card_pb2 as pb
from tests.cardsuite import OTHER_INSTANT
from tests.reliability.deployment import Deployment, killed

pytestmark = pytest.mark.slow

FORWARD = ["reserve_issuance", "record_verified", "open_account", "order_card", "in_production"]
BACKWARD = ["undo open_account", "undo reserve_issuance"]


@pytest.mark.parametrize("step", FORWARD)
def test_a_card_service_killed_after_any_step_completes_the_saga_on_restart(
    deployment: Deployment, step: str
) -> None:
    (person,) = deployment.people(1)
    proc, card = deployment.card_process(crash_after=step)
    card_id = deployment.apply(card, person)
    killed(proc)
    _, card = deployment.card_process()
    application = deployment.settle(card, [card_id])[card_id]
    assert application.state == pb.SAGA_STATE_COMPLETED
    assert application.card_status == pb.CARD_STATUS_IN_PRODUCTION
    assert deployment.registered(person) == card_id
    assert deployment.accounts() == 1


@pytest.mark.parametrize("step", BACKWARD)
def test_a_card_service_killed_while_compensating_leaves_nothing_behind(
    deployment: Deployment, step: str
) -> None:
    (person,) = deployment.people(1)
    proc, card = deployment.card_process(crash_after=step)
    card_id = deployment.apply(card, person, pickup=OTHER_INSTANT)  # refused at the order step
    killed(proc)
    _, card = deployment.card_process()
    application = deployment.settle(card, [card_id])[card_id]
    assert application.state == pb.SAGA_STATE_FAILED
    assert application.card_status == pb.CARD_STATUS_REFUSED
    assert deployment.registered(person) == ""
    assert deployment.accounts("OPENED") == 0


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_card_services_on_one_database_run_each_saga_once(deployment: Deployment) -> None:
    people = deployment.people(200)
    _, first = deployment.card_process()
    _, second = deployment.card_process(port=0)  # a second replica, on the port it is given
    card_ids = [
        deployment.apply(first if i % 2 else second, person) for i, person in enumerate(people)
    ]
    outcomes = deployment.settle(first, card_ids, timeout=240)
    completed = [c for c, a in outcomes.items() if a.state == pb.SAGA_STATE_COMPLETED]
    assert len(completed) == 200
    assert deployment.accounts() == deployment.accounts("OPENED") == len(completed)
    assert {deployment.registered(p) for p in people} == set(card_ids)
