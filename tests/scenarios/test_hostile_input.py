"""Hostile input over real gRPC: bytes that are not a request, request messages over the request
limit, and one client calling more than its share. Each is the caller's error, answered with
the one error mapping, and a flood of them writes a bounded number of log lines."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.message import DecodeError
from grpc_status import rpc_status

from services.platform import access
from services.platform.auth import Channel, Role
from services.platform.grpc_errors import from_rpc_error
from sscard.card.v1 import card_pb2
from sscard.identity.v1 import identity_pb2
from tests.cardsuite import BANK, EMPLOYER_ID, Suite, rpc_error
from tests.scenarios.test_no_internal_errors import DOMAINS, channels, methods

__all__ = ["channels"]  # the fixture, shared with the test of nonsense values

PAYLOADS_PER_METHOD = 1000
IN_FLIGHT = 25  # below the per-client admission limit


def _identity(data: bytes) -> bytes:
    return data


def _lawful_callers(suite: Suite) -> dict[Role, list[tuple[str, str]]]:
    person = suite.person()
    return {
        Role.SERVICE: suite.service,
        Role.OPS: suite.ops,
        Role.FACTORY: suite.factory,
        Role.REGISTRY: suite.token(roles=(Role.REGISTRY,), caller="hr-feed"),
        Role.BANK: suite.token(roles=(Role.BANK,), caller="icbc-core", bank_code=BANK),
        Role.PORTAL: suite.token(channel=Channel.ONLINE, roles=(Role.PORTAL,), caller="portal"),
        Role.EMPLOYER: suite.token(
            channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID
        ),
        Role.PERSON: suite.at(Channel.ONLINE, person),
        Role.COUNTER: suite.at(Channel.DISTRICT_OUTLET),
    }


@pytest.mark.slow
def test_random_bytes_to_every_method_are_refused_as_malformed_never_internal(
    suite: Suite, channels: dict[str, grpc.Channel], caplog: pytest.LogCaptureFixture
) -> None:
    callers = _lawful_callers(suite)
    rng = random.Random(20240601)
    caplog.set_level(logging.INFO)
    internal: list[str] = []
    decoded = malformed = 0
    for domain, method in methods():
        path = f"/{method.containing_service.full_name}/{method.name}"
        request_type = message_factory.GetMessageClass(method.input_type)
        metadata = callers[min(access.MATRIX[path])]  # a credential entitled to the method
        payloads = [rng.randbytes(rng.randrange(1, 300)) for _ in range(PAYLOADS_PER_METHOD)]
        for payload in payloads:
            try:
                request_type.FromString(payload)
                decoded += 1  # random bytes that happen to be a request: refused as any other
            except DecodeError:
                malformed += 1
        if method.client_streaming:
            call = channels[domain].stream_unary(path, _identity, _identity)
            futures = [call.future(iter([p]), metadata=metadata, timeout=30) for p in payloads]
        else:
            unary = channels[domain].unary_unary(path, _identity, _identity)
            futures = []
            for start in range(0, len(payloads), IN_FLIGHT):
                batch = [
                    unary.future(p, metadata=metadata, timeout=30)
                    for p in payloads[start : start + IN_FLIGHT]
                ]
                for future in batch:
                    future.exception()
                futures += batch
        for future in futures:
            error = future.exception()
            if error is not None and error.code() in (
                grpc.StatusCode.INTERNAL,
                grpc.StatusCode.UNKNOWN,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            ):
                internal.append(f"{path}: {error.code().name} {error.details()}")
    assert internal == []
    assert malformed > 50 * PAYLOADS_PER_METHOD  # most random bytes are no request at all
    lines = [r for r in caplog.records if r.name.startswith(("sscard", "grpc"))]
    assert [r for r in lines if r.exc_info or r.levelno >= logging.ERROR] == []
    malformed_lines = [r.getMessage() for r in lines if "MALFORMED_REQUEST" in r.getMessage()]
    started = [line for line in malformed_lines if "still" not in line]
    assert sorted(started) == [
        f"{domain}.sscard callers failing: MALFORMED_REQUEST" for domain in sorted(DOMAINS)
    ]
    assert len(malformed_lines) < malformed / 1000  # then only a counted summary a minute
    assert len(lines) <= decoded + 8


def test_bytes_that_are_not_the_request_answer_invalid_argument_malformed_request(
    suite: Suite,
) -> None:
    call = suite.card_server.channel.unary_unary(
        "/sscard.card.v1.CardService/GetCard", _identity, _identity
    )
    error = rpc_error(lambda: call(b"\xff\xff\xff\xff", metadata=suite.ops, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    decoded = from_rpc_error(error)
    assert decoded.reason == "MALFORMED_REQUEST"
    assert decoded.kind.name == "INVALID"


# A method of each service and a credential entitled to it.
OVERSIZED = {
    "identity": ("/sscard.identity.v1.IdentityService/ImportPersons", Role.REGISTRY),
    "card": ("/sscard.card.v1.CardService/ApplyBatch", Role.EMPLOYER),
    "bank": ("/sscard.bank.v1.BankService/GetAccount", Role.OPS),
    "transit": ("/sscard.transit.v1.TransitService/GetBalance", Role.OPS),
}


@pytest.mark.parametrize("domain", DOMAINS)
def test_a_message_over_the_request_limit_is_refused_by_grpc_before_any_handler(
    domain: str,
    suite: Suite,
    channels: dict[str, grpc.Channel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The one refusal without an ErrorInfo (docs/errors.md): every service, its bulk methods
    too, reads no message over SSCARD_MAX_REQUEST_BYTES (1 MiB)."""
    caplog.set_level(logging.INFO)
    path, role = OVERSIZED[domain]
    metadata = _lawful_callers(suite)[role]
    body = card_pb2.GetCardRequest(card_id="c" * (2 * 1024 * 1024)).SerializeToString()
    if path.endswith(("ImportPersons", "ApplyBatch")):
        call = channels[domain].stream_unary(path, _identity, _identity)
        error = rpc_error(lambda: call(iter([body]), metadata=metadata, timeout=30))
    else:
        unary = channels[domain].unary_unary(path, _identity, _identity)
        error = rpc_error(lambda: unary(body, metadata=metadata, timeout=30))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rpc_status.from_call(error) is None
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


