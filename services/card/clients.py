"""Typed ports from the card service to identity, the bank and transit.

Each method sends one request with the idempotency key it is given (sagas pass
``<saga_id>:<step>``), a deadline, and the card service's own credential; it returns plain
values, or raises the refusal as the DomainError the other service raised (reason and rule
intact), or an UNAVAILABLE DomainError for a transport failure, which the saga retries.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from google.type.date_pb2 import Date

from services.platform.clients import DEFAULT_DEADLINE, ServiceCredential, call, channel_to
from services.platform.config import ServiceConfig
from services.platform.errors import DomainError, Kind
from services.platform.protoconv import enum_name, enum_value, to_timestamp
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc, ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc
from sscard.transit.v1 import transit_pb2, transit_pb2_grpc


def _document(doc_type: str, number: str) -> common_pb2.IdentityDocument:
    return common_pb2.IdentityDocument(
        type=enum_value(common_pb2.DocumentType, doc_type), number=number
    )


def _facts(facts: dict[str, Any]) -> bank_pb2.IdentityFacts:
    """Identity facts kept in a saga (plain JSON) as the bank's message."""
    message = bank_pb2.IdentityFacts(
        name=facts["name"],
        document=_document(facts["document"]["type"], facts["document"]["number"]),
    )
    if "document_valid_until" in facts:
        message.document_valid_until.CopyFrom(Date(**facts["document_valid_until"]))
    return message


@dataclass(frozen=True)
class Verified:
    """What identity verified: stored in the saga, compared by the bank (A4.4)."""

    person_id: str
    facts: dict[str, Any]  # bank_pb2.IdentityFacts as a dict
    legacy_generation: int = 0  # an older card the person holds (A27)


@dataclass(frozen=True)
class PersonEvent:
    """One event of the identity service's feed, as far as cards care."""

    sequence: int
    person_id: str
    died: bool  # PERSON_DIED (A21.2)


class IdentityPort:
    def __init__(self, config: ServiceConfig, credential: ServiceCredential) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel_to(config, "identity"))
        self._credential = credential

    def reserve(
        self,
        request_id: str,
        doc_type: str,
        number: str,
        name: str,
        card_id: str,
        kind: str,
        replaces_card_id: str = "",
        person_id: str = "",
    ) -> Verified:
        answer = call(
            self._stub.ReserveIssuance,
            identity_pb2.ReserveIssuanceRequest(
                request_id=request_id,
                document=_document(doc_type, number),
                name=name,
                card_id=card_id,
                kind=enum_value(identity_pb2.IssuanceKind, kind),
                replaces_card_id=replaces_card_id,
                person_id=person_id,
            ),
            self._credential,
        )
        person = answer.person
        facts: dict[str, Any] = {
            "name": person.name,
            "document": {
                "type": enum_name(common_pb2.DocumentType, person.document.type),
                "number": person.document.number,
            },
        }
        if person.HasField("document_valid_until"):
            valid = person.document_valid_until
            facts["document_valid_until"] = {
                "year": valid.year,
                "month": valid.month,
                "day": valid.day,
            }
        return Verified(person.person_id, facts, person.legacy_card_generation)

    def confirm(self, request_id: str, card_id: str) -> None:
        call(
            self._stub.ConfirmIssuance,
            identity_pb2.ConfirmIssuanceRequest(request_id=request_id, card_id=card_id),
            self._credential,
        )

    def settled(self, person_id: str) -> bool:
        """Whether the registry shows the person's HR and medical business settled (A19.1)."""
        answer = call(
            self._stub.GetPerson,
            identity_pb2.GetPersonRequest(person=identity_pb2.PersonRef(person_id=person_id)),
            self._credential,
        )
        return bool(answer.person.HasField("business_settled_on"))

    def events(self, after: int, limit: int) -> list[PersonEvent]:
        """The feed's events after position ``after`` (A21.2)."""
        answer = call(
            self._stub.ListPersonEvents,
            identity_pb2.ListPersonEventsRequest(after_sequence=after, limit=limit),
            self._credential,
        )
        return [
            PersonEvent(
                e.sequence, e.person_id, e.type == identity_pb2.PERSON_EVENT_TYPE_PERSON_DIED
            )
            for e in answer.events
        ]

    def release(self, request_id: str, card_id: str) -> None:
        call(
            self._stub.ReleaseIssuance,
            identity_pb2.ReleaseIssuanceRequest(request_id=request_id, card_id=card_id),
            self._credential,
        )


