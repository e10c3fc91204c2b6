"""A3.1 cell by cell: every operation of the channel matrix, from every channel a person or an
outlet calls from, over real gRPC against the real identity, card, bank and transit services.

Each cell calls the RPC that performs the operation with a well-formed request for a real card.
A cell the matrix allows is never refused CHANNEL_NOT_ALLOWED (it may still be refused for the
card's state: the same cards walk every row); a cell the matrix does not allow is refused
PERMISSION_DENIED ``CHANNEL_NOT_ALLOWED`` with rule A3.1. INTERNAL is the suite's own services,
gated by role, and has no column of its own in the regulation's table. One suite serves every
cell of a backend: starting the four services per cell would take minutes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from services.platform.auth import Channel, Role
from services.platform.channels import MATRIX, Operation
from services.platform.clock import SharedTestClock, beijing_date
from services.platform.grpc_errors import from_rpc_error
from services.platform.slices import slices
from sscard.bank.v1 import counter_pb2, counter_pb2_grpc, ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2 as pb
from sscard.transit.v1 import transit_pb2
from tests.cardsuite import BANK, EMPLOYER_ID, INSTANT, Suite, active_card
from tests.support import PersonSpec, date_pb

PUBLIC = [channel for channel in Channel if channel is not Channel.INTERNAL]


@dataclass
class Cards:
    """The cards the cells act on: one in use for most rows, spares for the rows that end a card."""

    suite: Suite
    card_id: str
    person: PersonSpec
    spare_id: str
    spare: PersonSpec
    today: dt.date

    def rid(self) -> str:
        return self.suite.rid("cell")


def _card(c: Cards, md: Any, method: str, request: Any) -> Any:
    return getattr(c.suite.card, method)(request, metadata=md)


def _counter(c: Cards) -> Any:
    return counter_pb2_grpc.CounterServiceStub(c.suite.bank_server.channel)


def _ledger(c: Cards) -> Any:
    return ledger_pb2_grpc.LedgerServiceStub(c.suite.bank_server.channel)


def apply(c: Cards, md: Any) -> Any:
    person = c.suite.person()
    return _card(
        c,
        md,
        "Apply",
        pb.ApplyRequest(
            request_id=c.rid(),
            applicant=c.suite.applicant(person),
            bank_code=BANK,
            delivery=pb.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=INSTANT,
        ),
    )


def apply_batch(c: Cards, md: Any) -> Any:
    return _card(
        c,
        md,
        "ApplyBatch",
        slices(
            pb.ApplyBatchRequest(
                request_id=c.rid(),
                employer=pb.Employer(employer_id=EMPLOYER_ID, name="Matrix Co."),
                bank_code=BANK,
                pickup_branch_id=INSTANT,
                applicants=[c.suite.applicant(c.suite.person())],
            )
        ),
    )


def card_request(rpc: str, message: Any, spare: bool = False, **fields: Any) -> Callable:
    """A card RPC about the card in use (or the spare), with its holder's document."""

    def call(c: Cards, md: Any) -> Any:
        card_id, person = (c.spare_id, c.spare) if spare else (c.card_id, c.person)
        request = message(request_id=c.rid(), card_id=card_id, document=person.document())
        for name, value in fields.items():
            setattr(request, name, value(c) if callable(value) else value)
        return _card(c, md, rpc, request)

    return call


def password_change(c: Cards, md: Any) -> Any:
    return _card(
        c,
        md,
        "ChangeServicePassword",
        pb.ChangeServicePasswordRequest(
            request_id=c.rid(),
            card_id=c.card_id,
            old_password="135790",
            new_password="135790",
            document=c.person.document(),
            card_number=c.suite.card_number(c.card_id),
        ),
    )


def password_reset(c: Cards, md: Any) -> Any:
    return _card(
        c,
        md,
        "ResetServicePassword",
        pb.ResetServicePasswordRequest(
            request_id=c.rid(),
            card_id=c.card_id,
            document=c.person.document(),
            new_password="135790",
            card_number=c.suite.card_number(c.card_id),
        ),
    )


def query(c: Cards, md: Any) -> Any:
    return _card(c, md, "QueryStatus", pb.QueryStatusRequest(card_id=c.card_id))


def handout(c: Cards, md: Any) -> Any:
    return _card(
        c, md, "RecordHandout", pb.RecordHandoutRequest(request_id=c.rid(), card_id=c.card_id)
    )


def employer_return(c: Cards, md: Any) -> Any:
    request = pb.RecordEmployerReturnRequest(
        request_id=c.rid(),
        card_id=c.card_id,
        employer=pb.EmployerDocuments(licence_number=EMPLOYER_ID, legal_representative=True),
    )
    return _card(c, md, "RecordEmployerReturn", request)