@pytest.fixture
def one_call_per_client(service_env: dict[str, str]) -> None:
    service_env["SSCARD_CLIENT_MAX_CALLS"] = "1"


def test_a_client_over_its_call_limit_is_told_to_retry_while_others_are_served(
    one_call_per_client: None, suite: Suite
) -> None:
    feed = suite.token(roles=(Role.REGISTRY,), caller="hr-feed")
    release = threading.Event()

    def slow_import() -> Iterator[identity_pb2.ImportPersonsRequest]:
        yield identity_pb2.ImportPersonsRequest(batch_id="held-open")
        release.wait(30)

    held = suite.identity.ImportPersons.future(slow_import(), metadata=feed, timeout=60)
    try:
        request = identity_pb2.GetPersonRequest()
        refused = None
        for _ in range(200):  # until the held call is admitted
            try:
                suite.identity.GetPerson(request, metadata=feed, timeout=10)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refused = from_rpc_error(error)
                    break
            threading.Event().wait(0.05)
        assert refused is not None
        assert refused.reason == "CLIENT_OVER_LIMIT"
        assert refused.retry_after_seconds >= 1
        other = rpc_error(lambda: suite.identity.GetPerson(request, metadata=suite.ops))
        assert other.code() == grpc.StatusCode.INVALID_ARGUMENT  # another client is served
    finally:
        release.set()
    held.exception()
    again = rpc_error(lambda: suite.identity.GetPerson(request, metadata=feed))
    assert again.code() == grpc.StatusCode.INVALID_ARGUMENT  # the slot is free again
