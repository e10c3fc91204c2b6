"""The counter gRPC servicer: proto -> command -> use case -> proto, nothing else.

Mutating calls run through the idempotency runner. Two kinds of work happen outside any
transaction: calls to other services (the card service's ActivateCard for A9.2, the identity
service's flags for A25.1) and password hashing (A12.3). Such calls first look for the stored
answer of their request_id, and store every refusal under it, so a retry gets the first answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from services.bank import counter_service as uc
from services.bank.api import account_pb, required_id
from services.bank.clients import CounterCardPort, IdentityPort
from services.bank.domain import financial, home_service
from services.bank.domain.account import Account
from services.bank.domain.branch import check_branch_id
from services.bank.domain.financial import Presented
from services.bank.domain.home_service import Booking, Business, Slot, Status
from services.bank.service import account_not_found
from services.bank.store import BankUnitOfWork
from services.platform.auth import current_caller
from services.platform.clock import Clock
from services.platform.db import Database
from services.platform.errors import DomainError, Violations
from services.platform.idempotency import TRANSIENT, IdempotencyStore, Idempotent, scope_of
from services.platform.masking import mask_phone
from services.platform.passwords import Argon2Hasher
from services.platform.pii import PiiCipher
from services.platform.protoconv import enum_name, enum_value, from_date, to_date, to_timestamp
from sscard.bank.v1 import bank_pb2, counter_pb2_grpc
from sscard.bank.v1 import counter_pb2 as pb
from sscard.common.v1 import common_pb2

M = TypeVar("M", bound=Message)

MAX_DOCUMENT_NUMBER = 40
MAX_CARD_NUMBER = 19
MAX_AGENT_TEXT = 100
DEFAULT_PAGE = 50
MAX_PAGE = 100


# --- decoding -----------------------------------------------------------------------------------


def presented_document(
    document: common_pb2.IdentityDocument, v: Violations, card_number: str = ""
) -> Presented:
    doc_type = enum_name(common_pb2.DocumentType, document.type)
    if not doc_type:
        v.add("document.type", "a known document type is required", "REQUIRED")
    if not document.number or len(document.number) > MAX_DOCUMENT_NUMBER:
        v.add(
            "document.number",
            f"a document number of 1 to {MAX_DOCUMENT_NUMBER} characters is required",
            "REQUIRED",
        )
    return Presented(doc_type, document.number, card_number)


def presented_agent(request: Any, v: Violations) -> financial.Agent | None:
    """The request's ``agent`` (A20.1), None when the holder acts in person. Missing parts are
    the bank's rules to refuse (AGENT_DOCUMENTS_MISSING, A24.2); only their form is checked."""
    if not request.HasField("agent"):
        return None
    agent = request.agent
    if len(agent.agent_document.number) > MAX_DOCUMENT_NUMBER:
        v.add("agent.agent_document.number", f"at most {MAX_DOCUMENT_NUMBER} characters")
    if len(agent.agent_name) > MAX_AGENT_TEXT:
        v.add("agent.agent_name", f"at most {MAX_AGENT_TEXT} characters")
    if len(agent.authorisation_ref) > MAX_AGENT_TEXT:
        v.add("agent.authorisation_ref", f"at most {MAX_AGENT_TEXT} characters")
    return financial.Agent(
        enum_name(common_pb2.DocumentType, agent.agent_document.type),
        agent.agent_document.number,
        agent.agent_name.strip(),
        agent.authorisation_ref.strip(),
    )


def _text(value: str, field: str, limit: int, v: Violations, required: bool = True) -> str:
    cleaned = " ".join(value.split())
    if (required and not cleaned) or len(cleaned) > limit:
        v.add(field, f"1 to {limit} characters are required", "REQUIRED")
    return cleaned


