"""How a service sees another's answer (``clients.call``), over real gRPC: a callee busy with
as many of its calls as it admits is a reason to try again later, like a transport failure,
while a real refusal stays final."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import empty_pb2

from services.platform.clients import ServiceCredential, call
from services.platform.errors import DomainError, Kind
from services.platform.grpc_errors import to_status
from services.platform.inbound import OVER_LIMIT

METHOD = "/test.Busy/Call"


class _Credential(ServiceCredential):
    def __init__(self) -> None:  # no configuration: the test server reads no credential
        pass

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return (("authorization", "Bearer test"),)


@pytest.fixture
def answering() -> Iterator[tuple[list[DomainError], grpc.Channel]]:
    """A server whose one method refuses with the next error of the list, as the suite's
    services do (rich status with ErrorInfo and RetryInfo)."""
    errors: list[DomainError] = []

    def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort_with_status(to_status(errors.pop(0), "test.sscard"))
        return b""

    handler = grpc.method_handlers_generic_handler(
        "test.Busy", {"Call": grpc.unary_unary_rpc_method_handler(refuse)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield errors, channel
    channel.close()
    server.stop(None)


def _call(channel: grpc.Channel) -> None:
    method = channel.unary_unary(
        METHOD,
        request_serializer=empty_pb2.Empty.SerializeToString,
        response_deserializer=empty_pb2.Empty.FromString,
    )
    call(method, empty_pb2.Empty(), _Credential(), deadline=5)


def test_a_callee_over_its_limit_for_this_service_is_retried_later_not_a_refusal(
    answering: tuple[list[DomainError], grpc.Channel],
) -> None:
    errors, channel = answering
    errors.append(
        DomainError(OVER_LIMIT, "too many at once", kind=Kind.EXHAUSTED, retry_after_seconds=1)
    )
    with pytest.raises(DomainError) as raised:
        _call(channel)
    busy = raised.value
    assert (busy.reason, busy.kind) == ("DEPENDENCY_UNAVAILABLE", Kind.UNAVAILABLE)
    assert busy.metadata["code"] == "RESOURCE_EXHAUSTED"
    assert busy.retry_after_seconds == 1


def test_any_other_refusal_comes_back_as_the_callee_said_it(
    answering: tuple[list[DomainError], grpc.Channel],
) -> None:
    errors, channel = answering
    errors.append(
        DomainError(
            "IMPORT_TOO_LARGE", "an import carries at most 200000 records", kind=Kind.EXHAUSTED
        )
    )
    with pytest.raises(DomainError) as raised:
        _call(channel)
    assert (raised.value.reason, raised.value.kind) == ("IMPORT_TOO_LARGE", Kind.EXHAUSTED)
