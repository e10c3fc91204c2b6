"""The identity service under load and races, over real gRPC on both databases: a large import
reports every record, and concurrent reservations never give one person two cards (A4.2)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from services.identity.main import build
from services.platform.auth import Role
from sscard.identity.v1 import identity_pb2 as pb
from sscard.identity.v1 import identity_pb2_grpc
from tests.support import PersonSpec, refusal, wait_serving


@pytest.fixture
def stub_and_tokens(
    start_service: Callable[..., Any], token: Callable[..., Any]
) -> tuple[identity_pb2_grpc.IdentityServiceStub, Any, Any]:
    running = start_service("identity", build)
    wait_serving(running.channel)
    return (
        identity_pb2_grpc.IdentityServiceStub(running.channel),
        token(roles=(Role.REGISTRY,), caller="hr-feed"),
        token(roles=(Role.SERVICE,), caller="card-service"),
    )


def test_A4_1_an_import_of_thousands_reports_every_record_in_order(
    stub_and_tokens: tuple[Any, Any, Any],
) -> None:
    stub, registry, _ = stub_and_tokens
    people = [PersonSpec(number="") for _ in range(5000)]
    for i, person in enumerate(people):
        person.number = _unique_id(i)
    people[1234].name = ""  # one malformed record
    requests = (
        pb.ImportPersonsRequest(batch_id="big-1", records=[p.record() for p in people[i : i + 700]])
        for i in range(0, len(people), 700)
    )
    answer = stub.ImportPersons(requests, metadata=registry, timeout=300)
    assert (answer.received, answer.created, answer.rejected) == (5000, 4999, 1)
    assert [r.index for r in answer.results] == list(range(5000))
    assert answer.results[1234].outcome == pb.IMPORT_OUTCOME_REJECTED
    assert answer.results[1234].violations[0].field == "name"
    again = stub.ImportPersons(
        (pb.ImportPersonsRequest(batch_id="big-2", records=[p.record()]) for p in people[:100]),
        metadata=registry,
    )
    assert again.unchanged == 100


def _unique_id(i: int) -> str:
    import datetime as dt

    from tests.support import resident_id

    birth = dt.date(1950, 1, 1) + dt.timedelta(days=i // 900)
    return resident_id(birth, seq=(i % 900) + 1)


def test_A4_2_concurrent_applications_for_one_person_give_exactly_one_card(
    stub_and_tokens: tuple[Any, Any, Any],
) -> None:
    stub, registry, service = stub_and_tokens
    person = PersonSpec()
    stub.ImportPersons(
        iter([pb.ImportPersonsRequest(batch_id="one", records=[person.record()])]),
        metadata=registry,
    )
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def apply(n: int) -> None:
        start.wait()
        try:
            stub.ReserveIssuance(
                pb.ReserveIssuanceRequest(
                    request_id=f"race-{n}",
                    document=person.document(),
                    name=person.name,
                    card_id=f"card-{n}",
                    kind=pb.ISSUANCE_KIND_FIRST,
                ),
                metadata=service,
                timeout=30,
            )
            outcomes.append("ok")
        except grpc.RpcError as exc:
            code, error = refusal(type("E", (), {"value": exc})())
            outcomes.append(error.reason if code != grpc.StatusCode.ABORTED else "ABORTED")

    threads = [threading.Thread(target=apply, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1
    assert set(outcomes) <= {"ok", "ALREADY_HAS_CARD"}
