"""The card gRPC servicer: proto -> command -> use case -> proto, nothing else.

Mutating calls run through the idempotency runner in one unit of work; calls that start sagas
wake the orchestrator once their transaction has committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc

from services.card import service
from services.card.clients import BankPort, IdentityPort, TransitPort
from services.card.domain import card as rules
from services.card.domain.agents import AgentPresence
from services.card.domain.application import Applicant, OlderCardChoice
from services.card.domain.card import Card, CollectionMethod, Delivery
from services.card.domain.password import check_new_password, wrong_password
from services.card.saga import NEEDS_ATTENTION, Orchestrator
from services.card.store import (
    ACTIVE_SAGA_STATES,
    CardUnitOfWork,
    SagaRecord,
    SagaSummary,
    wall_clock,
)
from services.card.watch import FINISHED, SagaWatch
from services.platform import documents
from services.platform.auth import Channel, current_caller
from services.platform.channels import Operation
from services.platform.clock import Clock, beijing_date
from services.platform.db import Database
from services.platform.errors import DomainError, FieldViolation, Kind, Violations, invalid
from services.platform.idempotency import IdempotencyStore, Idempotent
from services.platform.passwords import Argon2Hasher
from services.platform.pii import PiiCipher
from services.platform.protoconv import enum_name, enum_value, from_date, to_date, to_timestamp
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from sscard.common.v1 import common_pb2

_DELIVERY_FROM_PB = {
    pb.DELIVERY_BRANCH_PICKUP: Delivery.BRANCH_PICKUP,
    pb.DELIVERY_MAIL: Delivery.MAIL,
}
_COLLECTION_FROM_PB = {
    pb.COLLECTION_METHOD_AT_BRANCH: CollectionMethod.AT_BRANCH,
    pb.COLLECTION_METHOD_MAIL_SENT: CollectionMethod.MAIL_SENT,
    pb.COLLECTION_METHOD_MAIL_DELIVERED: CollectionMethod.MAIL_DELIVERED,
    pb.COLLECTION_METHOD_BY_EMPLOYER: CollectionMethod.BY_EMPLOYER,
}


def _doc_type(document: common_pb2.IdentityDocument) -> str:
    return enum_name(common_pb2.DocumentType, document.type)


def _employer_documents(documents: pb.EmployerDocuments) -> service.EmployerDocuments:
    return service.EmployerDocuments(
        documents.licence_number,
        documents.legal_representative,
        documents.authorisation_letter_ref,
    )


def _document(document: common_pb2.IdentityDocument, field: str, today: dt.date) -> tuple[str, str]:
    """A presented document's type and number. A malformed one is refused at the door as the
    identity service refuses it (INVALID_DOCUMENT, A4.1); an absent one is the use case's to
    judge."""
    doc_type = _doc_type(document)
    if document.number:
        v = Violations()
        documents.parse_document_into(
            documents.known_type(doc_type), document.number, today, v, field
        )
        documents.invalid_document(v)
    return doc_type, document.number


def _agent(request: Any, today: dt.date) -> AgentPresence | None:
    if not request.HasField("agent"):
        return None
    a = request.agent
    return AgentPresence(
        *_document(a.agent_document, "agent.agent_document", today),
        a.agent_name,
        *_document(a.principal_document, "agent.principal_document", today),
        a.authorisation_ref,
    )


def _presented(request: Any, today: dt.date) -> service.Presented:
    return service.Presented(
        *_document(request.document, "document", today), _agent(request, today)
    )


def _applicant(msg: pb.Applicant) -> Applicant:
    v = Violations()
    valid_until = from_date(msg.document_valid_until, "applicant.document_valid_until", v)
    v.raise_if_any(rule="A5.1")
    return Applicant(
        document_type=_doc_type(msg.document),
        document_number=msg.document.number,
        name=msg.name,
        photo=msg.photo,
        occupation=msg.occupation,
        mobile=msg.mobile,
        address=msg.address,
        document_valid_until=valid_until,
    )


_BATCH_HEADER = ("request_id", "employer", "bank_code", "pickup_branch_id")


def _read_batch(
    requests: Iterator[pb.ApplyBatchRequest],
) -> tuple[pb.ApplyBatchRequest, list[Applicant], str]:
    """The batch an ApplyBatch stream carries: its header (the first message's; a later message
    repeats it or leaves it empty), its applicants in stream order, and a fingerprint of the
    whole for its request_id, whatever the slicing. Reading stops one applicant past the limit
    of a batch, which ``apply_batch`` refuses (A6.1), so an endless stream holds no more."""
    header = pb.ApplyBatchRequest()
    applicants: list[Applicant] = []
    digest = hashlib.sha256()
    for position, message in enumerate(requests):
        if position == 0:
            header.CopyFrom(message)
            header.ClearField("applicants")
            digest.update(header.SerializeToString(deterministic=True))
        else:
            for name in _BATCH_HEADER:
                value = getattr(message, name)
                if value != type(value)() and value != getattr(header, name):
                    raise invalid(
                        "BATCH_HEADER_CHANGED",
                        [FieldViolation(name, "differs from the first message of the batch")],
                    )
        for applicant in message.applicants:
            serialized = applicant.SerializeToString(deterministic=True)
            digest.update(len(serialized).to_bytes(8, "big") + serialized)
            applicants.append(_applicant(applicant))
            if len(applicants) > service.MAX_BATCH:
                return header, applicants, digest.hexdigest()
    return header, applicants, digest.hexdigest()


def card_pb(card: Card, view: dict[str, Any] | None, history: Any = None) -> pb.Card:
    answer = pb.Card(
        card_id=card.card_id,
        person_id=card.person_id,
        holder_name=card.holder_name,
        bank_code=card.bank_code,
        generation=rules.GENERATION,
        status=enum_value(pb.CardStatus, card.status.value),
        status_text=rules.progress(card),
        delivery=enum_value(pb.Delivery, card.delivery.value),
        pickup_branch_id=card.pickup_branch_id,
        employer_id=card.employer_id,
        applied_at=to_timestamp(card.applied_at),
        due_date=to_date(card.due_date),
        card_number_masked=rules.mask_card_number(card.card_number) if card.card_number else "",
    )
    if view is not None:
        answer.document.type = enum_value(common_pb2.DocumentType, view["doc_type"])
        answer.document.number_masked = view["doc_masked"]
        answer.mobile_masked = view["mobile_masked"]
    if history is not None:
        transitions, notices = history
        for t in transitions:
            answer.transitions.add(
                from_status=enum_value(pb.CardStatus, t.from_status.value if t.from_status else ""),
                to_status=enum_value(pb.CardStatus, t.to_status.value),
                at=to_timestamp(t.at),
                channel=enum_value(common_pb2.Channel, t.channel.value),
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
        state=enum_value(pb.SagaState, saga.state),
        step=step,
        retries=saga.retries,
        last_error=saga.last_error,
        refusal_reason=saga.refusal_reason,
        refusal_rule=saga.refusal_rule,
        refusal_message=saga.refusal_message,
        card_status=enum_value(pb.CardStatus, card.status.value),
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


def _with_notice(answer: pb.Card, notice: rules.Notice) -> None:
    """A notice written after the change it follows, added to the change's answer."""
    answer.status_text = f"{answer.status_text}; {notice.text}"
    answer.notices.add(
        at=to_timestamp(notice.at), recipient=notice.recipient, text=notice.text, rule=notice.rule
    )


