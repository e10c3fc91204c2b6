"""Bad input never gets INTERNAL: every RPC of every service, called over real gRPC with an empty
request and with a request of nonsense values, by every kind of caller, answers with a clear
refusal (or an answer), never INTERNAL and never a stack trace."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

from services.platform.auth import Channel, Role
from services.platform.grpc_errors import from_rpc_error
from sscard.card.v1 import card_pb2
from tests.cardsuite import BANK, BRANCH, EMPLOYER_ID, Suite, rpc_error

DOMAINS = ("identity", "card", "bank", "transit")


def methods() -> Iterator[tuple[str, MethodDescriptor]]:
    for domain in DOMAINS:
        package = importlib.import_module(f"sscard.{domain}.v1")
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.endswith("_pb2"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                for method in service.methods:
                    yield domain, method


def nonsense(message: Any, depth: int = 0) -> Any:
    """Every field, nested ones too, set to a value no rule accepts: too long, negative,
    unknown enum numbers, impossible dates."""
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated:
            if field.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
                nonsense(getattr(message, field.name).add(), depth + 1)
            continue
        if field.containing_oneof is not None:
            continue
        if field.type == FieldDescriptor.TYPE_STRING:
            setattr(message, field.name, "x" * 300 + "\u0000'; DROP TABLE cards;--")
        elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            setattr(message, field.name, -(2**31))
        elif field.type == FieldDescriptor.TYPE_ENUM:
            setattr(message, field.name, 9999)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            setattr(message, field.name, b"\x00" * 10)
        elif field.type == FieldDescriptor.TYPE_BOOL:
            setattr(message, field.name, True)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.name == "Date":
            getattr(message, field.name).month = 13
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.name == "Timestamp":
            getattr(message, field.name).seconds = -(2**40)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
            nonsense(getattr(message, field.name), depth + 1)
    return message


@pytest.fixture
def channels(suite: Suite) -> dict[str, grpc.Channel]:
    return {
        "identity": suite.identity_server.channel,
        "card": suite.card_server.channel,
        "bank": suite.bank_server.channel,
        "transit": suite.transit_server.channel,
    }


def test_no_rpc_answers_internal_to_bad_input(
    suite: Suite, channels: dict[str, grpc.Channel]
) -> None:
    person = suite.person()
    # One lawful credential of every role, so every method's body is reached by someone.
    callers = [
        suite.service,
        suite.ops,
        suite.factory,
        suite.token(roles=(Role.REGISTRY,), caller="hr-feed"),
        suite.token(roles=(Role.BANK,), caller="icbc-core", bank_code=BANK),
        suite.token(channel=Channel.ONLINE, roles=(Role.PORTAL,), caller="online-portal"),
        suite.token(channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID),
        suite.at(Channel.ONLINE, person),
        suite.at(Channel.TRANSIT_APP, person),
        suite.at(Channel.BANK_BRANCH, bank_code=BANK, outlet_id=BRANCH),
        suite.at(Channel.DISTRICT_OUTLET),
        suite.at(Channel.HOTLINE),
        suite.at(Channel.TRANSIT_OUTLET),
        suite.at(Channel.PARK_OUTLET),
    ]
    internal, unadmitted = [], []
    for domain, method in methods():
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        path = f"/{method.containing_service.full_name}/{method.name}"
        for request in (request_type(), nonsense(request_type())):
            for metadata in callers:
                try:
                    if method.client_streaming:
                        channels[domain].stream_unary(
                            path,
                            request_serializer=request_type.SerializeToString,
                            response_deserializer=response_type.FromString,
                        )(iter([request]), metadata=metadata, timeout=10)
                    else:
                        channels[domain].unary_unary(
                            path,
                            request_serializer=request_type.SerializeToString,
                            response_deserializer=response_type.FromString,
                        )(request, metadata=metadata, timeout=10)
                except grpc.RpcError as error:
                    if error.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                        internal.append(f"{path}: {error.code().name} {error.details()}")
                    elif error.code() == grpc.StatusCode.UNAUTHENTICATED:
                        unadmitted.append(f"{path}: {error.details()}")
    assert internal == []
    assert unadmitted == []  # every credential above is a registered client's


def test_text_with_a_nul_character_is_refused_naming_the_field(suite: Suite) -> None:
    error = rpc_error(
        lambda: suite.card.GetCard(
            card_pb2.GetCardRequest(card_id="card\x00-1"), metadata=suite.ops
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    decoded = from_rpc_error(error)
    assert decoded.reason == "INVALID_CHARACTERS"
    assert [v.field for v in decoded.violations] == ["card_id"]