def top_up(c: Cards, md: Any) -> Any:
    request = transit_pb2.TopUpRequest(request_id=c.rid(), card_id=c.card_id, amount_fen=100)
    return c.suite.transit.TopUp(request, metadata=md)


def transit_refund(c: Cards, md: Any) -> Any:
    request = transit_pb2.RefundRequest(request_id=c.rid(), card_id=c.card_id, amount_fen=1)
    return c.suite.transit.Refund(request, metadata=md)


def park_pass(c: Cards, md: Any) -> Any:
    request = transit_pb2.PurchaseParkPassRequest(request_id=c.rid(), card_id=c.card_id)
    return c.suite.transit.PurchaseParkPass(request, metadata=md)


def activate_financial(c: Cards, md: Any) -> Any:
    request = counter_pb2.ActivateFinancialRequest(
        request_id=c.rid(),
        card_id=c.card_id,
        document=c.person.document(),
        card_number=c.suite.card_number(c.card_id),
    )
    return _counter(c).ActivateFinancial(request, metadata=md)


def financial_service(c: Cards, md: Any) -> Any:
    request = counter_pb2.FinancialCounterRequest(
        request_id=c.rid(), card_id=c.card_id, document=c.person.document()
    )
    return _counter(c).UnlockFinancial(request, metadata=md)


def home_service(c: Cards, md: Any) -> Any:
    request = counter_pb2.BookHomeServiceRequest(
        request_id=c.rid(),
        card_id=c.card_id,
        branch_id=INSTANT,
        address="1 Chang'an Avenue, Dongcheng, Beijing",
        date=date_pb(c.today + dt.timedelta(days=3)),
        slot=counter_pb2.HOME_SLOT_HOME_MORNING,
        business=counter_pb2.HOME_BUSINESS_HOME_ACTIVATION,
        contact_name="张三",
        contact_phone="13812345678",
    )
    return _counter(c).BookHomeService(request, metadata=md)


def payment(channel: int) -> Callable:
    def call(c: Cards, md: Any) -> Any:
        request = ledger_pb2.DebitRequest(
            request_id=c.rid(),
            card_id=c.card_id,
            amount_fen=1,
            channel=channel,  # type: ignore[arg-type]
            reference="matrix",
            counterparty="shop",
        )
        return _ledger(c).Debit(request, metadata=md)

    return call


# The RPC that performs each operation, and the roles its callers hold.
CELLS: dict[Operation, tuple[Callable[[Cards, Any], Any], tuple[Role, ...]]] = {
    Operation.APPLY: (apply, (Role.COUNTER,)),
    Operation.APPLY_BATCH: (apply_batch, (Role.EMPLOYER,)),
    Operation.ACTIVATE: (card_request("ActivateCard", pb.ActivateCardRequest), (Role.COUNTER,)),
    Operation.TEMPORARY_LOSS: (
        card_request("ReportTemporaryLoss", pb.ReportLossRequest, spare=True),
        (Role.COUNTER,),
    ),
    Operation.FORMAL_LOSS: (
        card_request("ReportFormalLoss", pb.ReportLossRequest, spare=True),
        (Role.COUNTER,),
    ),
    Operation.UNLOCK: (
        card_request("UnlockCard", pb.UnlockCardRequest, spare=True),
        (Role.COUNTER,),
    ),
    Operation.REISSUE: (
        card_request(
            "ReissueCard",
            pb.ReissueCardRequest,
            spare=True,
            delivery=pb.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=INSTANT,
        ),
        (Role.COUNTER,),
    ),
    Operation.REPLACE: (
        card_request(
            "ReplaceCard",
            pb.ReplaceCardRequest,
            reason=pb.REPLACEMENT_REASON_DAMAGED_FACE,
            delivery=pb.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=INSTANT,
        ),
        (Role.COUNTER,),
    ),
    Operation.CANCEL: (
        card_request("CancelCard", pb.CancelCardRequest, spare=True),
        (Role.COUNTER,),
    ),
    Operation.SERVICE_PASSWORD_CHANGE: (password_change, (Role.COUNTER,)),
    Operation.SERVICE_PASSWORD_RESET: (password_reset, (Role.COUNTER,)),
    Operation.QUERY: (query, (Role.COUNTER,)),
    Operation.INFO_CHANGE: (
        card_request("UpdateContactInfo", pb.UpdateContactInfoRequest, mobile="13911112222"),
        (Role.COUNTER,),
    ),
    Operation.RECORD_COLLECTION: (
        card_request(
            "RecordCollection", pb.RecordCollectionRequest, method=pb.COLLECTION_METHOD_AT_BRANCH
        ),
        (Role.COUNTER,),
    ),
    Operation.RECORD_MAILING: (
        card_request(
            "RecordCollection",
            pb.RecordCollectionRequest,
            method=pb.COLLECTION_METHOD_MAIL_DELIVERED,
        ),
        (Role.COUNTER,),
    ),
    Operation.RECORD_HANDOUT: (handout, (Role.EMPLOYER,)),
    Operation.RECORD_EMPLOYER_RETURN: (employer_return, (Role.COUNTER,)),
    Operation.TOP_UP: (top_up, (Role.COUNTER,)),
    Operation.TRANSIT_REFUND: (transit_refund, (Role.COUNTER,)),
    Operation.PARK_PASS: (park_pass, (Role.COUNTER,)),
    Operation.ACTIVATE_FINANCIAL: (activate_financial, (Role.COUNTER,)),
    Operation.FINANCIAL_SERVICE: (financial_service, (Role.COUNTER,)),
    Operation.HOME_SERVICE: (home_service, (Role.COUNTER,)),
    Operation.COUNTER_PAYMENT: (
        payment(ledger_pb2.PAYMENT_CHANNEL_PAYMENT_COUNTER),
        (Role.COUNTER, Role.SERVICE),
    ),
    Operation.NON_COUNTER_PAYMENT: (payment(ledger_pb2.PAYMENT_CHANNEL_ATM), (Role.BANK,)),
}


