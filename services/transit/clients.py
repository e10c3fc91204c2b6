"""Typed ports from the transit service to the card service, identity and the bank's ledger.

Each call carries the transit service's own credential (channel INTERNAL, role `service`) and a
deadline; a refusal comes back as the DomainError the other side raised, a transport failure as
an UNAVAILABLE DomainError (``platform.clients``).
"""

from __future__ import annotations

from typing import Protocol

import grpc

from services.platform.clients import DEFAULT_DEADLINE, ServiceCredential, call
from services.platform.protoconv import enum_name
from services.transit.domain.wallet import CardFacts
from sscard.bank.v1 import ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc

CARD_DEADLINE = 2.0  # a top-up waits this long for the card's status, then is refused


class CardPort(Protocol):
    def card(self, card_id: str) -> CardFacts:
        """The card's status, bank and holder now; raises DomainError (UNAVAILABLE if the card
        service does not answer, CARD_NOT_FOUND for no such card)."""
        ...

    def status(self, card_id: str) -> CardFacts:
        """The card's status now with its version, without its bank and holder (the card
        service's lighter status query); raises as ``card`` does."""
        ...


class IdentityPort(Protocol):
    def preferential(self, person_id: str) -> frozenset[str]:
        """The person's preferential-treatment flags (A11.2), by name."""
        ...


class LedgerPort(Protocol):
    def credit(self, refund_id: str, card_id: str, amount_fen: int) -> str:
        """Credit the card's account with a transit refund; the bank's entry id."""
        ...


class GrpcCardPort:
    def __init__(
        self, channel: grpc.Channel, credential: ServiceCredential, deadline: float = CARD_DEADLINE
    ) -> None:
        self._stub = card_pb2_grpc.CardServiceStub(channel)
        self._credential = credential
        self._deadline = deadline

    def card(self, card_id: str) -> CardFacts:
        answer = call(
            self._stub.GetCard,
            card_pb2.GetCardRequest(card_id=card_id),
            self._credential,
            self._deadline,
        )
        status = _status_name(answer.status)
        return CardFacts(answer.card_id, status, answer.bank_code, answer.person_id)

    def status(self, card_id: str) -> CardFacts:
        answer = call(
            self._stub.QueryStatus,
            card_pb2.QueryStatusRequest(card_id=card_id),
            self._credential,
            self._deadline,
        )
        return CardFacts(answer.card_id, _status_name(answer.status), "", "", answer.status_version)


def _status_name(value: int) -> str:
    return enum_name(card_pb2.CardStatus, value) or "UNKNOWN"


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

    def preferential(self, person_id: str) -> frozenset[str]:
        answer = call(
            self._stub.GetPerson,
            identity_pb2.GetPersonRequest(person=identity_pb2.PersonRef(person_id=person_id)),
            self._credential,
            self._deadline,
        )
        names = (
            enum_name(identity_pb2.PreferentialTreatment, f) for f in answer.person.preferential
        )
        return frozenset(name for name in names if name)


class GrpcLedgerPort:
    def __init__(
        self,
        channel: grpc.Channel,
        credential: ServiceCredential,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self._stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        self._credential = credential
        self._deadline = deadline

    def credit(self, refund_id: str, card_id: str, amount_fen: int) -> str:
        answer = call(
            self._stub.Credit,
            ledger_pb2.CreditRequest(
                request_id=refund_id,
                card_id=card_id,
                amount_fen=amount_fen,
                source=ledger_pb2.ENTRY_SOURCE_TRANSIT_REFUND,
                reference=refund_id,
                counterparty="transit",
            ),
            self._credential,
            self._deadline,
        )
        return str(answer.entry_id)
