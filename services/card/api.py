"""The card gRPC servicer: proto -> command -> use case -> proto, nothing else.

Mutating calls run through the idempotency runner in one unit of work; calls that start sagas
wake the orchestrator once their transaction has committed.
"""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from services.card import service
from services.card.domain import card as rules
from services.card.domain.application import Applicant
from services.card.domain.card import Card, CollectionMethod, Delivery
from services.card.saga import Orchestrator
from services.card.store import CardUnitOfWork, SagaRecord
from services.platform.auth import current_caller
from services.platform.clock import Clock
from services.platform.db import Database
from services.platform.errors import DomainError
from services.platform.idempotency import IdempotencyStore, Idempotent
from services.platform.pii import PiiCipher
from services.platform.protoconv import to_date, to_timestamp
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from sscard.common.v1 import common_pb2

M = TypeVar("M", bound=Message)

_DELIVERY_FROM_PB = {pb.BRANCH_PICKUP: Delivery.BRANCH_PICKUP, pb.MAIL: Delivery.MAIL}
_COLLECTION_FROM_PB = {
    pb.AT_BRANCH: CollectionMethod.AT_BRANCH,
    pb.MAIL_SENT: CollectionMethod.MAIL_SENT,
    pb.MAIL_DELIVERED: CollectionMethod.MAIL_DELIVERED,
    pb.BY_EMPLOYER: CollectionMethod.BY_EMPLOYER,
}


def _doc_type(document: common_pb2.IdentityDocument) -> str:
    if document.type == common_pb2.DOCUMENT_TYPE_UNSPECIFIED:
        return ""
    return str(common_pb2.DocumentType.Name(document.type))


def _applicant(msg: pb.Applicant) -> Applicant:
    return Applicant(
        document_type=_doc_type(msg.document),
        document_number=msg.document.number,
        name=msg.name,
        photo=msg.photo,
        occupation=msg.occupation,
        mobile=msg.mobile,
        address=msg.address,
    )


def card_pb(card: Card, view: dict[str, Any] | None, history: Any = None) -> pb.Card:
    answer = pb.Card(
        card_id=card.card_id,
        person_id=card.person_id,
        holder_name=card.holder_name,
        bank_code=card.bank_code,
        generation=rules.GENERATION,
        status=card.status.value,
        status_text=rules.progress(card),
        delivery=card.delivery.value,
        pickup_branch_id=card.pickup_branch_id,
        employer_id=card.employer_id,
        applied_at=to_timestamp(card.applied_at),
        due_date=to_date(card.due_date),
        card_number_masked=rules.mask_card_number(card.card_number) if card.card_number else "",
    )
    if view is not None:
        answer.document.type = view["doc_type"]
        answer.document.number_masked = view["doc_masked"]
        answer.mobile_masked = view["mobile_masked"]
    if history is not None:
        transitions, notices = history
        for t in transitions:
            answer.transitions.add(
                from_status=t.from_status.value if t.from_status else "CARD_STATUS_UNSPECIFIED",
                to_status=t.to_status.value,
                at=to_timestamp(t.at),
                channel=t.channel.value,
                outlet_id=t.outlet_id,
                operator_id=t.operator_id,
                rule=t.rule,
                reason=t.reason,
            )
        for n in notices:
            answer.notices.add(
                at=to_timestamp(n.at), recipient=n.recipient, text=n.text, rule=n.rule
            )
    return answer


def _application_pb(saga: SagaRecord, card: Card, step: str) -> pb.Application:
    return pb.Application(
        saga_id=saga.saga_id,
        card_id=saga.card_id,
        state=saga.state,
        step=step,
        retries=saga.retries,
        last_error=saga.last_error,
        refusal_reason=saga.refusal_reason,
        refusal_rule=saga.refusal_rule,
        refusal_message=saga.refusal_message,
        card_status=card.status.value,
    )


def _refusal_pb(index: int, error: DomainError) -> pb.BatchResult:
    return pb.BatchResult(
        index=index,
        reason=error.reason,
        rule=error.rule,
        violations=[
            pb.FieldProblem(field=v.field, description=v.description) for v in error.violations
        ],
    )


