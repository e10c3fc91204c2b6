"""A running suite for card tests: identity, bank, card and transit as real in-process gRPC
servers, and clients acting as the HR feed, outlets, bank branches, the hotline, employers and
the factory."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from services.bank.main import build as build_bank
from services.card.main import build as build_card
from services.identity.main import build as build_identity
from services.platform.auth import Channel, Role
from services.platform.grpc_errors import from_rpc_error
from services.platform.slices import slices
from services.transit.main import build as build_transit
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc
from sscard.transit.v1 import transit_pb2_grpc
from tests.support import PersonSpec, wait_serving

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
BANK = "ICBC"
OTHER_BANK = "BOC"
BRANCH = "ICBC-0101"  # ordinary branch of the chosen bank
INSTANT = "ICBC-0001"  # instant-issuing branch of the chosen bank (A22.3)
OTHER_INSTANT = "BOC-0001"
EMPLOYER_ID = "91110000100000000A"


class Suite:
    def __init__(self, start: Callable[..., Any], token: Callable[..., Any]) -> None:
        self.token = token
        identity = start("identity", build_identity)
        bank = start("bank", build_bank)
        card = start("card", build_card)
        transit = start("transit", build_transit)  # the replacement saga moves the park pass
        for running in (identity, bank, card, transit):
            wait_serving(running.channel)
        self.transit = transit_pb2_grpc.TransitServiceStub(transit.channel)
        self.transit_server = transit
        self.identity = identity_pb2_grpc.IdentityServiceStub(identity.channel)
        self.bank = bank_pb2_grpc.BankServiceStub(bank.channel)
        self.card = card_pb2_grpc.CardServiceStub(card.channel)
        self.card_server = card
        self.bank_server = bank
        self.identity_server = identity
        self.service = token(roles=(Role.SERVICE,), caller="test-service")
        self.ops = token(roles=(Role.OPS,), caller="ops")
        self.factory = token(roles=(Role.FACTORY,), caller="card-factory")
        self._n = 0
        for bank_code, branch, instant in (
            (BANK, BRANCH, False),
            (BANK, INSTANT, True),
            (OTHER_BANK, OTHER_INSTANT, True),
        ):
            self.bank.UpsertBranch(
                bank_pb2.UpsertBranchRequest(
                    request_id=f"branch-{branch}",
                    branch=bank_pb2.Branch(
                        bank_code=bank_code, branch_id=branch, name=branch, instant=instant
                    ),
                ),
                metadata=self.ops,
            )

    def rid(self, label: str = "r") -> str:
        self._n += 1
        return f"{label}-{self._n}"

    def at(self, channel: Channel, person: PersonSpec | None = None, **claims: Any) -> Any:
        """A credential at ``channel``: online and in the transit app, ``person``'s own; at a
        counter, an operator's (role ``counter``)."""
        if person is not None:
            return self.token(channel=channel, roles=(Role.PERSON,), caller=person.person_id)
        roles = claims.pop("roles", (Role.COUNTER,))
        return self.token(channel=channel, roles=roles, caller=f"{channel.value}-client", **claims)

    def branch(self, bank_code: str = BANK, branch_id: str = BRANCH) -> Any:
        return self.at(Channel.BANK_BRANCH, bank_code=bank_code, outlet_id=branch_id)

    def person(self, **spec: Any) -> PersonSpec:
        person = PersonSpec(**spec)
        self.identity.ImportPersons(
            slices(
                identity_pb2.ImportPersonsRequest(
                    batch_id=self.rid("feed"), records=[person.record()]
                )
            ),
            metadata=self.token(roles=(Role.REGISTRY,), caller="hr-feed"),
        )
        answer = self.identity.GetPerson(
            identity_pb2.GetPersonRequest(
                person=identity_pb2.PersonRef(document=person.document())
            ),
            metadata=self.service,
        )
        person.person_id = answer.person.person_id
        return person

    def applicant(self, person: PersonSpec, **overrides: Any) -> pb.Applicant:
        fields = {
            "document": person.document(),
            "name": person.name,
            "photo": JPEG,
            "occupation": "teacher",
            "mobile": "13812345678",
            "address": "1 Chang'an Avenue, Dongcheng, Beijing",
            "document_valid_until": person.document_valid_until(),
        }
        fields.update(overrides)
        return pb.Applicant(**fields)

    def apply(
        self,
        person: PersonSpec,
        metadata: Any = None,
        delivery: int = pb.DELIVERY_BRANCH_PICKUP,
        bank_code: str = BANK,
        pickup: str = BRANCH,
        request_id: str | None = None,
        **overrides: Any,
    ) -> pb.ApplyResponse:
        return self.card.Apply(
            pb.ApplyRequest(
                request_id=request_id or self.rid("apply"),
                applicant=self.applicant(person, **overrides),
                bank_code=bank_code,
                delivery=delivery,  # type: ignore[arg-type]
                pickup_branch_id=pickup if delivery == pb.DELIVERY_BRANCH_PICKUP else "",
            ),
            metadata=metadata or self.at(Channel.ONLINE, person),
        )

    def settle(self, card_id: str, timeout: float = 30) -> pb.Application:
        """Wait until the card's application saga has finished."""
        deadline = time.monotonic() + timeout
        while True:
            application = self.card.GetApplication(
                pb.GetApplicationRequest(card_id=card_id), metadata=self.ops
            )
            if application.state in (pb.SAGA_STATE_COMPLETED, pb.SAGA_STATE_FAILED):
                return application
            if time.monotonic() > deadline:
                raise TimeoutError(f"saga still {pb.SagaState.Name(application.state)}")
            time.sleep(0.05)

    def get(self, card_id: str, history: bool = False) -> pb.Card:
        return self.card.GetCard(
            pb.GetCardRequest(card_id=card_id, include_history=history), metadata=self.ops
        )

    def produce(self, card_id: str, timeout: float = 15) -> pb.Card:
        """The bank's factory reports the card made; wait for the card service's notice."""
        order = self.bank.GetProductionOrder(
            bank_pb2.GetProductionOrderRequest(card_id=card_id), metadata=self.factory
        )
        self.bank.MarkProduced(
            bank_pb2.MarkProducedRequest(request_id=self.rid("made"), order_id=order.order_id),
            metadata=self.factory,
        )
        deadline = time.monotonic() + timeout
        while (card := self.get(card_id)).status != pb.CARD_STATUS_READY:
            if time.monotonic() > deadline:
                raise TimeoutError(f"card still {pb.CardStatus.Name(card.status)}")
            time.sleep(0.05)
        return card

    def collect(
        self, card_id: str, person: PersonSpec, metadata: Any = None, **extra: Any
    ) -> pb.Card:
        return self.card.RecordCollection(
            pb.RecordCollectionRequest(
                request_id=self.rid("collect"),
                card_id=card_id,
                method=pb.COLLECTION_METHOD_AT_BRANCH,
                document=person.document(),
                **extra,
            ),
            metadata=metadata or self.branch(),
        )

    def activate(self, card_id: str, person: PersonSpec, metadata: Any = None) -> pb.Card:
        return self.card.ActivateCard(
            pb.ActivateCardRequest(
                request_id=self.rid("activate"), card_id=card_id, document=person.document()
            ),
            metadata=metadata or self.at(Channel.ONLINE, person),
        )

    def card_number(self, card_id: str) -> str:
        """The number the bank made the card with, as a counter reads it from the chip."""
        order = self.bank.GetProductionOrder(
            bank_pb2.GetProductionOrderRequest(card_id=card_id), metadata=self.service
        )
        return str(order.card_number)

    def registered_card(self, person: PersonSpec) -> str:
        answer = self.identity.GetPerson(
            identity_pb2.GetPersonRequest(
                person=identity_pb2.PersonRef(document=person.document())
            ),
            metadata=self.service,
        )
        return str(answer.person.registered_card_id)


