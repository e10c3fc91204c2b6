"""The bank gRPC servicer: proto -> command -> use case -> proto, nothing else.

Authentication, error mapping and logging happen in the platform's call guard; this file
checks roles, decodes requests (malformed fields become one INVALID_ARGUMENT with a violation
each), runs the use case in a unit of work (mutating ones through the idempotency runner) and
encodes the answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc

from services.bank import counter_service, service
from services.bank.domain.account import Account, IdentityFacts, LossKind
from services.bank.domain.branch import (
    Branch,
    check_bank_code,
    check_branch_id,
    validate_branch,
)
from services.bank.domain.production import (
    COLLECTED_AT_BRANCH,
    Delivery,
    OrderRequest,
    ProductionKind,
    ProductionOrder,
)
from services.bank.domain.recall import CardRecall, RecallReason, actor
from services.bank.store import BankUnitOfWork
from services.platform.auth import Caller, current_caller
from services.platform.calendar import WorkingDayCalendar
from services.platform.clock import Clock
from services.platform.db import Database
from services.platform.errors import Violations
from services.platform.idempotency import IdempotencyStore, Idempotent
from services.platform.pii import PiiCipher
from services.platform.protoconv import enum_name, enum_value, from_date, to_date, to_timestamp
from sscard.bank.v1 import bank_pb2 as pb
from sscard.bank.v1 import bank_pb2_grpc
from sscard.common.v1 import common_pb2

MAX_ID = 64
MAX_NAME = 200
MAX_DOCUMENT_NUMBER = 40


# --- decoding -----------------------------------------------------------------------------------


def required_id(value: str, field: str, v: Violations) -> None:
    if not value or len(value) > MAX_ID:
        v.add(field, f"an id of 1 to {MAX_ID} characters is required", "REQUIRED")


def _facts(msg: pb.IdentityFacts, prefix: str, v: Violations) -> IdentityFacts:
    name = " ".join(msg.name.split())
    if not name or len(name) > MAX_NAME:
        v.add(f"{prefix}.name", f"a name of 1 to {MAX_NAME} characters is required", "REQUIRED")
    doc_type = enum_name(common_pb2.DocumentType, msg.document.type)
    if not doc_type:
        v.add(f"{prefix}.document.type", "a known document type is required", "REQUIRED")
    number = msg.document.number
    if not number or len(number) > MAX_DOCUMENT_NUMBER:
        v.add(
            f"{prefix}.document.number",
            f"a document number of 1 to {MAX_DOCUMENT_NUMBER} characters is required",
            "REQUIRED",
        )
    valid_until = from_date(msg.document_valid_until, f"{prefix}.document_valid_until", v)
    return IdentityFacts(name, doc_type, number, valid_until)


def _order_request(msg: pb.CreateProductionOrderRequest) -> OrderRequest:
    v = Violations()
    required_id(msg.card_id, "card_id", v)
    check_bank_code(msg.bank_code, "bank_code", v)
    required_id(msg.account_id, "account_id", v)
    kind = enum_name(pb.ProductionKind, msg.kind)
    if not kind:
        v.add(
            "kind",
            "PRODUCTION_KIND_FIRST, PRODUCTION_KIND_REISSUE or PRODUCTION_KIND_REPLACEMENT "
            "is required",
            "REQUIRED",
        )
    if not msg.HasField("applied_at"):
        v.add("applied_at", "the time of the application is required", "REQUIRED")
    if msg.applied_at_branch_id:
        check_branch_id(msg.applied_at_branch_id, "applied_at_branch_id", v)
    delivery = enum_name(pb.Delivery, msg.delivery)
    if not delivery:
        v.add(
            "delivery",
            "DELIVERY_BRANCH_PICKUP, DELIVERY_MAIL or DELIVERY_EMPLOYER is required",
            "REQUIRED",
        )
    elif Delivery(delivery) in COLLECTED_AT_BRANCH:
        check_branch_id(msg.pickup_branch_id, "pickup_branch_id", v)
    v.raise_if_any(rule="A22.1")
    return OrderRequest(
        card_id=msg.card_id,
        bank_code=msg.bank_code,
        account_id=msg.account_id,
        kind=ProductionKind(kind),
        applied_at=msg.applied_at.ToDatetime(tzinfo=dt.UTC),
        applied_at_branch_id=msg.applied_at_branch_id,
        delivery=Delivery(delivery),
        pickup_branch_id=msg.pickup_branch_id,
    )


def _loss_kind(value: int, v: Violations) -> LossKind | None:
    kind = enum_name(pb.LossKind, value)
    if not kind:
        v.add("kind", "TEMPORARY_LOSS or FORMAL_LOSS is required", "REQUIRED")
        return None
    return LossKind(kind)


def _recall_reason(value: int, v: Violations) -> RecallReason | None:
    reason = enum_name(pb.RecallReason, value)
    if not reason:
        v.add(
            "reason",
            "RECALL_REASON_REPLACED, RECALL_REASON_NOT_HANDED_OUT, "
            "RECALL_REASON_HOLDER_DECEASED or RECALL_REASON_RETURNED_BY_EMPLOYER is required",
            "REQUIRED",
        )
        return None
    return RecallReason(reason)


def _actor(caller: Caller) -> str:
    return actor(caller.caller, caller.operator_id)


# --- encoding -----------------------------------------------------------------------------------


def branch_pb(branch: Branch) -> pb.Branch:
    return pb.Branch(
        bank_code=branch.bank_code,
        branch_id=branch.branch_id,
        name=branch.name,
        instant=branch.instant,
        address=branch.address,
    )


def order_pb(order: ProductionOrder) -> pb.ProductionOrder:
    return pb.ProductionOrder(
        order_id=order.order_id,
        card_id=order.card_id,
        bank_code=order.bank_code,
        status=enum_value(pb.OrderStatus, order.status.value),
        kind=enum_value(pb.ProductionKind, order.kind.value),
        due_date=to_date(order.due_date),
        instant=order.instant,
        card_number=order.card_number,
        produced_at=to_timestamp(order.produced_at),
        delivery=enum_value(pb.Delivery, order.delivery.value),
        pickup_branch_id=order.pickup_branch_id,
    )


def _account_status(account: Account) -> Any:
    return enum_value(pb.AccountStatus, account.status.value)


def account_pb(
    account: Account, phone_masked: str = "", password_set: bool = False
) -> pb.AccountState:
    return pb.AccountState(
        account_id=account.account_id,
        card_id=account.card_id,
        bank_code=account.bank_code,
        status=_account_status(account),
        loss=enum_value(pb.LossKind, account.loss.value if account.loss else ""),
        suspended_at=to_timestamp(account.suspended_at),
        financial_activated_at=to_timestamp(account.financial_activated_at),
        reserved_phone_masked=phone_masked,
        financial_password_set=password_set,
    )


def recall_pb(recall: CardRecall) -> pb.CardRecall:
    return pb.CardRecall(
        card_id=recall.card_id,
        reason=enum_value(pb.RecallReason, recall.reason.value),
        recalled_at=to_timestamp(recall.recalled_at),
        recalled_by=recall.recalled_by,
        destroyed_at=to_timestamp(recall.destroyed_at),
        destroyed_by=recall.destroyed_by,
    )


# --- the servicer -------------------------------------------------------------------------------


class BankApi(bank_pb2_grpc.BankServiceServicer):
    def __init__(
        self,
        db: Database,
        cipher: PiiCipher,
        clock: Clock,
        keys: IdempotencyStore,
        calendar: WorkingDayCalendar,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._calendar = calendar
        self._once: Idempotent[BankUnitOfWork] = Idempotent(keys, self._uow)

    def _uow(self, readonly: bool = False) -> BankUnitOfWork:
        return BankUnitOfWork(self._db, self._cipher, readonly)

    # -- branches

    def UpsertBranch(
        self, request: pb.UpsertBranchRequest, context: grpc.ServicerContext
    ) -> pb.Branch:
        b = request.branch
        branch = validate_branch(b.bank_code, b.branch_id, b.name, b.instant, b.address)

        def work(uow: BankUnitOfWork) -> pb.Branch:
            return branch_pb(service.upsert_branch(uow, branch, self._clock))

        return self._once.call("UpsertBranch", request, pb.Branch, work)

    def ListBranches(
        self, request: pb.ListBranchesRequest, context: grpc.ServicerContext
    ) -> pb.ListBranchesResponse:
        current_caller()  # any authenticated caller
        if request.bank_code:
            v = Violations()
            check_bank_code(request.bank_code, "bank_code", v)
            v.raise_if_any()
        with self._uow(readonly=True) as uow:
            found = service.list_branches(uow, request.bank_code)
        return pb.ListBranchesResponse(branches=[branch_pb(b) for b in found])

    # -- accounts

    def OpenAccount(
        self, request: pb.OpenAccountRequest, context: grpc.ServicerContext
    ) -> pb.OpenAccountResponse:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        check_bank_code(request.bank_code, "bank_code", v)
        presented = _facts(request.presented, "presented", v)
        verified = _facts(request.verified, "verified", v)
        v.raise_if_any(rule="A4.4")
        cmd = service.OpenAccount(request.card_id, request.bank_code, presented, verified)

        def work(uow: BankUnitOfWork) -> pb.OpenAccountResponse:
            account = service.open_account(uow, cmd, self._clock)
            return pb.OpenAccountResponse(
                account_id=account.account_id, status=_account_status(account)
            )

        return self._once.call("OpenAccount", request, pb.OpenAccountResponse, work)

    def CloseAccount(
        self, request: pb.CloseAccountRequest, context: grpc.ServicerContext
    ) -> pb.CloseAccountResponse:
        v = Violations()
        required_id(request.account_id, "account_id", v)
        v.raise_if_any()

        def work(uow: BankUnitOfWork) -> pb.CloseAccountResponse:
            account = service.close_account(uow, request.account_id, self._clock)
            return pb.CloseAccountResponse(
                account_id=account.account_id, status=_account_status(account)
            )

        return self._once.call("CloseAccount", request, pb.CloseAccountResponse, work)

    # -- loss suspension (A13.2, A13.4, A14.1)

    def SuspendForLoss(
        self, request: pb.SuspendForLossRequest, context: grpc.ServicerContext
    ) -> pb.AccountState:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        kind = _loss_kind(request.kind, v)
        v.raise_if_any()
        if kind is None:
            raise RuntimeError("kind must be known here")

        def work(uow: BankUnitOfWork) -> pb.AccountState:
            return account_pb(service.suspend_for_loss(uow, request.card_id, kind, self._clock))

        return self._once.call("SuspendForLoss", request, pb.AccountState, work)

    def LiftLossSuspension(
        self, request: pb.LiftLossSuspensionRequest, context: grpc.ServicerContext
    ) -> pb.AccountState:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        v.raise_if_any(rule="A14.1")

        def work(uow: BankUnitOfWork) -> pb.AccountState:
            return account_pb(service.lift_loss_suspension(uow, request.card_id))

        return self._once.call("LiftLossSuspension", request, pb.AccountState, work)

    def GetAccount(
        self, request: pb.GetAccountRequest, context: grpc.ServicerContext
    ) -> pb.AccountState:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        v.raise_if_any()
        with self._uow(readonly=True) as uow:
            shown = counter_service.view(uow, service.get_account(uow, request.card_id))
        return account_pb(shown.account, shown.phone_masked, shown.password_set)

    # -- production orders

    def CreateProductionOrder(
        self, request: pb.CreateProductionOrderRequest, context: grpc.ServicerContext
    ) -> pb.ProductionOrder:
        order_request = _order_request(request)

        def work(uow: BankUnitOfWork) -> pb.ProductionOrder:
            order = service.create_production_order(uow, order_request, self._calendar, self._clock)
            return order_pb(order)

        return self._once.call("CreateProductionOrder", request, pb.ProductionOrder, work)

    def CancelProductionOrder(
        self, request: pb.CancelProductionOrderRequest, context: grpc.ServicerContext
    ) -> pb.ProductionOrder:
        v = Violations()
        required_id(request.order_id, "order_id", v)
        v.raise_if_any()

        def work(uow: BankUnitOfWork) -> pb.ProductionOrder:
            return order_pb(service.cancel_production_order(uow, request.order_id, self._clock))

        return self._once.call("CancelProductionOrder", request, pb.ProductionOrder, work)

    def MarkProduced(
        self, request: pb.MarkProducedRequest, context: grpc.ServicerContext
    ) -> pb.ProductionOrder:
        v = Violations()
        required_id(request.order_id, "order_id", v)
        v.raise_if_any(rule="A7.1")

        def work(uow: BankUnitOfWork) -> pb.ProductionOrder:
            return order_pb(service.mark_produced(uow, request.order_id, self._clock))

        return self._once.call("MarkProduced", request, pb.ProductionOrder, work)

    def GetProductionOrder(
        self, request: pb.GetProductionOrderRequest, context: grpc.ServicerContext
    ) -> pb.ProductionOrder:
        if not request.order_id and not request.card_id:
            v = Violations()
            v.add("order_id", "name the order by order_id or by card_id", "REQUIRED")
            v.raise_if_any()
        with self._uow(readonly=True) as uow:
            order = service.get_production_order(uow, request.order_id, request.card_id)
        return order_pb(order)

    # -- cards taken back and destroyed (A16.6, A21.1, A21.2, A7.4)

    def RecallCard(
        self, request: pb.RecallCardRequest, context: grpc.ServicerContext
    ) -> pb.CardRecall:
        caller = current_caller()
        v = Violations()
        required_id(request.card_id, "card_id", v)
        reason = _recall_reason(request.reason, v)
        v.raise_if_any()
        if reason is None:
            raise RuntimeError("reason must be known here")
        by = _actor(caller)

        def work(uow: BankUnitOfWork) -> pb.CardRecall:
            recall = service.recall_card(uow, request.card_id, reason, by, self._clock)
            return recall_pb(recall)

        return self._once.call("RecallCard", request, pb.CardRecall, work)

    def DestroyCard(
        self, request: pb.DestroyCardRequest, context: grpc.ServicerContext
    ) -> pb.CardRecall:
        caller = current_caller()
        v = Violations()
        required_id(request.card_id, "card_id", v)
        v.raise_if_any(rule="A16.6")
        by = _actor(caller)

        def work(uow: BankUnitOfWork) -> pb.CardRecall:
            return recall_pb(service.destroy_card(uow, request.card_id, by, self._clock))

        return self._once.call("DestroyCard", request, pb.CardRecall, work)

    def GetCardRecall(
        self, request: pb.GetCardRecallRequest, context: grpc.ServicerContext
    ) -> pb.CardRecall:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        v.raise_if_any()
        with self._uow(readonly=True) as uow:
            recall = service.get_card_recall(uow, request.card_id)
        return recall_pb(recall)
