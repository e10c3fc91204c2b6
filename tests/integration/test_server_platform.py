"""The platform's server bootstrap over real gRPC: health tied to the database and migrations,
reflection, caller credentials, and the one error mapping (no raw exception text, ever)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from services.identity.main import build
from services.platform import config as settings
from services.platform import migrations, tokens
from services.platform.access import MATRIX
from services.platform.auth import Channel, Role
from services.platform.db import make_engine
from services.platform.errors import DomainError, Kind
from services.platform.reflection import V1_SERVICE, V1ALPHA_SERVICE
from services.platform.server import LIVENESS, ServiceDeps
from sscard.identity.v1 import identity_pb2 as pb
from sscard.identity.v1 import identity_pb2_grpc
from tests.conftest import PG_URL, expired_token
from tests.support import refusal, wait_serving
from tests.trust import TEST_ISSUER, TestTrust

IDENTITY = "sscard.identity.v1.IdentityService"
BOOM = "/test.Boom/Fail"


def _status(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_is_serving_only_once_the_database_is_at_its_migration_head(
    start_service: Callable[..., Any],
) -> None:
    running = start_service("identity", build, migrate=False)
    assert _status(running.channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert _status(running.channel, IDENTITY) == health_pb2.HealthCheckResponse.NOT_SERVING
    migrations.upgrade("identity", running.deps.db.engine)
    wait_serving(running.channel)
    wait_serving(running.channel, IDENTITY)


def test_liveness_does_not_depend_on_the_database(start_service: Callable[..., Any]) -> None:
    """An unmigrated database keeps the service unready, but a liveness probe never restarts it
    for that; shutdown ends liveness too."""
    running = start_service("identity", build, migrate=False)
    assert _status(running.channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert _status(running.channel, LIVENESS) == health_pb2.HealthCheckResponse.SERVING
    threading.Thread(target=running.server.stop, kwargs={"drain": 1.0}, daemon=True).start()
    deadline = time.monotonic() + 5
    while _status(running.channel, LIVENESS) == health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline, "still live after shutdown began"
        time.sleep(0.05)


def _reflect(channel: grpc.Channel, service: str, **request: str) -> Any:
    """One reflection request over ``service`` (v1 or v1alpha), with that version's messages."""
    package = service.rsplit(".", 1)[0]
    pool = descriptor_pool.Default()
    request_type, response_type = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in ("ServerReflectionRequest", "ServerReflectionResponse")
    )
    info = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    return next(info(iter([request_type(**request)]), timeout=5))


@pytest.mark.parametrize("service", [V1_SERVICE, V1ALPHA_SERVICE])
def test_reflection_v1_and_v1alpha_list_and_describe_the_service(
    start_service: Callable[..., Any], service: str
) -> None:
    running = start_service("identity", build)
    listed = _reflect(running.channel, service, list_services="")
    names = {entry.name for entry in listed.list_services_response.service}
    assert {IDENTITY, V1_SERVICE, V1ALPHA_SERVICE} <= names
    for symbol in (IDENTITY, V1_SERVICE):
        answer = _reflect(running.channel, service, file_containing_symbol=symbol)
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in answer.file_descriptor_response.file_descriptor_proto
        ]
        assert any(
            f"{file.package}.{entry.name}" == symbol for file in files for entry in file.service
        ), symbol


class TestCredentials:
    def _call(self, channel: grpc.Channel, metadata: Any) -> None:
        identity_pb2_grpc.IdentityServiceStub(channel).ListPersonEvents(
            pb.ListPersonEventsRequest(), metadata=metadata, timeout=5
        )

    @pytest.mark.parametrize(
        ("metadata", "reason"),
        [
            (None, "CREDENTIAL_MISSING"),
            ([("authorization", "Basic dXNlcjpwYXNz")], "CREDENTIAL_MALFORMED"),
            ([("authorization", "Bearer not-a-token")], "CREDENTIAL_MALFORMED"),
        ],
        ids=["missing", "not-bearer", "garbage"],
    )
    def test_a_call_without_a_valid_credential_is_unauthenticated(
        self, start_service: Callable[..., Any], metadata: Any, reason: str
    ) -> None:
        running = start_service("identity", build)
        with pytest.raises(grpc.RpcError) as excinfo:
            self._call(running.channel, metadata)
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert error.reason == reason

    def test_a_forged_credential_is_unauthenticated(
        self, start_service: Callable[..., Any], trust: TestTrust, tmp_path: Path
    ) -> None:
        """Signed in the test issuer's name, for a registered client, by a key the issuer
        never published."""
        running = start_service("identity", build)
        trust.token(Channel.INTERNAL, (Role.OPS,), "ops")  # the client is registered
        mallory = tmp_path / "mallory.pem"
        tokens.ensure_issuer(mallory, tmp_path / "mallory-trust", TEST_ISSUER)
        forged = tokens.Signer(TEST_ISSUER, mallory).mint("ops", Channel.INTERNAL, roles={Role.OPS})
        with pytest.raises(grpc.RpcError) as excinfo:
            self._call(running.channel, [("authorization", f"Bearer {forged}")])
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert error.reason == "UNKNOWN_KEY"

    def test_an_expired_credential_is_unauthenticated(
        self, start_service: Callable[..., Any], trust: TestTrust
    ) -> None:
        running = start_service("identity", build)
        with pytest.raises(grpc.RpcError) as excinfo:
            self._call(running.channel, [("authorization", f"Bearer {expired_token(trust)}")])
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert error.reason == "CREDENTIAL_EXPIRED"
        assert "expired" in error.message

    def test_a_valid_credential_without_the_role_is_permission_denied(
        self, start_service: Callable[..., Any], token: Callable[..., Any]
    ) -> None:
        running = start_service("identity", build)
        counter = token(channel=Channel.DISTRICT_OUTLET, roles=(Role.COUNTER,))
        with pytest.raises(grpc.RpcError) as excinfo:
            self._call(running.channel, counter)
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert error.reason == "ROLE_NOT_ALLOWED"


