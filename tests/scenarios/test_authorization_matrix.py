"""The authorization matrix (services/platform/access.py), walked cell by cell over real gRPC.

Every RPC of every service is called with a credential of each kind a deployment registers
(each role, held by a client kind allowed to hold it), with one whose issuer is not trusted and
with an expired one. A role the row names gets past the call guard (whatever the empty request
then earns); any other is PERMISSION_DENIED ``ROLE_NOT_ALLOWED``; the untrusted and the
expired are UNAUTHENTICATED. Which card a person or a bank reaches is proven in test_trust.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory

from services.platform import access, tokens
from services.platform.auth import Channel, Role
from services.platform.grpc_errors import from_rpc_error
from sscard.bank.v1 import bank_pb2, counter_pb2, ledger_pb2
from sscard.card.v1 import card_pb2
from sscard.identity.v1 import identity_pb2
from sscard.transit.v1 import transit_pb2
from tests.cardsuite import BANK, Suite
from tests.trust import TestTrust

MODULES = {
    "identity": [identity_pb2],
    "card": [card_pb2],
    "bank": [bank_pb2, counter_pb2, ledger_pb2],
    "transit": [transit_pb2],
}

# One lawful credential per role: (channel, extra claims).
HOLDERS: dict[Role, tuple[Channel, dict[str, str]]] = {
    Role.PERSON: (Channel.ONLINE, {}),
    Role.EMPLOYER: (Channel.ONLINE, {}),
    Role.COUNTER: (Channel.BANK_BRANCH, {"bank_code": BANK, "outlet_id": "ICBC-0101"}),
    Role.BANK: (Channel.INTERNAL, {"bank_code": BANK}),
    Role.FACTORY: (Channel.INTERNAL, {}),
    Role.REGISTRY: (Channel.INTERNAL, {}),
    Role.PORTAL: (Channel.ONLINE, {}),
    Role.OPS: (Channel.INTERNAL, {}),
    Role.SERVICE: (Channel.INTERNAL, {}),
}

GUARD_REFUSALS = {"ROLE_NOT_ALLOWED", "METHOD_NOT_AUTHORIZED"}


def methods() -> Iterator[tuple[str, Any]]:
    for service, modules in MODULES.items():
        for module in modules:
            for descriptor in module.DESCRIPTOR.services_by_name.values():
                for method in descriptor.methods:
                    yield service, method


def test_every_rpc_has_a_row_and_every_row_an_rpc() -> None:
    paths = {f"/{m.containing_service.full_name}/{m.name}" for _, m in methods()}
    assert paths == set(access.MATRIX)


def _call(channel: grpc.Channel, method: Any, metadata: Any) -> tuple[grpc.StatusCode, str]:
    request = message_factory.GetMessageClass(method.input_type)()
    response = message_factory.GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    kwargs = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": response.FromString,
    }
    try:
        if method.client_streaming:
            channel.stream_unary(path, **kwargs)(iter([request]), metadata=metadata, timeout=10)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, **kwargs)(request, metadata=metadata, timeout=10):
                break
        else:
            channel.unary_unary(path, **kwargs)(request, metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        return error.code(), from_rpc_error(error).reason
    return grpc.StatusCode.OK, ""


@pytest.fixture
def credentials(suite: Suite, trust: TestTrust, tmp_path: Any) -> dict[str, Any]:
    person = suite.person()
    made: dict[str, Any] = {}
    for role, (channel, claims) in HOLDERS.items():
        caller = {Role.PERSON: person.person_id, Role.EMPLOYER: "91110000100000000A"}.get(
            role, f"walk-{role.value}"
        )
        made[role.value] = suite.token(channel=channel, roles=(role,), caller=caller, **claims)
    stranger = tmp_path / "stranger.pem"
    tokens.ensure_issuer(stranger, tmp_path / "elsewhere", "stranger")
    made["untrusted issuer"] = [
        (
            "authorization",
            f"Bearer {tokens.Signer('stranger', stranger).mint('x', Channel.INTERNAL)}",
        )
    ]
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    expired = trust.token(Channel.INTERNAL, (Role.OPS,), "walk-ops", now=past)
    made["expired"] = [("authorization", f"Bearer {expired}")]
    return made


def test_the_matrix_cell_by_cell(suite: Suite, credentials: dict[str, Any]) -> None:
    channels = {
        "identity": suite.identity_server.channel,
        "card": suite.card_server.channel,
        "bank": suite.bank_server.channel,
        "transit": suite.transit_server.channel,
    }
    wrong: list[str] = []
    for service, method in methods():
        path = f"/{method.containing_service.full_name}/{method.name}"
        allowed = {r.value for r in access.MATRIX[path]}
        for column, metadata in credentials.items():
            code, reason = _call(channels[service], method, metadata)
            if column in ("untrusted issuer", "expired"):
                ok = code is grpc.StatusCode.UNAUTHENTICATED
            elif column in allowed:
                ok = reason not in GUARD_REFUSALS and code is not grpc.StatusCode.UNAUTHENTICATED
            else:
                ok = (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
            if not ok:
                wrong.append(f"{path} as {column}: {code.name} {reason}")
    assert wrong == []