def caller(suite: Suite, channel: Channel, roles: tuple[Role, ...], person: PersonSpec) -> Any:
    """The credential a client of ``channel`` lawfully holds for a cell: online and in the
    transit app the holder's own (an employer's own for its batch and hand-out online), at a
    counter an operator's (the employer's own at the issuing bank's branch)."""
    employer = Role.EMPLOYER in roles
    if channel in (Channel.ONLINE, Channel.TRANSIT_APP):
        if employer and channel is Channel.ONLINE:
            return suite.token(channel=channel, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID)
        return suite.at(channel, person)
    claims: dict[str, Any] = {"outlet_id": f"{channel.value}-1"}
    if channel in (Channel.BANK_BRANCH, Channel.BANK_HOTLINE):
        claims = {"bank_code": BANK, "outlet_id": INSTANT}
    if employer and channel is Channel.BANK_BRANCH:
        return suite.token(channel=channel, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID, **claims)
    if Role.BANK in roles and channel in (Channel.BANK_BRANCH, Channel.BANK_HOTLINE):
        return suite.token(channel=channel, roles=(Role.BANK,), caller="icbc-core", **claims)
    name = f"{channel.value}-client"
    return suite.token(channel=channel, roles=(Role.COUNTER,), caller=name, **claims)


# A cell the matrix leaves out is refused by the channel matrix itself, or before it by the
# authorization matrix when no client of that channel may hold a role the operation needs.
REFUSED_AT_THE_DOOR = {
    "PERMISSION_DENIED CHANNEL_NOT_ALLOWED A3.1",
    "PERMISSION_DENIED ROLE_NOT_ALLOWED ",
}


def outcome(call: Callable[[], Any]) -> str:
    """``ok``, or the refusal as ``CODE REASON rule``."""
    try:
        call()
    except grpc.RpcError as error:
        decoded = from_rpc_error(error)
        return f"{error.code().name} {decoded.reason} {decoded.rule}"  # type: ignore[attr-defined]
    return "ok"


def test_A3_1_every_cell_of_the_channel_matrix(suite: Suite, test_clock: SharedTestClock) -> None:
    """个人或用人单位可自主选择线上或线下渠道办理社会保障卡服务事项。"""
    assert set(CELLS) == set(Operation)  # a new operation gets its cells walked too
    card_id, person = active_card(suite)
    spare_id, spare = active_card(suite)
    cards = Cards(suite, card_id, person, spare_id, spare, beijing_date(test_clock.now()))
    password_reset(cards, suite.at(Channel.ONLINE, person))  # the old password changes present
    wrong = []
    for operation, (call, roles) in CELLS.items():
        for channel in PUBLIC:
            md = caller(suite, channel, roles, person)
            seen = outcome(lambda: call(cards, md))  # noqa: B023 - called at once
            allowed = channel in MATRIX[operation]
            refused = seen in REFUSED_AT_THE_DOOR
            if allowed and (refused or "CHANNEL_NOT_ALLOWED" in seen):
                wrong.append(f"{operation.name} from {channel.value}: allowed, got {seen}")
            if not allowed and not refused:
                wrong.append(f"{operation.name} from {channel.value}: not allowed, got {seen}")
    assert not wrong, "\n".join(wrong)