def _boom_service(fail: Exception) -> Callable[[grpc.Server], None]:
    def boom(request: bytes, context: grpc.ServicerContext) -> bytes:
        raise fail

    handler = grpc.method_handlers_generic_handler(
        "test.Boom", {"Fail": grpc.unary_unary_rpc_method_handler(boom)}
    )
    return lambda server: server.add_generic_rpc_handlers((handler,))


@pytest.fixture
def boom_authorized(monkeypatch: pytest.MonkeyPatch) -> None:
    """The call guard denies a method without a row in the authorization matrix: give the
    failing test method one (services may call it)."""
    monkeypatch.setitem(MATRIX, BOOM, frozenset({Role.SERVICE}))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_method_without_a_row_in_the_authorization_matrix_is_denied_to_everyone(
    start_service: Callable[..., Any], token: Callable[..., Any]
) -> None:
    def build_boom(config: settings.ServiceConfig) -> ServiceDeps:
        deps = build(config)
        deps.register = _boom_service(ValueError("never reached"))
        return deps

    channel = start_service("identity", build_boom).channel
    for role in (Role.SERVICE, Role.OPS):
        with pytest.raises(grpc.RpcError) as excinfo:
            channel.unary_unary(BOOM)(b"", metadata=token(roles=(role,), caller=role), timeout=5)
        code, error = refusal(excinfo)
        assert (code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "METHOD_NOT_AUTHORIZED")


@pytest.mark.usefixtures("boom_authorized")
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
class TestErrorMapping:
    def _start(self, start_service: Callable[..., Any], fail: Exception) -> grpc.Channel:
        def build_boom(config: settings.ServiceConfig) -> ServiceDeps:
            deps = build(config)
            deps.register = _boom_service(fail)
            return deps

        return start_service("identity", build_boom).channel  # type: ignore[no-any-return]

    def test_an_unexpected_failure_is_internal_with_a_reference_and_no_exception_text(
        self, start_service: Callable[..., Any], token: Callable[..., Any]
    ) -> None:
        channel = self._start(start_service, ValueError("secret 110105199003070011 13812345678"))
        call = channel.unary_unary(BOOM)
        with pytest.raises(grpc.RpcError) as excinfo:
            call(b"", metadata=token(), timeout=5)
        error = excinfo.value
        assert error.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
        details = error.details()  # type: ignore[attr-defined]
        assert details.startswith("internal error (reference ")
        assert "secret" not in details and "110105" not in details

    def test_a_domain_refusal_carries_reason_rule_and_masked_message(
        self, start_service: Callable[..., Any], token: Callable[..., Any]
    ) -> None:
        refused = DomainError(
            "ALREADY_HAS_CARD", "person 110105199003070011 has a card", rule="A4.2"
        )
        channel = self._start(start_service, refused)
        with pytest.raises(grpc.RpcError) as excinfo:
            channel.unary_unary(BOOM)(b"", metadata=token(), timeout=5)
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert (error.reason, error.rule) == ("ALREADY_HAS_CARD", "A4.2")
        assert "110105********0011" in error.message


@pytest.mark.usefixtures("boom_authorized")
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_lost_database_connection_is_unavailable_and_worth_a_retry(
    start_service: Callable[..., Any], token: Callable[..., Any]
) -> None:
    dropped = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    channel = TestErrorMapping()._start(start_service, dropped)
    with pytest.raises(grpc.RpcError) as excinfo:
        channel.unary_unary(BOOM)(b"", metadata=token(), timeout=5)
    code, error = refusal(excinfo)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "DATABASE_UNAVAILABLE"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_connection_the_server_dropped_fails_one_call_and_the_pool_recovers(
    db_url: str,
) -> None:
    """No ping on checkout: the call that meets a dropped connection fails as a disconnect (the
    call guard answers it UNAVAILABLE), and the next call gets a fresh connection."""
    engine = make_engine(db_url, pool_size=1)
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as excinfo, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert excinfo.value.connection_invalidated
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_periodic_task_refused_by_another_service_logs_one_line_without_a_stack_trace(
    start_service: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    def down() -> None:
        raise DomainError("SERVICE_UNAVAILABLE", "identity did not answer", kind=Kind.UNAVAILABLE)

    def build_with_chore(config: settings.ServiceConfig) -> ServiceDeps:
        deps = build(config)
        deps.maintenance = [(0.05, down)]
        return deps

    with caplog.at_level(logging.WARNING, logger="sscard.server"):
        start_service("identity", build_with_chore)
        deadline = time.monotonic() + 10
        while not any("SERVICE_UNAVAILABLE" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the refusal was never logged"
            time.sleep(0.05)
    refused = [r for r in caplog.records if "SERVICE_UNAVAILABLE" in r.getMessage()]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in refused)