def _authorization(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == "authorization":
            return str(value)
    return ""


# --- encoding -----------------------------------------------------------------------------------


def state_pb(view: uc.FinancialView) -> bank_pb2.AccountState:
    return account_pb(view.account, view.phone_masked, view.password_set)


def home_pb(booking: Booking) -> pb.HomeService:
    return pb.HomeService(
        home_service_id=booking.home_service_id,
        card_id=booking.card_id,
        bank_code=booking.bank_code,
        branch_id=booking.branch_id,
        address=booking.address,
        date=to_date(booking.date),
        slot=enum_value(pb.HomeSlot, booking.slot.value),
        business=enum_value(pb.HomeBusiness, booking.business.value),
        contact_name=booking.contact_name,
        contact_phone_masked=mask_phone(booking.contact_phone),
        note=booking.note,
        status=enum_value(pb.HomeServiceStatus, booking.status.value),
        staff_id=booking.staff_id,
        booked_at=to_timestamp(booking.booked_at),
        updated_at=to_timestamp(booking.updated_at),
        booked_by=booking.booked_by,
    )


def _password_pb(card_id: str, state: financial.PasswordState) -> pb.FinancialPasswordResponse:
    return pb.FinancialPasswordResponse(card_id=card_id, changed_at=to_timestamp(state.changed_at))


# --- the servicer -------------------------------------------------------------------------------


class CounterApi(counter_pb2_grpc.CounterServiceServicer):
    def __init__(
        self,
        db: Database,
        cipher: PiiCipher,
        clock: Clock,
        keys: IdempotencyStore,
        card: CounterCardPort,
        identity: IdentityPort,
        hasher: Argon2Hasher,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._card = card
        self._identity = identity
        self._hasher = hasher
        self._once: Idempotent[BankUnitOfWork] = Idempotent(keys, self._uow)

    def _uow(self, readonly: bool = False) -> BankUnitOfWork:
        return BankUnitOfWork(self._db, self._cipher, readonly)

    def _refuse(self, method: str, request: Any, response_type: type[M], exc: DomainError) -> M:
        """Store a refusal found outside the idempotent unit of work under the request_id (a
        transient one is raised as it is); returns the first answer if one was stored."""
        if exc.kind in TRANSIENT:
            raise exc

        def work(uow: BankUnitOfWork) -> M:
            raise exc

        return self._once.call(method, request, response_type, work)

    def _checked(
        self, method: str, request: Any, response_type: type[M], step: Callable[[], Any]
    ) -> Any:
        """Run a step outside the idempotent unit of work; a refusal is stored and raised."""
        try:
            return step()
        except DomainError as exc:
            self._refuse(method, request, response_type, exc)
            raise  # a concurrent call stored an answer first; this one still refuses

    def _state(self, uow: BankUnitOfWork, account: Account) -> bank_pb2.AccountState:
        return state_pb(uc.view(uow, account))

    # -- activation (A9.1, A9.2)

    def ActivateFinancial(
        self, request: pb.ActivateFinancialRequest, context: grpc.ServicerContext
    ) -> bank_pb2.AccountState:
        caller = current_caller()
        method, answer = "ActivateFinancial", bank_pb2.AccountState
        replayed = self._once.replay(method, request, answer)
        if replayed is not None:
            return replayed
        v = Violations()
        required_id(request.card_id, "card_id", v)
        presented = presented_document(request.document, v, request.card_number)
        if not request.card_number or len(request.card_number) > MAX_CARD_NUMBER:
            v.add("card_number", "the number read from the card's chip is required", "REQUIRED")
        v.raise_if_any(rule=financial.ACTIVATION_RULE)
        activation = uc.activation_id(scope_of(method), request.request_id)

        def begin() -> bool:
            with self._uow() as uow:
                _, pending = uc.begin_activation(
                    uow, request.card_id, presented, caller, activation, self._clock
                )
                uow.commit()
            return pending is not None

        try:
            pending = begin()
        except DomainError as exc:
            return self._refuse(method, request, answer, exc)
        if pending:
            try:
                self._card.activate_card(
                    request.card_id,
                    presented.document_type,
                    presented.document_number,
                    uc.card_request_id(activation),
                    _authorization(context),
                )
            except DomainError as exc:
                if exc.kind not in TRANSIENT:  # a transient failure leaves the request open
                    with self._uow() as uow:
                        uc.refuse_activation(uow, activation, exc, self._clock)
                        uow.commit()
                return self._refuse(method, request, answer, exc)

        def finish(uow: BankUnitOfWork) -> bank_pb2.AccountState:
            account = uc.finish_activation(uow, request.card_id, activation, self._clock)
            return self._state(uow, account)

        return self._once.call(method, request, answer, finish)

    # -- loss, unlock, reserved phone (A13.4, A20.1)

    def _counter_request(
        self, request: pb.FinancialCounterRequest, rule: str
    ) -> tuple[Presented, financial.Agent | None]:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        presented = presented_document(request.document, v)
        agent = presented_agent(request, v)
        v.raise_if_any(rule=rule)
        return presented, agent

    def ReportFinancialLoss(
        self, request: pb.FinancialCounterRequest, context: grpc.ServicerContext
    ) -> bank_pb2.AccountState:
        caller = current_caller()
        presented, agent = self._counter_request(request, financial.LOSS_RULE)

        def work(uow: BankUnitOfWork) -> bank_pb2.AccountState:
            account = uc.report_financial_loss(
                uow, request.card_id, presented, caller, self._clock, agent
            )
            return self._state(uow, account)

        return self._once.call("ReportFinancialLoss", request, bank_pb2.AccountState, work)

    def UnlockFinancial(
        self, request: pb.FinancialCounterRequest, context: grpc.ServicerContext
    ) -> bank_pb2.AccountState:
        caller = current_caller()
        presented, agent = self._counter_request(request, financial.COUNTER_RULE)

        def work(uow: BankUnitOfWork) -> bank_pb2.AccountState:
            account = uc.unlock_financial(uow, request.card_id, presented, caller, agent)
            return self._state(uow, account)

        return self._once.call("UnlockFinancial", request, bank_pb2.AccountState, work)

    def ChangeReservedPhone(
        self, request: pb.ChangeReservedPhoneRequest, context: grpc.ServicerContext
    ) -> bank_pb2.AccountState:
        caller = current_caller()
        v = Violations()
        required_id(request.card_id, "card_id", v)
        presented = presented_document(request.document, v)
        financial.check_phone(request.phone, "phone", v)
        v.raise_if_any(rule=financial.COUNTER_RULE)

        def work(uow: BankUnitOfWork) -> bank_pb2.AccountState:
            account = uc.change_reserved_phone(
                uow, request.card_id, presented, request.phone, caller
            )
            return self._state(uow, account)

        return self._once.call("ChangeReservedPhone", request, bank_pb2.AccountState, work)

    def GetFinancialState(
        self, request: pb.GetFinancialStateRequest, context: grpc.ServicerContext
    ) -> bank_pb2.AccountState:
        caller = current_caller()
        v = Violations()
        required_id(request.card_id, "card_id", v)
        v.raise_if_any()
        with self._uow(readonly=True) as uow:
            account = uc.get_financial_state(uow, request.card_id, caller)
            return self._state(uow, account)

    # -- the financial password (A12.1, A12.3); hashing runs outside any transaction

    def _password_request(
        self, request: Any, with_document: bool
    ) -> tuple[Presented | None, Violations]:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        presented = presented_document(request.document, v) if with_document else None
        if not request.new_password:
            v.add("new_password", "the new password is required", "REQUIRED")
        return presented, v

    def _context(
        self, method: str, request: Any, presented: Presented | None
    ) -> uc.PasswordContext:
        caller = current_caller()

        def read() -> uc.PasswordContext:
            with self._uow(readonly=True) as uow:
                found = uc.password_context(uow, request.card_id, presented, caller)
            financial.check_new_password(request.new_password, found.birth)
            return found

        found: uc.PasswordContext = self._checked(
            method, request, pb.FinancialPasswordResponse, read
        )
        return found

    def _set_at_counter(
        self, method: str, request: Any, first: bool
    ) -> pb.FinancialPasswordResponse:
        """Set (the first time) or reset the password at the counter, with the document."""
        answer = pb.FinancialPasswordResponse
        replayed = self._once.replay(method, request, answer)
        if replayed is not None:
            return replayed
        presented, v = self._password_request(request, with_document=True)
        v.raise_if_any(rule=financial.PASSWORD_RULE)
        found = self._context(method, request, presented)
        new_hash = self._hasher.hash(request.new_password)

        def work(uow: BankUnitOfWork) -> pb.FinancialPasswordResponse:
            if first:
                state = uc.store_first_password(uow, found.account, new_hash, self._clock)
            else:
                state = uc.store_new_password(
                    uow, found.account, new_hash, found.state.hash, self._clock
                )
            return _password_pb(request.card_id, state)

        return self._once.call(method, request, answer, work)

    def SetFinancialPassword(
        self, request: pb.SetFinancialPasswordRequest, context: grpc.ServicerContext
    ) -> pb.FinancialPasswordResponse:
        return self._set_at_counter("SetFinancialPassword", request, first=True)

    def ChangeFinancialPassword(
        self, request: pb.ChangeFinancialPasswordRequest, context: grpc.ServicerContext
    ) -> pb.FinancialPasswordResponse:
        method, answer = "ChangeFinancialPassword", pb.FinancialPasswordResponse
        replayed = self._once.replay(method, request, answer)
        if replayed is not None:
            return replayed
        _, v = self._password_request(request, with_document=False)
        if not request.old_password:
            v.add("old_password", "the current password is required", "REQUIRED")
        v.raise_if_any(rule=financial.PASSWORD_RULE)
        found = self._context(method, request, None)
        if found.state.hash is None:
            return self._refuse(method, request, answer, financial.password_not_set())
        if found.state.locked:
            return self._refuse(method, request, answer, financial.password_locked())
        correct = self._hasher.verify(found.state.hash, request.old_password)
        with self._uow() as uow:
            after, stands = uc.count_try(uow, found.account, correct, found.state.hash)
            uow.commit()
        if not stands:
            refusal = financial.password_locked() if after.locked else financial.wrong_password()
            return self._refuse(method, request, answer, refusal)
        new_hash = self._hasher.hash(request.new_password)

        def work(uow: BankUnitOfWork) -> pb.FinancialPasswordResponse:
            state = uc.store_new_password(
                uow, found.account, new_hash, found.state.hash, self._clock
            )
            return _password_pb(request.card_id, state)

        return self._once.call(method, request, answer, work)

    def ResetFinancialPassword(
        self, request: pb.ResetFinancialPasswordRequest, context: grpc.ServicerContext
    ) -> pb.FinancialPasswordResponse:
        return self._set_at_counter("ResetFinancialPassword", request, first=False)

    def VerifyFinancialPassword(
        self, request: pb.VerifyFinancialPasswordRequest, context: grpc.ServicerContext
    ) -> pb.VerifyFinancialPasswordResponse:
        with self._uow(readonly=True) as uow:
            found = uc.verify_context(uow, request.card_id)
        if found is None or found.state.hash is None:
            self._hasher.verify(None, request.password)  # the same time for every answer
            return pb.VerifyFinancialPasswordResponse(valid=False, locked=False, tries_left=0)
        correct = not found.state.locked and self._hasher.verify(found.state.hash, request.password)
        with self._uow() as uow:
            after, stands = uc.count_try(uow, found.account, correct, found.state.hash)
            uow.commit()
        return pb.VerifyFinancialPasswordResponse(
            valid=stands, locked=after.locked, tries_left=after.tries_left
        )

    # -- home service (A25.1)

    def _book_command(self, request: pb.BookHomeServiceRequest) -> uc.BookHome:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        check_branch_id(request.branch_id, "branch_id", v)
        address = _text(request.address, "address", home_service.MAX_ADDRESS, v)
        day = from_date(request.date, "date", v)
        if day is None and not v.items:
            v.add("date", "the day of the visit is required", "REQUIRED")
        slot = enum_name(pb.HomeSlot, request.slot)
        if not slot:
            v.add("slot", "HOME_MORNING or HOME_AFTERNOON is required", "REQUIRED")
        business = enum_name(pb.HomeBusiness, request.business)
        if not business:
            v.add("business", "the business to do at the visit is required", "REQUIRED")
        name = _text(request.contact_name, "contact_name", home_service.MAX_NAME, v)
        financial.check_phone(request.contact_phone, "contact_phone", v)
        note = _text(request.note, "note", home_service.MAX_NOTE, v, required=False)
        v.raise_if_any(rule=home_service.RULE)
        if day is None:
            raise RuntimeError("day must be known here")
        return uc.BookHome(
            card_id=request.card_id,
            branch_id=request.branch_id,
            address=address,
            date=day,
            slot=Slot(slot),
            business=Business(business),
            contact_name=name,
            contact_phone=request.contact_phone,
            note=note,
        )

    def BookHomeService(
        self, request: pb.BookHomeServiceRequest, context: grpc.ServicerContext
    ) -> pb.HomeService:
        caller = current_caller()
        method, answer = "BookHomeService", pb.HomeService
        replayed = self._once.replay(method, request, answer)
        if replayed is not None:
            return replayed
        cmd = self._book_command(request)

        def eligibility() -> frozenset[str]:
            with self._uow(readonly=True) as uow:
                holder = uc.home_holder(uow, cmd.card_id, caller).holder
            facts = self._identity.person(holder.document_type, holder.document_number)
            if caller.person_id and facts.person_id != caller.person_id:
                raise account_not_found()  # a person books for their own card only
            return facts.preferential

        flags: frozenset[str] = self._checked(method, request, answer, eligibility)

        def work(uow: BankUnitOfWork) -> pb.HomeService:
            return home_pb(uc.book_home_service(uow, cmd, flags, caller, self._clock))

        return self._once.call(method, request, answer, work)

    def GetHomeService(
        self, request: pb.GetHomeServiceRequest, context: grpc.ServicerContext
    ) -> pb.HomeService:
        caller = current_caller()
        v = Violations()
        required_id(request.home_service_id, "home_service_id", v)
        v.raise_if_any()
        with self._uow(readonly=True) as uow:
            return home_pb(uc.get_home_service(uow, request.home_service_id, caller))

    def ListHomeServices(
        self, request: pb.ListHomeServicesRequest, context: grpc.ServicerContext
    ) -> pb.ListHomeServicesResponse:
        caller = current_caller()
        v = Violations()
        check_branch_id(request.branch_id, "branch_id", v)
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            v.add("page_size", f"0 to {MAX_PAGE}", "OUT_OF_RANGE")
        offset = 0
        if request.page_token:
            if not request.page_token.isdigit() or len(request.page_token) > 9:
                v.add("page_token", "not a token of this list", "BAD_TOKEN")
            else:
                offset = int(request.page_token)
        status_name = enum_name(pb.HomeServiceStatus, request.status)
        v.raise_if_any()
        status = Status(status_name) if status_name else None
        size = request.page_size or DEFAULT_PAGE
        with self._uow(readonly=True) as uow:
            found = uc.list_home_services(uow, request.branch_id, status, offset, size + 1, caller)
        more = len(found) > size
        return pb.ListHomeServicesResponse(
            home_services=[home_pb(b) for b in found[:size]],
            next_page_token=str(offset + size) if more else "",
        )

    def UpdateHomeService(
        self, request: pb.UpdateHomeServiceRequest, context: grpc.ServicerContext
    ) -> pb.HomeService:
        caller = current_caller()
        v = Violations()
        required_id(request.home_service_id, "home_service_id", v)
        to = enum_name(pb.HomeServiceStatus, request.status)
        if to not in ("HOME_SCHEDULED", "HOME_DONE", "HOME_CANCELLED"):
            v.add(
                "status",
                "HOME_SERVICE_STATUS_HOME_SCHEDULED, HOME_SERVICE_STATUS_HOME_DONE or "
                "HOME_SERVICE_STATUS_HOME_CANCELLED is required",
                "REQUIRED",
            )
        if request.staff_id and len(request.staff_id) > home_service.MAX_STAFF_ID:
            v.add("staff_id", f"at most {home_service.MAX_STAFF_ID} characters", "TOO_LONG")
        note = _text(request.note, "note", home_service.MAX_NOTE, v, required=False)
        v.raise_if_any(rule=home_service.RULE)

        def work(uow: BankUnitOfWork) -> pb.HomeService:
            booking = uc.update_home_service(
                uow,
                request.home_service_id,
                Status(to),
                request.staff_id,
                note,
                caller,
                self._clock,
            )
            return home_pb(booking)

        return self._once.call("UpdateHomeService", request, pb.HomeService, work)
