"""Typed ports from the bank to the other sscard services.

``CardPort`` is what the notice relay needs of the card service (A7.1); ``GrpcCardPort`` is its
gRPC adapter: the bank's own service credential, a deadline on every call, refusals and
transport failures back as DomainErrors (``platform.clients``).

``CounterCardPort`` activates the SS function with the financial function (A9.2) under the
counter's own credential, forwarded as it came, so the card service applies its own channel
rules to the counter. ``IdentityPort`` reads a person's preferential-treatment flags (A25.1).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import grpc

from services.platform.clients import DEFAULT_DEADLINE, ServiceCredential, call
from services.platform.protoconv import enum_name, enum_value, to_timestamp
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc


class CardPort(Protocol):
    def record_produced(
        self, card_id: str, card_number: str, produced_at: dt.datetime, request_id: str
    ) -> None:
        """Tell the card service the card is made; raises DomainError on any failure."""
        ...


class GrpcCardPort:
    def __init__(
        self,
        channel: grpc.Channel,
        credential: ServiceCredential,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self._stub = card_pb2_grpc.CardServiceStub(channel)
        self._credential = credential
        self._deadline = deadline

    def record_produced(
        self, card_id: str, card_number: str, produced_at: dt.datetime, request_id: str
    ) -> None:
        request = card_pb2.RecordProducedRequest(
            request_id=request_id,
            card_id=card_id,
            card_number=card_number,
            produced_at=to_timestamp(produced_at),
        )
        call(self._stub.RecordProduced, request, self._credential, self._deadline)


class ForwardedCredential(ServiceCredential):
    """The credential of the call being served, passed on unchanged to another service."""

    def __init__(self, authorization: str) -> None:  # never renewed: it is not this service's
        self._authorization = authorization

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return (("authorization", self._authorization),)


class CounterCardPort(Protocol):
    def activate_card(
        self,
        card_id: str,
        document_type: str,
        document_number: str,
        request_id: str,
        authorization: str,
    ) -> None:
        """Activate the SS function as the counter (A9.2); raises DomainError on a refusal."""
        ...


class GrpcCounterCardPort:
    def __init__(self, channel: grpc.Channel, deadline: float = DEFAULT_DEADLINE) -> None:
        self._stub = card_pb2_grpc.CardServiceStub(channel)
        self._deadline = deadline

    def activate_card(
        self,
        card_id: str,
        document_type: str,
        document_number: str,
        request_id: str,
        authorization: str,
    ) -> None:
        request = card_pb2.ActivateCardRequest(
            request_id=request_id,
            card_id=card_id,
            document=common_pb2.IdentityDocument(
                type=enum_value(common_pb2.DocumentType, document_type), number=document_number
            ),
        )
        call(self._stub.ActivateCard, request, ForwardedCredential(authorization), self._deadline)


@dataclass(frozen=True)
class PersonFacts:
    """What the bank asks the registry of a card's holder."""

    person_id: str
    preferential: frozenset[str]


class IdentityPort(Protocol):
    def person(self, document_type: str, document_number: str) -> PersonFacts:
        """The holder's registry id and preferential-treatment flags (e.g. ELDERLY, DISABLED);
        raises DomainError (PERSON_NOT_FOUND, ...) on any failure."""
        ...


class GrpcIdentityPort:
    def __init__(
        self,
        channel: grpc.Channel,
        credential: ServiceCredential,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)
        self._credential = credential
        self._deadline = deadline

    def person(self, document_type: str, document_number: str) -> PersonFacts:
        request = identity_pb2.GetPersonRequest(
            person=identity_pb2.PersonRef(
                document=common_pb2.IdentityDocument(
                    type=enum_value(common_pb2.DocumentType, document_type), number=document_number
                )
            )
        )
        answer = call(self._stub.GetPerson, request, self._credential, self._deadline)
        flags = frozenset(
            enum_name(identity_pb2.PreferentialTreatment, flag)
            for flag in answer.person.preferential
        )
        return PersonFacts(answer.person.person_id, flags)