def hotline_loss(suite: Suite, card_id: str, person: PersonSpec) -> pb.Card:
    """A temporary loss by the 96066 hotline, for a caller who gives the card's service
    password (set online first): the hotline acts only for a caller it has verified (A12)."""
    suite.card.ResetServicePassword(
        pb.ResetServicePasswordRequest(
            request_id=suite.rid("password"),
            card_id=card_id,
            document=person.document(),
            new_password="538271",
        ),
        metadata=suite.at(Channel.ONLINE, person),
    )
    return suite.card.ReportTemporaryLoss(  # type: ignore[no-any-return]
        pb.ReportLossRequest(
            request_id=suite.rid("loss"),
            card_id=card_id,
            document=person.document(),
            service_password="538271",
        ),
        metadata=suite.at(Channel.HOTLINE),
    )


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    try:
        call()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


def active_card(suite: Suite, **spec: Any) -> tuple[str, PersonSpec]:
    """A card made on the spot at an instant branch, collected and activated."""
    person = suite.person(**spec)
    started = suite.apply(person, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
    suite.settle(started.card_id)
    suite.collect(started.card_id, person, metadata=suite.branch(BANK, INSTANT))
    suite.activate(started.card_id, person)
    return started.card_id, person


def wait_until(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not come true")
        time.sleep(0.05)


def reason_rule(error: grpc.RpcError) -> tuple[str, str]:
    """The reason and rule of a refusal."""
    decoded = from_rpc_error(error)
    return decoded.reason, decoded.rule
