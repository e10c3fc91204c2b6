"""Typed ports from the bank to the other sscard services.

``CardPort`` is what the notice relay needs of the card service (A7.1); ``GrpcCardPort`` is its
gRPC adapter: the bank's own service credential, a deadline on every call, refusals and
transport failures back as DomainErrors (``platform.clients``).
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import grpc

from services.platform.clients import DEFAULT_DEADLINE, ServiceCredential, call
from services.platform.protoconv import to_timestamp
from sscard.card.v1 import card_pb2, card_pb2_grpc


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