@dataclass(frozen=True)
class Order:
    order_id: str
    due_date: dt.date | None
    card_number: str  # set when made on the spot (A22.3)


def card_account(card_id: str) -> str:
    """A payout destination naming a card's account in the bank service (CloseFinancial)."""
    return f"card:{card_id}"


def older_card_account(bank_code: str, card_number: str) -> str:
    """The id under which the bank service keeps the account of a 1st / 2nd generation card
    (A27.3): ``older:<bank code>:<bank card number>``."""
    return f"older:{bank_code}:{card_number}"


class BankPort:
    def __init__(self, config: ServiceConfig, credential: ServiceCredential) -> None:
        channel = channel_to(config, "bank")
        self._stub = bank_pb2_grpc.BankServiceStub(channel)
        self._ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        self._credential = credential

    def suspend_non_counter(self, request_id: str, card_id: str, reason: str) -> None:
        """The account's online, ATM and third-party payments stop: six months after the SS
        function was cancelled (SS_CANCELLED, A19.2), or the holder died (HOLDER_DIED, A21.2)."""
        call(
            self._ledger.SuspendNonCounter,
            ledger_pb2.SuspendNonCounterRequest(
                request_id=request_id,
                card_id=card_id,
                reason=enum_value(ledger_pb2.NonCounterReason, reason),
            ),
            self._credential,
        )

    def close_financial(
        self,
        request_id: str,
        card_id: str,
        payout_destination: str,
        reference: str,
        holder: tuple[str, str] | None = None,
    ) -> None:
        """A19.1: the account's whole balance is paid out as the holder directs; it closes.
        ``holder`` (document type and number): the bank checks the account is theirs (A27.3)."""
        call(
            self._ledger.CloseFinancial,
            ledger_pb2.CloseFinancialRequest(
                request_id=request_id,
                card_id=card_id,
                payout_destination=payout_destination,
                reference=reference,
                document=_document(*holder) if holder else None,
            ),
            self._credential,
        )

    def open_account(
        self,
        request_id: str,
        card_id: str,
        bank_code: str,
        presented: dict[str, Any],
        verified: dict[str, Any],
    ) -> str:
        answer = call(
            self._stub.OpenAccount,
            bank_pb2.OpenAccountRequest(
                request_id=request_id,
                card_id=card_id,
                bank_code=bank_code,
                presented=_facts(presented),
                verified=_facts(verified),
            ),
            self._credential,
        )
        return str(answer.account_id)

    def close_account(self, request_id: str, account_id: str) -> None:
        call(
            self._stub.CloseAccount,
            bank_pb2.CloseAccountRequest(request_id=request_id, account_id=account_id),
            self._credential,
        )

    def order(
        self,
        request_id: str,
        card_id: str,
        bank_code: str,
        account_id: str,
        applied_at: dt.datetime,
        applied_at_branch_id: str,
        delivery: str,
        pickup_branch_id: str,
        kind: str = "FIRST",
    ) -> Order:
        answer = call(
            self._stub.CreateProductionOrder,
            bank_pb2.CreateProductionOrderRequest(
                request_id=request_id,
                card_id=card_id,
                bank_code=bank_code,
                account_id=account_id,
                kind=enum_value(bank_pb2.ProductionKind, kind),
                applied_at=to_timestamp(applied_at),
                applied_at_branch_id=applied_at_branch_id,
                delivery=enum_value(bank_pb2.Delivery, delivery),
                pickup_branch_id=pickup_branch_id,
            ),
            self._credential,
        )
        due = answer.due_date
        due_date = dt.date(due.year, due.month, due.day) if due.year else None
        number = answer.card_number if answer.status == bank_pb2.ORDER_STATUS_PRODUCED else ""
        return Order(answer.order_id, due_date, number)

    def suspend_for_loss(
        self, request_id: str, card_id: str, loss: str, deadline: float = DEFAULT_DEADLINE
    ) -> None:
        call(
            self._stub.SuspendForLoss,
            bank_pb2.SuspendForLossRequest(
                request_id=request_id,
                card_id=card_id,
                kind=enum_value(bank_pb2.LossKind, loss),
            ),
            self._credential,
            deadline,
        )

    def lift_loss(self, request_id: str, card_id: str) -> None:
        call(
            self._stub.LiftLossSuspension,
            bank_pb2.LiftLossSuspensionRequest(request_id=request_id, card_id=card_id),
            self._credential,
        )

    def recall(self, request_id: str, card_id: str, reason: str) -> None:
        call(
            self._stub.RecallCard,
            bank_pb2.RecallCardRequest(
                request_id=request_id,
                card_id=card_id,
                reason=enum_value(bank_pb2.RecallReason, reason),
            ),
            self._credential,
        )

    def recalled(self, card_id: str) -> bool:
        """Whether the bank has recorded the card taken back (A21)."""
        try:
            call(
                self._stub.GetCardRecall,
                bank_pb2.GetCardRecallRequest(card_id=card_id),
                self._credential,
            )
        except DomainError as refused:
            if refused.kind is Kind.NOT_FOUND:
                return False
            raise
        return True

    def cancel_order(self, request_id: str, order_id: str) -> None:
        call(
            self._stub.CancelProductionOrder,
            bank_pb2.CancelProductionOrderRequest(request_id=request_id, order_id=order_id),
            self._credential,
        )


