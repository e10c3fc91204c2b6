"""The identity gRPC servicer: proto -> command -> use case -> proto, nothing else.

Authentication, error mapping and logging happen in the platform's call guard; this file
checks roles, decodes requests (malformed fields become one INVALID_ARGUMENT with a violation
each), runs the use case in a unit of work (mutating ones through the idempotency runner) and
encodes the answer. Full document numbers go only to callers with the `service` or `registry`
role; everyone else sees the masked form.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError

from services.identity import service
from services.identity.domain.person import (
    MOVES_PLACE,
    BasicInfoChange,
    Basis,
    Event,
    IssuanceKind,
    Outcome,
    Person,
    Preferential,
    RecordInput,
    Source,
    check_name,
)
from services.identity.store import IdentityUnitOfWork
from services.platform.auth import Role, current_caller
from services.platform.clock import Clock, beijing_date
from services.platform.db import Database
from services.platform.documents import Document, DocumentType, Sex, known_type, parse_document_into
from services.platform.errors import DomainError, Kind, Violations, invalid
from services.platform.idempotency import (
    IdempotencyStore,
    Idempotent,
    check_request_id,
    reused,
    scope_of,
)
from services.platform.masking import mask_document_number
from services.platform.pii import PiiCipher
from services.platform.protoconv import enum_name, enum_value, from_date, to_date, to_timestamp
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2 as pb
from sscard.identity.v1 import identity_pb2_grpc

SEES_FULL_NUMBERS = (Role.SERVICE, Role.REGISTRY)
MAX_IMPORT_RECORDS = 200_000
MAX_CARD_ID = 64
M = TypeVar("M", bound=Message)

_SEX_TO_PB = {Sex.MALE: common_pb2.SEX_MALE, Sex.FEMALE: common_pb2.SEX_FEMALE}
_SEX_FROM_PB = {v: k for k, v in _SEX_TO_PB.items()}
_OUTCOME_TO_PB = {
    Outcome.CREATED: pb.IMPORT_OUTCOME_CREATED,
    Outcome.UPDATED: pb.IMPORT_OUTCOME_UPDATED,
    Outcome.UNCHANGED: pb.IMPORT_OUTCOME_UNCHANGED,
}
_BASIS_TO_PB = {
    Basis.INSURED_IN_BEIJING: pb.ELIGIBILITY_BASIS_INSURED_IN_BEIJING,
    Basis.PUBLIC_SERVICE_ENTITLED: pb.ELIGIBILITY_BASIS_PUBLIC_SERVICE_ENTITLED,
}
_KIND_FROM_PB = {
    pb.ISSUANCE_KIND_FIRST: IssuanceKind.FIRST,
    pb.ISSUANCE_KIND_REISSUE: IssuanceKind.REISSUE,
    pb.ISSUANCE_KIND_REPLACEMENT: IssuanceKind.REPLACEMENT,
    pb.ISSUANCE_KIND_UPGRADE: IssuanceKind.UPGRADE,
}
_SOURCE_FROM_PB = {
    pb.RECORD_SOURCE_HR: Source.HR,
    pb.RECORD_SOURCE_MEDICAL_INSURANCE: Source.MEDICAL_INSURANCE,
}


# --- decoding -----------------------------------------------------------------------------------


def _doc_type(value: int) -> DocumentType | None:
    return known_type(enum_name(common_pb2.DocumentType, value))


def _document(
    doc: common_pb2.IdentityDocument, today: dt.date, v: Violations, prefix: str = "document"
) -> Document | None:
    return parse_document_into(_doc_type(doc.type), doc.number, today, v, prefix)


def _record(msg: pb.PersonRecord, v: Violations) -> RecordInput:
    preferential: set[Preferential] = set()
    for flag in msg.preferential:
        name = enum_name(pb.PreferentialTreatment, flag)
        if name in Preferential.__members__:
            preferential.add(Preferential(name))
        else:
            v.add("preferential", "unknown preferential-treatment flag", "UNKNOWN_VALUE")
    return RecordInput(
        document_type=_doc_type(msg.document.type),
        document_number=msg.document.number,
        name=msg.name,
        sex=_SEX_FROM_PB.get(msg.sex),
        birth_date=from_date(msg.birth_date, "birth_date", v),
        document_valid_until=from_date(msg.document_valid_until, "document_valid_until", v),
        insured_in_beijing=msg.insured_in_beijing,
        public_service_entitled=msg.public_service_entitled,
        date_of_death=from_date(msg.date_of_death, "date_of_death", v),
        preferential=frozenset(preferential),
        legacy_card_generation=msg.legacy_card_generation,
        source=_SOURCE_FROM_PB.get(msg.source),
        business_settled_on=from_date(msg.business_settled_on, "business_settled_on", v),
    )


def _card_id(value: str, field: str, v: Violations) -> None:
    if not value or len(value) > MAX_CARD_ID:
        v.add(field, f"a card id of 1 to {MAX_CARD_ID} characters is required", "REQUIRED")


def _ref(msg: pb.PersonRef, v: Violations) -> service.PersonRef:
    which = msg.WhichOneof("ref")
    if which == "person_id":
        return service.PersonRef(person_id=msg.person_id)
    if which == "document":
        doc_type = _doc_type(msg.document.type)
        if doc_type is None:
            v.add("person.document.type", "a known document type is required", "REQUIRED")
        return service.PersonRef(document_type=doc_type, document_number=msg.document.number)
    v.add("person", "name the person by person_id or by document", "REQUIRED")
    return service.PersonRef()


# --- encoding -----------------------------------------------------------------------------------


def _document_pb(doc: Document, full: bool) -> common_pb2.IdentityDocument:
    return common_pb2.IdentityDocument(
        type=enum_value(common_pb2.DocumentType, doc.type.value),
        number=doc.number if full else "",
        number_masked=mask_document_number(doc.number),
    )


def person_pb(person: Person, full: bool) -> pb.Person:
    a = person.attributes
    return pb.Person(
        person_id=person.person_id,
        name=a.name,
        sex=_SEX_TO_PB[a.sex] if a.sex else common_pb2.SEX_UNSPECIFIED,
        birth_date=to_date(a.birth_date),
        document=_document_pb(a.document, full),
        document_valid_until=to_date(a.document_valid_until),
        insured_in_beijing=a.insured_in_beijing,
        public_service_entitled=a.public_service_entitled,
        alive=person.alive,
        date_of_death=to_date(a.date_of_death),
        preferential=sorted(enum_value(pb.PreferentialTreatment, p.value) for p in a.preferential),
        legacy_card_generation=a.legacy_card_generation,
        registered_card_id=person.registration.card_id if person.registration else "",
        updated_at=to_timestamp(person.updated_at),
        business_settled_on=to_date(a.business_settled_on),
        legacy_card_ss_stopped_at=to_timestamp(person.legacy_ss_stopped_at),
    )


def _history_pb(change: BasicInfoChange, full: bool) -> pb.BasicInfoChange:
    return pb.BasicInfoChange(
        changed_at=to_timestamp(change.changed_at),
        old_name=change.old_name,
        new_name=change.new_name,
        old_document=_document_pb(change.old_document, full),
        new_document=_document_pb(change.new_document, full),
        reason=change.reason,
    )


def _event_pb(sequence: int, event: Event) -> pb.PersonEvent:
    return pb.PersonEvent(
        sequence=sequence,
        type=enum_value(pb.PersonEventType, event.type.value),
        person_id=event.person_id,
        occurred_at=to_timestamp(event.occurred_at),
        registered_card_id=event.registered_card_id or "",
        date_of_death=to_date(event.date_of_death),
    )


def _result_pb(result: service.RecordResult) -> pb.ImportRecordResult:
    if result.outcome is not None:
        return pb.ImportRecordResult(
            index=result.index, outcome=_OUTCOME_TO_PB[result.outcome], person_id=result.person_id
        )
    error = result.error
    if error is None:
        raise RuntimeError("error must be known here")
    return pb.ImportRecordResult(
        index=result.index,
        outcome=pb.IMPORT_OUTCOME_REJECTED,
        reason=error.reason,
        violations=[
            pb.RecordViolation(field=x.field, description=x.description) for x in error.violations
        ],
    )


# --- the servicer -------------------------------------------------------------------------------


class IdentityApi(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, db: Database, cipher: PiiCipher, clock: Clock, keys: IdempotencyStore):
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._keys = keys
        self._once: Idempotent[IdentityUnitOfWork] = Idempotent(keys, self._uow)

    def _uow(self, readonly: bool = False) -> IdentityUnitOfWork:
        return IdentityUnitOfWork(self._db, self._cipher, readonly)

    def _today(self) -> dt.date:
        return beijing_date(self._clock.now())

    # -- the registry feed

    def ImportPersons(
        self, request_iterator: Iterator[pb.ImportPersonsRequest], context: grpc.ServicerContext
    ) -> pb.ImportPersonsResponse:
        scope = scope_of("ImportPersons")
        stream = iter(request_iterator)
        head = next(stream, None)
        if head is None:
            raise DomainError("IMPORT_EMPTY", "the import carries no record", kind=Kind.INVALID)
        batch_id = head.batch_id
        check_request_id(batch_id)
        digest = hashlib.sha256()

        def decoded() -> Iterator[tuple[int, RecordInput | DomainError]]:
            index = 0
            for message in itertools.chain([head], stream):
                for record in message.records:
                    if index >= MAX_IMPORT_RECORDS:
                        raise DomainError(
                            "IMPORT_TOO_LARGE",
                            f"an import carries at most {MAX_IMPORT_RECORDS} records; split it",
                            kind=Kind.EXHAUSTED,
                        )
                    digest.update(record.SerializeToString(deterministic=True))
                    v = Violations()
                    decoded_record = _record(record, v)
                    if v.items:
                        yield index, invalid("INVALID_PERSON_RECORD", v.items, rule="A4.1")
                    else:
                        yield index, decoded_record
                    index += 1

        with self._uow(readonly=True) as uow:
            prior = self._keys.find(uow.session, scope, batch_id)
        if prior is not None:
            for _ in decoded():
                pass
            stored_fp, stored = prior
            if stored_fp != digest.hexdigest():
                raise reused()
            return stored.replay(pb.ImportPersonsResponse)
        results = service.import_persons(self._uow, decoded(), self._clock)
        response = pb.ImportPersonsResponse(
            batch_id=batch_id,
            received=len(results),
            results=[_result_pb(r) for r in results],
        )
        for r in results:
            if r.outcome is Outcome.CREATED:
                response.created += 1
            elif r.outcome is Outcome.UPDATED:
                response.updated += 1
            elif r.outcome is Outcome.UNCHANGED:
                response.unchanged += 1
            else:
                response.rejected += 1
        with self._uow() as uow:
            try:
                self._keys.remember(
                    uow.session,
                    scope,
                    batch_id,
                    digest.hexdigest(),
                    "response",
                    response.SerializeToString(),
                )
                self._keys.record(uow.session, "ImportPersons", batch_id, head, response)
                uow.commit()
            except IntegrityError:
                pass  # the same batch finished concurrently; its records applied identically
        return response

    # -- the one-person-one-card register

    def ReserveIssuance(
        self, request: pb.ReserveIssuanceRequest, context: grpc.ServicerContext
    ) -> pb.ReserveIssuanceResponse:
        v = Violations()
        document = _document(request.document, self._today(), v)
        if not request.name.strip():
            v.add("name", "the applicant's name is required", "REQUIRED")
        _card_id(request.card_id, "card_id", v)
        kind = _KIND_FROM_PB.get(request.kind)
        if kind is None:
            v.add(
                "kind",
                "ISSUANCE_KIND_FIRST, ISSUANCE_KIND_REISSUE, ISSUANCE_KIND_REPLACEMENT or "
                "ISSUANCE_KIND_UPGRADE is required",
                "REQUIRED",
            )
        elif kind in MOVES_PLACE:
            _card_id(request.replaces_card_id, "replaces_card_id", v)
        v.raise_if_any(rule="A4.1")
        if document is None or kind is None:
            raise RuntimeError("document and kind must be known here")
        cmd = service.Reservation(
            document,
            request.name,
            request.card_id,
            kind,
            request.replaces_card_id or None,
            request.person_id,
        )

        def work(uow: IdentityUnitOfWork) -> pb.ReserveIssuanceResponse:
            person, basis = service.reserve_issuance(uow, cmd, self._clock)
            return pb.ReserveIssuanceResponse(
                person=person_pb(person, full=True), basis=_BASIS_TO_PB[basis]
            )

        return self._once.call("ReserveIssuance", request, pb.ReserveIssuanceResponse, work)

    def ReleaseIssuance(
        self, request: pb.ReleaseIssuanceRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseIssuanceResponse:
        def work(uow: IdentityUnitOfWork) -> pb.ReleaseIssuanceResponse:
            released, holder = service.release_issuance(uow, request.card_id, self._clock)
            return pb.ReleaseIssuanceResponse(released=released, registered_card_id=holder or "")

        return self._by_card("ReleaseIssuance", request, pb.ReleaseIssuanceResponse, work)

    def ConfirmIssuance(
        self, request: pb.ConfirmIssuanceRequest, context: grpc.ServicerContext
    ) -> pb.ConfirmIssuanceResponse:
        def work(uow: IdentityUnitOfWork) -> pb.ConfirmIssuanceResponse:
            person = service.confirm_issuance(uow, request.card_id, self._clock)
            return pb.ConfirmIssuanceResponse(person_id=person.person_id)

        return self._by_card("ConfirmIssuance", request, pb.ConfirmIssuanceResponse, work)

    def _by_card(
        self,
        method: str,
        request: pb.ReleaseIssuanceRequest | pb.ConfirmIssuanceRequest,
        response_type: type[M],
        work: Callable[[IdentityUnitOfWork], M],
    ) -> M:
        """A register operation on one card, for another sscard service."""
        v = Violations()
        _card_id(request.card_id, "card_id", v)
        v.raise_if_any()
        return self._once.call(method, request, response_type, work)

    # -- basic information and deaths

    def ChangeBasicInfo(
        self, request: pb.ChangeBasicInfoRequest, context: grpc.ServicerContext
    ) -> pb.ChangeBasicInfoResponse:
        v = Violations()
        ref = _ref(request.person, v)
        new_document = None
        if request.HasField("new_document"):
            new_document = _document(request.new_document, self._today(), v, "new_document")
        new_name = check_name(request.new_name, v, "new_name") if request.new_name else None
        valid_until = from_date(request.new_document_valid_until, "new_document_valid_until", v)
        v.raise_if_any(rule="A17.2")
        cmd = service.BasicInfoCommand(ref, new_name, new_document, valid_until, request.reason)

        def work(uow: IdentityUnitOfWork) -> pb.ChangeBasicInfoResponse:
            person = service.change_basic_info(uow, cmd, self._clock)
            return pb.ChangeBasicInfoResponse(person=person_pb(person, full=True))

        return self._once.call("ChangeBasicInfo", request, pb.ChangeBasicInfoResponse, work)

    def RecordDeath(
        self, request: pb.RecordDeathRequest, context: grpc.ServicerContext
    ) -> pb.RecordDeathResponse:
        v = Violations()
        ref = _ref(request.person, v)
        date_of_death = from_date(request.date_of_death, "date_of_death", v)
        if date_of_death is None and not v.items:
            v.add("date_of_death", "the date of death is required", "REQUIRED")
        v.raise_if_any(rule="A21.2")
        if date_of_death is None:
            raise RuntimeError("date_of_death must be known here")

        def work(uow: IdentityUnitOfWork) -> pb.RecordDeathResponse:
            person = service.record_death(uow, ref, date_of_death, self._clock)
            return pb.RecordDeathResponse(person=person_pb(person, full=True))

        return self._once.call("RecordDeath", request, pb.RecordDeathResponse, work)

    # -- reads

    def GetPerson(
        self, request: pb.GetPersonRequest, context: grpc.ServicerContext
    ) -> pb.GetPersonResponse:
        caller = current_caller()
        v = Violations()
        ref = _ref(request.person, v)
        v.raise_if_any()
        full = caller.has_any(*SEES_FULL_NUMBERS)
        with self._uow(readonly=True) as uow:
            person, history = service.get_person(uow, ref, request.include_history, self._clock)
        return pb.GetPersonResponse(
            person=person_pb(person, full), history=[_history_pb(h, full) for h in history]
        )

    def VerifyApplicant(
        self, request: pb.VerifyApplicantRequest, context: grpc.ServicerContext
    ) -> pb.VerifyApplicantResponse:
        caller = current_caller()
        v = Violations()
        document = _document(request.document, self._today(), v)
        if not request.name.strip():
            v.add("name", "the applicant's name is required", "REQUIRED")
        v.raise_if_any(rule="A4.1")
        if document is None:
            raise RuntimeError("document must be known here")
        with self._uow(readonly=True) as uow:
            person, basis = service.verify_applicant(uow, document, request.name, self._clock)
        full = caller.has_any(*SEES_FULL_NUMBERS)
        return pb.VerifyApplicantResponse(person=person_pb(person, full), basis=_BASIS_TO_PB[basis])

    def ListPersonEvents(
        self, request: pb.ListPersonEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListPersonEventsResponse:
        with self._uow(readonly=True) as uow:
            events = service.list_events(uow, request.after_sequence, request.limit)
        return pb.ListPersonEventsResponse(
            events=[_event_pb(seq, e) for seq, e in events],
            next_after_sequence=events[-1][0] if events else request.after_sequence,
        )