class CardApi(card_pb2_grpc.CardServiceServicer):
    def __init__(
        self,
        db: Database,
        cipher: PiiCipher,
        clock: Clock,
        keys: IdempotencyStore,
        orchestrator: Orchestrator,
        hasher: Argon2Hasher,
        identity: IdentityPort,
        bank: BankPort,
        transit: TransitPort,
        watch: SagaWatch,
    ) -> None:
        self._transit = transit
        self._watch = watch
        self._hasher = hasher
        self._identity = identity
        self._bank = bank
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._orchestrator = orchestrator
        self._once: Idempotent[CardUnitOfWork] = Idempotent(keys, self._uow)

    def _uow(self, readonly: bool = False) -> CardUnitOfWork:
        return CardUnitOfWork(self._db, self._cipher, readonly)

    def _today(self) -> dt.date:
        return beijing_date(self._clock.now())

    def _changed(
        self, method: str, request: Any, work: Callable[[CardUnitOfWork], pb.Card]
    ) -> pb.Card:
        """Run a change of cards at most once; a status change that stops top-ups reaches
        transit before the answer (``service.push_status_at_once``), and the sagas that carry
        every status change to transit start at once."""
        pushes: list[SagaRecord] = []

        def run(uow: CardUnitOfWork) -> pb.Card:
            answer = work(uow)
            pushes.extend(uow.cards.status_pushes)
            return answer

        answer = self._once.call(method, request, pb.Card, run)
        if pushes:
            notices = service.push_status_at_once(
                self._uow, self._transit.record_card_status, pushes, self._clock
            )
            for notice in notices:
                _with_notice(answer, notice)
            self._orchestrator.poke(len(pushes))
        return answer

    def _card_answer(self, uow: CardUnitOfWork, card: Card, history: bool = False) -> pb.Card:
        view = uow.cards.view(card.card_id)
        return card_pb(card, view, service.history(uow, card.card_id) if history else None)

    # -- applications

    def Apply(self, request: pb.ApplyRequest, context: grpc.ServicerContext) -> pb.ApplyResponse:
        caller = current_caller()
        older = request.older_card
        cmd = service.ApplicationCommand(
            _applicant(request.applicant),
            request.bank_code,
            _DELIVERY_FROM_PB.get(request.delivery),
            request.pickup_branch_id,
            OlderCardChoice(older.bank_code, older.card_number, older.payout_destination.strip())
            if older.cancel_financial
            else None,
        )

        def work(uow: CardUnitOfWork) -> pb.ApplyResponse:
            started = service.apply(uow, cmd, caller, self._clock, _agent(request, self._today()))
            return pb.ApplyResponse(
                card_id=started.card.card_id,
                saga_id=started.saga_id,
                status=enum_value(pb.CardStatus, started.card.status.value),
            )

        answer = self._once.call("Apply", request, pb.ApplyResponse, work)
        self._orchestrator.poke()
        return answer

    def ApplyBatch(
        self, request_iterator: Iterator[pb.ApplyBatchRequest], context: grpc.ServicerContext
    ) -> pb.ApplyBatchResponse:
        caller = current_caller()
        header, applicants, fp = _read_batch(request_iterator)
        cmd = service.BatchCommand(
            batch_id=header.request_id,
            employer_id=header.employer.employer_id,
            employer_name=header.employer.name,
            bank_code=header.bank_code,
            pickup_branch_id=header.pickup_branch_id,
            applicants=applicants,
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

        answer = self._once.run(
            "ApplyBatch", header.request_id, header, pb.ApplyBatchResponse, work, fp
        )
        self._orchestrator.poke(answer.accepted)
        return answer

    def GetBatch(
        self, request: pb.GetBatchRequest, context: grpc.ServicerContext
    ) -> pb.GetBatchResponse:
        caller = current_caller()
        with self._uow(readonly=True) as uow:
            batch, progress, refusals = service.get_batch(uow, request.batch_id, caller)
        running = sum(progress.get(state, 0) for state in (*ACTIVE_SAGA_STATES, NEEDS_ATTENTION))
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

    def WatchSaga(
        self, request: pb.WatchSagaRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SagaEvent]:
        caller = current_caller()
        with self._uow(readonly=True) as uow:
            saga = service.watched_saga(uow, request.saga_id, caller)
        finished = saga.state in FINISHED
        for event in self._watch.follow(
            saga.saga_id, max(request.after_sequence, 0), finished, context.is_active
        ):
            at_event = replace(
                saga, state=event.state, step=event.step, refusal_reason=event.refusal_reason
            )
            yield pb.SagaEvent(
                saga_id=saga.saga_id,
                card_id=saga.card_id,
                sequence=event.sequence,
                at=to_timestamp(event.at),
                state=enum_value(pb.SagaState, event.state),
                step=self._orchestrator.step_name(at_event),
                retries=event.retries,
                last_error=event.last_error,
                refusal_reason=event.refusal_reason,
                refusal_rule=event.refusal_rule,
                refusal_message=event.refusal_message,
                final=event.state in FINISHED,
            )

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
                *_document(request.document, "document", self._today()),
                caller,
                _agent(request, self._today()),
            )
            status, version = service.status_version(uow, card)
        return pb.QueryStatusResponse(
            card_id=card.card_id,
            status=enum_value(pb.CardStatus, status.value),
            progress=rules.progress(card),
            status_version=version,
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

        return self._changed("RecordProduced", request, work)

    def RecordCollection(
        self, request: pb.RecordCollectionRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        caller = current_caller()
        doc_type, doc_number = _document(request.document, "document", self._today())
        cmd = service.CollectionCommand(
            card_id=request.card_id,
            method=_COLLECTION_FROM_PB.get(request.method),
            doc_type=doc_type,
            doc_number=doc_number,
            employer=_employer_documents(request.employer),
            agent=_agent(request, self._today()),
            old_card_id=request.old_card_id,
            move_park_pass=request.move_park_pass,
        )

        def work(uow: CardUnitOfWork) -> pb.Card:
            return self._card_answer(uow, service.record_collection(uow, cmd, caller, self._clock))

        answer = self._changed("RecordCollection", request, work)
        self._orchestrator.poke()  # a replacement's collection starts its follow-up sagas
        return answer

    def RecordEmployerReturn(
        self, request: pb.RecordEmployerReturnRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        caller = current_caller()
        documents = _employer_documents(request.employer)

        def work(uow: CardUnitOfWork) -> pb.Card:
            card = service.record_employer_return(
                uow, request.card_id, documents, caller, self._clock
            )
            return self._card_answer(uow, card)

        answer = self._changed("RecordEmployerReturn", request, work)
        self._orchestrator.poke()  # the bank records the card taken back
        return answer

    def RecordHandout(
        self, request: pb.RecordHandoutRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        caller = current_caller()

        def work(uow: CardUnitOfWork) -> pb.Card:
            card = service.record_handout(uow, request.card_id, caller, self._clock)
            return self._card_answer(uow, card)

        return self._changed("RecordHandout", request, work)

    def ActivateCard(
        self, request: pb.ActivateCardRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        caller = current_caller()

        def work(uow: CardUnitOfWork) -> pb.Card:
            card = service.activate(
                uow, request.card_id, _presented(request, self._today()), caller, self._clock
            )
            return self._card_answer(uow, card)

        return self._changed("ActivateCard", request, work)

    # -- the card in use: loss, unlock, information (A13, A14, A17)

    def CancelCard(self, request: pb.CancelCardRequest, context: grpc.ServicerContext) -> pb.Card:
        caller = current_caller()
        presented = _presented(request, self._today())
        outcome: list[service.LossOutcome] = []

        def work(uow: CardUnitOfWork) -> pb.Card:
            done = service.cancel_card(
                uow,
                request.card_id,
                presented,
                request.payout_destination,
                self._identity.settled,
                caller,
                self._clock,
            )
            outcome.append(done)
            return self._card_answer(uow, done.card)

        answer = self._changed("CancelCard", request, work)
        if outcome and outcome[0].starts_saga:
            self._orchestrator.poke()
        return answer

    def _loss(
        self,
        method: str,
        request: Any,
        use_case: Callable[..., service.LossOutcome],
    ) -> pb.Card:
        caller = current_caller()
        presented = _presented(request, self._today())
        if caller.channel is Channel.HOTLINE and method == "ReportTemporaryLoss":
            replayed = self._once.replay(method, request, pb.Card)
            if replayed is not None:
                return replayed
            self._caller_verified(request.card_id, request.service_password)
        outcome: list[service.LossOutcome] = []

        def work(uow: CardUnitOfWork) -> pb.Card:
            done = use_case(uow, request.card_id, presented, caller, self._clock)
            outcome.append(done)
            return self._card_answer(uow, done.card)

        answer = self._changed(method, request, work)
        if outcome and outcome[0].suspension is not None:
            pending = service.suspend_financial_at_once(
                self._uow,
                self._bank.suspend_for_loss,
                outcome[0].card,
                outcome[0].suspension,
                self._clock,
            )
            if pending is not None:
                _with_notice(answer, pending)
        if outcome and outcome[0].starts_saga:
            self._orchestrator.poke()
        return answer

    def _caller_verified(self, card_id: str, password: str) -> None:
        """A12: the hotline acts on a card only for a caller who gives its service password;
        each try counts towards the lock, and every failure answers alike."""
        with self._uow(readonly=True) as uow:
            seen = service.password_state(uow, card_id)
        correct = (
            bool(password)
            and not seen.locked(self._clock.now())
            and self._hasher.verify(seen.hash, password)
        )
        with self._uow() as uow:
            stands = service.count_try(uow, card_id, correct, seen.hash, self._clock)
            uow.commit()
        if not stands:
            raise wrong_password()

    def ReportTemporaryLoss(
        self, request: pb.ReportLossRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        return self._loss("ReportTemporaryLoss", request, service.report_temporary_loss)

    def ReportFormalLoss(
        self, request: pb.ReportLossRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        return self._loss("ReportFormalLoss", request, service.report_formal_loss)

    def UnlockCard(self, request: pb.UnlockCardRequest, context: grpc.ServicerContext) -> pb.Card:
        return self._loss("UnlockCard", request, service.unlock)

    def UpdateContactInfo(
        self, request: pb.UpdateContactInfoRequest, context: grpc.ServicerContext
    ) -> pb.Card:
        caller = current_caller()
        change = service.ContactChange(
            mobile=request.mobile or None,
            occupation=request.occupation or None,
            address=request.address or None,
            name=request.name or None,
            new_document=bool(request.new_document.number),
        )

        def work(uow: CardUnitOfWork) -> pb.Card:
            card = service.update_contact(
                uow, request.card_id, _presented(request, self._today()), change, caller
            )
            return self._card_answer(uow, card)

        return self._once.call("UpdateContactInfo", request, pb.Card, work)

    # -- reissue and replacement (A15, A16)

    def _successor(
        self,
        method: str,
        request: Any,
        use_case: Callable[..., service.Started],
        cmd: service.SuccessorCommand,
    ) -> pb.ApplyResponse:
        caller = current_caller()

        def work(uow: CardUnitOfWork) -> pb.ApplyResponse:
            started = use_case(uow, cmd, caller, self._clock)
            return pb.ApplyResponse(
                card_id=started.card.card_id,
                saga_id=started.saga_id,
                status=enum_value(pb.CardStatus, started.card.status.value),
            )

        answer = self._once.call(method, request, pb.ApplyResponse, work)
        self._orchestrator.poke()
        return answer

    def ReissueCard(
        self, request: pb.ReissueCardRequest, context: grpc.ServicerContext
    ) -> pb.ApplyResponse:
        cmd = service.SuccessorCommand(
            old_card_id=request.card_id,
            presented=_presented(request, self._today()),
            name="",
            delivery=_DELIVERY_FROM_PB.get(request.delivery),
            pickup_branch_id=request.pickup_branch_id,
        )
        return self._successor("ReissueCard", request, service.reissue, cmd)

    def ReplaceCard(
        self, request: pb.ReplaceCardRequest, context: grpc.ServicerContext
    ) -> pb.ApplyResponse:
        reason_name = enum_name(pb.ReplacementReason, request.reason)
        cmd = service.SuccessorCommand(
            old_card_id=request.card_id,
            presented=_presented(request, self._today()),
            name=request.name,
            delivery=_DELIVERY_FROM_PB.get(request.delivery),
            pickup_branch_id=request.pickup_branch_id,
            reason=(
                rules.ReplacementReason(reason_name)
                if reason_name in rules.ReplacementReason.__members__
                else None
            ),
            new_bank_code=request.new_bank_code,
            keep_old_account=request.keep_old_account,
            old_account_payout=request.old_account_payout_destination.strip(),
        )
        return self._successor("ReplaceCard", request, service.replace_card, cmd)

    # -- the service password (A12); hashing runs outside any transaction

    def ChangeServicePassword(
        self, request: pb.ChangeServicePasswordRequest, context: grpc.ServicerContext
    ) -> pb.ServicePasswordResponse:
        caller = current_caller()
        replayed = self._once.replay("ChangeServicePassword", request, pb.ServicePasswordResponse)
        if replayed is not None:
            return replayed
        check_new_password(request.new_password)
        with self._uow(readonly=True) as uow:
            card = service.may_set_password(
                uow,
                request.card_id,
                _presented(request, self._today()),
                request.card_number,
                caller,
                Operation.SERVICE_PASSWORD_CHANGE,
            )
            seen = service.password_state(uow, request.card_id)
        correct = (
            self._hasher.verify(seen.hash, request.old_password)
            and card is not None
            and not seen.locked(self._clock.now())
        )
        with self._uow() as uow:
            stands = service.count_try(uow, request.card_id, correct, seen.hash, self._clock)
            uow.commit()
        if not stands:
            raise wrong_password()
        return self._set_password("ChangeServicePassword", request, seen.hash)

    def ResetServicePassword(
        self, request: pb.ResetServicePasswordRequest, context: grpc.ServicerContext
    ) -> pb.ServicePasswordResponse:
        caller = current_caller()
        replayed = self._once.replay("ResetServicePassword", request, pb.ServicePasswordResponse)
        if replayed is not None:
            return replayed
        check_new_password(request.new_password)
        with self._uow(readonly=True) as uow:
            service.may_set_password(
                uow,
                request.card_id,
                _presented(request, self._today()),
                request.card_number,
                caller,
                Operation.SERVICE_PASSWORD_RESET,
            )
            seen = service.password_state(uow, request.card_id)
        return self._set_password("ResetServicePassword", request, seen.hash)

    def _set_password(
        self, method: str, request: Any, seen_hash: str | None
    ) -> pb.ServicePasswordResponse:
        new_hash = self._hasher.hash(request.new_password)

        def work(uow: CardUnitOfWork) -> pb.ServicePasswordResponse:
            state = service.store_password(uow, request.card_id, new_hash, seen_hash, self._clock)
            return pb.ServicePasswordResponse(
                card_id=request.card_id, changed_at=to_timestamp(state.changed_at)
            )

        return self._once.call(method, request, pb.ServicePasswordResponse, work)

    def VerifyServicePassword(
        self, request: pb.VerifyServicePasswordRequest, context: grpc.ServicerContext
    ) -> pb.VerifyServicePasswordResponse:
        with self._uow(readonly=True) as uow:
            seen = service.password_state(uow, request.card_id)
        correct = not seen.locked(self._clock.now()) and self._hasher.verify(
            seen.hash, request.password
        )
        with self._uow() as uow:
            stands = service.verify_password(uow, request.card_id, correct, seen.hash, self._clock)
            uow.commit()
        return pb.VerifyServicePasswordResponse(valid=stands)


class OpsApi(card_pb2_grpc.OpsServiceServicer):
    """Sagas and deadlines for operations dashboards (role `ops`)."""

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
        self._once: Idempotent[CardUnitOfWork] = Idempotent(
            keys, lambda: CardUnitOfWork(db, cipher)
        )

    def _saga_pb(self, summary: SagaSummary) -> pb.Saga:
        saga = summary.record
        return pb.Saga(
            saga_id=saga.saga_id,
            kind=saga.kind,
            card_id=saga.card_id,
            batch_id=saga.batch_id,
            state=enum_value(pb.SagaState, saga.state),
            step=self._orchestrator.step_name(saga),
            retries=saga.retries,
            last_error=saga.last_error,
            refusal_reason=saga.refusal_reason,
            refusal_rule=saga.refusal_rule,
            refusal_message=saga.refusal_message,
            created_at=to_timestamp(summary.created_at),
            updated_at=to_timestamp(summary.updated_at),
            next_attempt_at=to_timestamp(summary.next_attempt_at),
            steps=[
                pb.SagaStep(
                    name=view.name,
                    state=enum_value(pb.SagaStepState, f"STEP_{view.state.upper()}"),
                    done_at=to_timestamp(view.done_at),
                    undone_at=to_timestamp(view.undone_at),
                )
                for view in self._orchestrator.steps_of(saga)
            ],
        )

    def ListSagas(
        self, request: pb.ListSagasRequest, context: grpc.ServicerContext
    ) -> pb.ListSagasResponse:
        state = enum_name(pb.SagaState, request.state)
        with CardUnitOfWork(self._db, self._cipher, readonly=True) as uow:
            found = service.list_sagas(
                uow,
                state,
                request.kind,
                request.card_id,
                request.page_token,
                request.page_size,
                current_caller(),
            )
        size = service.page_size(request.page_size)
        return pb.ListSagasResponse(
            sagas=[self._saga_pb(s) for s in found],
            next_page_token=found[-1].record.saga_id if len(found) == size else "",
        )

    def GetSaga(self, request: pb.GetSagaRequest, context: grpc.ServicerContext) -> pb.Saga:
        with CardUnitOfWork(self._db, self._cipher, readonly=True) as uow:
            return self._saga_pb(service.get_saga(uow, request.saga_id, current_caller()))

    def RetrySaga(self, request: pb.RetrySagaRequest, context: grpc.ServicerContext) -> pb.Saga:
        def work(uow: CardUnitOfWork) -> pb.Saga:
            summary = service.retry_saga(uow, request.saga_id, wall_clock(), current_caller())
            return self._saga_pb(summary)

        answer = self._once.call("RetrySaga", request, pb.Saga, work)
        self._orchestrator.poke()
        return answer

    def CompensateSaga(
        self, request: pb.CompensateSagaRequest, context: grpc.ServicerContext
    ) -> pb.Saga:
        def work(uow: CardUnitOfWork) -> pb.Saga:
            summary = service.compensate_saga(uow, request.saga_id, wall_clock(), current_caller())
            return self._saga_pb(summary)

        answer = self._once.call("CompensateSaga", request, pb.Saga, work)
        self._orchestrator.poke()
        return answer

    def ListDeadlines(
        self, request: pb.ListDeadlinesRequest, context: grpc.ServicerContext
    ) -> pb.ListDeadlinesResponse:
        after = None
        if request.page_token:
            due, _, timer_id = request.page_token.partition("|")
            try:
                after = (dt.datetime.fromisoformat(due), timer_id)
            except ValueError as exc:
                raise DomainError(
                    "INVALID_PAGE_TOKEN",
                    "the page token is not one this service gave",
                    kind=Kind.INVALID,
                    violations=(FieldViolation("page_token", "not a token from this service"),),
                ) from exc
        state = enum_name(pb.DeadlineState, request.state)
        now = self._clock.now()
        with CardUnitOfWork(self._db, self._cipher, readonly=True) as uow:
            found = service.list_deadlines(
                uow,
                request.kind,
                request.rule,
                state,
                request.overdue_only,
                after,
                request.page_size,
                current_caller(),
                self._clock,
            )
        size = service.page_size(request.page_size)
        last = found[-1] if len(found) == size else None
        return pb.ListDeadlinesResponse(
            deadlines=[
                pb.Deadline(
                    timer_id=t.timer_id,
                    kind=t.kind,
                    target=t.target,
                    rule=t.rule,
                    due_at=to_timestamp(t.due_at),
                    state=enum_value(pb.DeadlineState, t.state),
                    overdue=t.state == "PENDING" and t.due_at < now,
                    outcome=t.outcome,
                    attempts=t.attempts,
                    fired_at=to_timestamp(t.fired_at),
                    estimated_calendar=t.estimated_calendar,
                )
                for t in found
            ],
            next_page_token=f"{last.due_at.isoformat()}|{last.timer_id}" if last else "",
        )