class CardApi(card_pb2_grpc.CardServiceServicer):
    def __init__(
        self,
        db: Database,
        cipher: PiiCipher,
        clock: Clock,
        keys: IdempotencyStore,
        orchestrator: Orchestrator,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._orchestrator = orchestrator
        self._once: Idempotent[CardUnitOfWork] = Idempotent(keys, self._uow)

    def _uow(self, readonly: bool = False) -> CardUnitOfWork:
        return CardUnitOfWork(self._db, self._cipher, readonly)

    def _card_answer(self, uow: CardUnitOfWork, card: Card, history: bool = False) -> pb.Card:
        view = uow.cards.view(card.card_id)
        return card_pb(card, view, service.history(uow, card.card_id) if history else None)

    # -- applications

    def Apply(self, request: pb.ApplyRequest, context: grpc.ServicerContext) -> pb.ApplyResponse:
        caller = current_caller()
        cmd = service.ApplicationCommand(
            _applicant(request.applicant),
            request.bank_code,
            _DELIVERY_FROM_PB.get(request.delivery),
            request.pickup_branch_id,
        )

        def work(uow: CardUnitOfWork) -> pb.ApplyResponse:
            started = service.apply(uow, cmd, caller, self._clock)
            return pb.ApplyResponse(
                card_id=started.card.card_id,
                saga_id=started.saga_id,
                status=started.card.status.value,
            )

        answer = self._once.call("Apply", request, pb.ApplyResponse, work)
        self._orchestrator.poke()
        return answer

    def ApplyBatch(
        self, request: pb.ApplyBatchRequest, context: grpc.ServicerContext
    ) -> pb.ApplyBatchResponse:
        caller = current_caller()
        cmd = service.BatchCommand(
            batch_id=request.request_id,
            employer_id=request.employer.employer_id,
            employer_name=request.employer.name,
            bank_code=request.bank_code,
            pickup_branch_id=request.pickup_branch_id,
            applicants=[_applicant(a) for a in request.applicants],
        )

        def work(uow: CardUnitOfWork) -> pb.ApplyBatchResponse:
            outcome = service.apply_batch(uow, cmd, caller, self._clock)
            answer = pb.ApplyBatchResponse(
                batch_id=cmd.batch_id,
                accepted=outcome.accepted,
                refused=len(outcome.items) - outcome.accepted,
            )
            for item in outcome.items:
                if item.started is not None:
                    answer.results.add(
                        index=item.index,
                        card_id=item.started.card.card_id,
                        saga_id=item.started.saga_id,
                    )
                elif item.refusal is not None:
                    answer.results.append(_refusal_pb(item.index, item.refusal))
            return answer

        answer = self._once.call("ApplyBatch", request, pb.ApplyBatchResponse, work)
        self._orchestrator.poke(answer.accepted)
        return answer

    def GetBatch(
        self, request: pb.GetBatchRequest, context: grpc.ServicerContext
    ) -> pb.GetBatchResponse:
        caller = current_caller()
        with self._uow(readonly=True) as uow:
            batch, progress, refusals = service.get_batch(uow, request.batch_id, caller)
        running = progress.get("RUNNING", 0) + progress.get("COMPENSATING", 0)
        return pb.GetBatchResponse(
            batch_id=batch.batch_id,
            employer_id=batch.employer_id,
            total=batch.total,
            refused_at_submission=batch.refused_at_submission,
            in_progress=running,
            completed=progress.get("COMPLETED", 0),
            refused=progress.get("FAILED", 0),
            finished=running == 0,
            refusals=[
                pb.BatchResult(
                    card_id=r.card_id,
                    saga_id=r.saga_id,
                    reason=r.refusal_reason,
                    rule=r.refusal_rule,
                )
                for r in refusals
            ],
        )

    def GetApplication(
        self, request: pb.GetApplicationRequest, context: grpc.ServicerContext
    ) -> pb.Application:
        caller = current_caller()
        with self._uow(readonly=True) as uow:
            saga, card = service.get_application(uow, request.card_id, request.saga_id, caller)
        return _application_pb(saga, card, self._orchestrator.step_name(saga))

    # -- reads

    def GetCard(self, request: pb.GetCardRequest, context: grpc.ServicerContext) -> pb.Card:
        caller = current_caller()
        with self._uow(readonly=True) as uow:
            card = service.get_card(uow, request.card_id, caller)
            return self._card_answer(uow, card, request.include_history)

    def QueryStatus(
        self, request: pb.QueryStatusRequest, context: grpc.ServicerContext
    ) -> pb.QueryStatusResponse:
        caller = current_caller()
        with self._uow(readonly=True) as uow:
            card = service.query_status(
                uow,
                request.card_id,
                _doc_type(request.document),
                request.document.number,
                caller,
            )
        return pb.QueryStatusResponse(
            card_id=card.card_id,
            status=card.status.value,
            progress=rules.progress(card),
        )

    # -- production, delivery, activation

    def RecordProduced(
        self, request: pb.RecordProducedRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        caller = current_caller()

        def work(uow: CardUnitOfWork) -> pb.Card:
            card = service.record_produced(
                uow, request.card_id, request.card_number, caller, self._clock
            )
            return self._card_answer(uow, card)

        return self._once.call("RecordProduced", request, pb.Card, work)

    def RecordCollection(
        self, request: pb.RecordCollectionRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        caller = current_caller()
        cmd = service.CollectionCommand(
            card_id=request.card_id,
            method=_COLLECTION_FROM_PB.get(request.method),
            doc_type=_doc_type(request.document),
            doc_number=request.document.number,
            licence_number=request.employer.licence_number,
            legal_representative=request.employer.legal_representative,
            authorisation_letter_ref=request.employer.authorisation_letter_ref,
        )

        def work(uow: CardUnitOfWork) -> pb.Card:
            return self._card_answer(uow, service.record_collection(uow, cmd, caller, self._clock))

        return self._once.call("RecordCollection", request, pb.Card, work)

    def RecordHandout(
        self, request: pb.RecordHandoutRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        caller = current_caller()

        def work(uow: CardUnitOfWork) -> pb.Card:
            card = service.record_handout(uow, request.card_id, caller, self._clock)
            return self._card_answer(uow, card)

        return self._once.call("RecordHandout", request, pb.Card, work)

    def ActivateCard(
        self, request: pb.ActivateCardRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        caller = current_caller()

        def work(uow: CardUnitOfWork) -> pb.Card:
            card = service.activate(
                uow,
                request.card_id,
                _doc_type(request.document),
                request.document.number,
                caller,
                self._clock,
            )
            return self._card_answer(uow, card)

        return self._once.call("ActivateCard", request, pb.Card, work)
