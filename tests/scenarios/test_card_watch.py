"""Following a saga as it happens (CardService.WatchSaga): an application watched to its end,
a stream lost mid-way and resumed from the last sequence received, the drain ending streams,
and who may watch whose."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from itertools import groupby, pairwise
from typing import Any

import grpc

from services.bank.main import build as build_bank
from services.platform.auth import Channel, Role
from services.platform.grpc_errors import from_rpc_error
from sscard.card.v1 import card_pb2 as pb
from tests.cardsuite import Suite, rpc_error
from tests.support import wait_serving


def watch(suite: Suite, saga_id: str, after: int = 0, metadata: Any = None) -> Any:
    return suite.card.WatchSaga(
        pb.WatchSagaRequest(saga_id=saga_id, after_sequence=after),
        metadata=metadata or suite.ops,
        timeout=60,
    )


def waiting_suite(
    start: Callable[..., Any], token: Callable[..., Any], env: dict[str, str]
) -> Suite:
    """A suite whose bank is down, so an application waits at open_account, retrying."""
    env["SSCARD_SAGA_MAX_RETRIES"] = "1000"
    suite = Suite(start, token)
    suite.bank_server.server.stop(0)
    return suite


def test_A5_1_an_application_is_watched_from_its_first_step_to_its_outcome(suite: Suite) -> None:
    suite.settle(suite.apply(suite.person()).card_id)  # another saga's events share the log
    person = suite.person()
    started = suite.apply(person)
    events = list(watch(suite, started.saga_id, metadata=suite.at(Channel.ONLINE, person)))
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    seen = [(e.state, e.step, e.retries) for e in events]
    assert all(a != b for a, b in pairwise(seen)), "an event that says nothing new"
    steps = [state_step for state_step, _ in groupby((e.state, e.step) for e in events)]
    assert steps == [  # each step once, whatever a transport failure retried
        (pb.SAGA_STATE_RUNNING, "reserve_issuance"),
        (pb.SAGA_STATE_RUNNING, "open_account"),
        (pb.SAGA_STATE_RUNNING, "order_card"),
        (pb.SAGA_STATE_COMPLETED, "completed"),
    ]
    last = events[-1]
    assert (last.state, last.step, last.final) == (pb.SAGA_STATE_COMPLETED, "completed", True)
    assert not any(e.final for e in events[:-1])
    assert {e.saga_id for e in events} == {started.saga_id}
    assert {e.card_id for e in events} == {started.card_id}
    # watched again after its end: the same events, then the stream ends; past the last, none
    assert list(watch(suite, started.saga_id)) == events
    assert list(watch(suite, started.saga_id, after=last.sequence)) == []


def test_A4_2_a_refused_saga_ends_the_stream_with_its_refusal(suite: Suite) -> None:
    started = suite.apply(suite.person(insured=False))
    last = list(watch(suite, started.saga_id))[-1]
    assert (last.state, last.final) == (pb.SAGA_STATE_FAILED, True)
    assert (last.refusal_reason, last.refusal_rule) == ("NOT_ELIGIBLE", "A2.3")


def test_a_stream_lost_mid_way_resumes_from_the_last_sequence_without_loss_or_repeat(
    start_service: Callable[..., Any], token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    suite = waiting_suite(start_service, token, service_env)
    started = suite.apply(suite.person())
    stream = watch(suite, started.saga_id)
    first: list[Any] = []
    for event in stream:  # live: the saga retries open_account while the bank is down
        first.append(event)
        if event.retries >= 2:
            break
    stream.cancel()  # the client goes away mid-way
    assert first[-1].step == "open_account"
    assert "DEPENDENCY_UNAVAILABLE" in first[-1].last_error
    bank = start_service("bank", build_bank, migrate=False)
    wait_serving(bank.channel)
    rest = list(watch(suite, started.saga_id, after=first[-1].sequence))
    seen = first + rest
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    assert (rest[-1].state, rest[-1].final) == (pb.SAGA_STATE_COMPLETED, True)
    assert list(watch(suite, started.saga_id)) == seen


def test_the_drain_ends_a_stream_with_a_status_that_says_watch_again(
    start_service: Callable[..., Any], token: Callable[..., Any], service_env: dict[str, str]
) -> None:
    suite = waiting_suite(start_service, token, service_env)
    started = suite.apply(suite.person())
    stream: Iterator[Any] = watch(suite, started.saga_id)
    assert next(stream).sequence == 1
    stopping = threading.Thread(target=suite.card_server.server.stop, kwargs={"grace": 5})
    stopping.start()
    error = rpc_error(lambda: list(stream))
    stopping.join()
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert from_rpc_error(error).reason == "WATCH_INTERRUPTED"


def test_A18_1_a_person_watches_only_their_own_and_an_employer_only_its_batches(
    suite: Suite,
) -> None:
    owner, stranger = suite.person(), suite.person()
    started = suite.apply(owner)
    others = (
        suite.at(Channel.ONLINE, stranger),
        suite.token(channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller="91110000100000000A"),
    )
    for metadata in others:
        error = rpc_error(lambda m=metadata: list(watch(suite, started.saga_id, metadata=m)))
        assert error.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        assert from_rpc_error(error).reason == "SAGA_NOT_FOUND"
    error = rpc_error(lambda: list(watch(suite, "saga-unknown")))
    assert from_rpc_error(error).reason == "SAGA_NOT_FOUND"
    factory = rpc_error(lambda: list(watch(suite, started.saga_id, metadata=suite.factory)))
    assert from_rpc_error(factory).reason == "ROLE_NOT_ALLOWED"
    assert list(watch(suite, started.saga_id, metadata=suite.at(Channel.ONLINE, owner)))[-1].final