class TransitPort:
    """The transit service's wallet and park pass, as the card service's sagas move them: the
    park pass to the new card of a replacement when the holder asks at collection (A16.4), and
    a card's transit balance to a bank account when a replacement is collected (A16.3) or a card
    is cancelled at the issuing bank (A19.1)."""

    def __init__(self, config: ServiceConfig, credential: ServiceCredential) -> None:
        self._stub = transit_pb2_grpc.TransitServiceStub(channel_to(config, "transit"))
        self._credential = credential

    def move_park_pass(self, request_id: str, old_card_id: str, new_card_id: str) -> None:
        """A16.4: the old card's pass (if any) moves to the new card."""
        call(
            self._stub.TransferParkPass,
            transit_pb2.TransferParkPassRequest(
                request_id=request_id, from_card_id=old_card_id, to_card_id=new_card_id
            ),
            self._credential,
        )

    def refund_balance(
        self, request_id: str, card_id: str, to_card_id: str, cancellation: bool = False
    ) -> str:
        """Move the card's whole transit balance to ``to_card_id``'s bank account (A16.3), or
        with ``cancellation`` to the card's own account (A19.1); the card's wallet closes. A
        zero balance succeeds and moves nothing. Returns the refund's id ("" if nothing moved);
        the money reaches the bank after this returns (``refund_arrived``)."""
        reason = (
            transit_pb2.REFUND_REASON_CANCELLATION
            if cancellation
            else transit_pb2.REFUND_REASON_REPLACEMENT
        )
        answer = call(
            self._stub.RefundBalance,
            transit_pb2.RefundBalanceRequest(
                request_id=request_id, card_id=card_id, to_card_id=to_card_id, reason=reason
            ),
            self._credential,
        )
        return str(answer.refund_id)

    def record_card_status(
        self,
        request_id: str,
        card_id: str,
        person_id: str,
        status: str,
        version: int,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        """Tell transit the card's status as of ``version`` and its holder (its view of the
        card, which decides top-ups, the app's too, without asking this service)."""
        call(
            self._stub.RecordCardStatus,
            transit_pb2.RecordCardStatusRequest(
                request_id=request_id,
                card_id=card_id,
                status=enum_value(card_pb2.CardStatus, status),
                version=version,
                person_id=person_id,
            ),
            self._credential,
            deadline,
        )

    def refund_arrived(self, refund_id: str) -> bool:
        """Whether the bank has credited the refund; a refund the bank refused for good is a
        refusal (REFUND_RETURNED), since its money went back to the wallet."""
        answer = call(
            self._stub.GetRefund,
            transit_pb2.GetRefundRequest(refund_id=refund_id),
            self._credential,
        )
        if answer.state == transit_pb2.REFUND_STATE_RETURNED_TO_WALLET:
            raise DomainError(
                "REFUND_RETURNED",
                f"the bank refused the transit refund: {answer.last_error}",
                rule="A19.1",
            )
        return bool(answer.state == transit_pb2.REFUND_STATE_ARRIVED)
