"""The transit gRPC servicer: proto -> command -> use case -> proto, nothing else.

Authentication, error mapping and logging happen in the platform's call guard; this file checks
channels and roles, decodes requests (malformed fields become one INVALID_ARGUMENT with a
violation each), asks the card and identity services what a use case needs before its
transaction, runs the use case in a unit of work (mutating ones through the idempotency runner)
and encodes the answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from services.platform import channels
from services.platform.auth import Caller, Role, current_caller
from services.platform.channels import Operation
from services.platform.clock import Clock
from services.platform.db import Database
from services.platform.errors import DomainError, Violations
from services.platform.idempotency import IdempotencyStore, Idempotent
from services.platform.protoconv import enum_name, enum_value, to_date, to_timestamp
from services.transit import service
from services.transit.clients import CardPort, IdentityPort
from services.transit.domain import park_pass as passes
from services.transit.domain import wallet as wallets
from services.transit.domain.park_pass import ParkPass
from services.transit.domain.wallet import (
    CardFacts,
    CardView,
    Entry,
    Refund,
    RefundReason,
    RefundState,
    Wallet,
)
from services.transit.store import TransitUnitOfWork
from sscard.card.v1 import card_pb2
from sscard.common.v1 import common_pb2
from sscard.transit.v1 import transit_pb2 as pb
from sscard.transit.v1 import transit_pb2_grpc

M = TypeVar("M", bound=Message)

MAX_ID = 64
DEFAULT_PAGE = 50
MAX_PAGE = 200


# --- decoding -----------------------------------------------------------------------------------


def _required_id(value: str, field: str, v: Violations) -> None:
    if not value or len(value) > MAX_ID:
        v.add(field, f"an id of 1 to {MAX_ID} characters is required", "REQUIRED")


def _card_id(value: str, field: str = "card_id") -> None:
    v = Violations()
    _required_id(value, field, v)
    v.raise_if_any()


def _page(request: pb.ListTransactionsRequest) -> tuple[int, int]:
    v = Violations()
    _required_id(request.card_id, "card_id", v)
    if request.page_size < 0 or request.page_size > MAX_PAGE:
        v.add("page_size", f"0 to {MAX_PAGE}", "OUT_OF_RANGE")
    before = 0
    if request.page_token:
        try:
            before = int(request.page_token)
        except ValueError:
            before = -1
        if before <= 0:
            v.add("page_token", "a token from a previous answer", "INVALID")
    v.raise_if_any()
    return before, request.page_size or DEFAULT_PAGE


def _refund_page(
    request: pb.ListRefundsRequest,
) -> tuple[RefundState | None, tuple[dt.datetime, str] | None, int]:
    """The state filter, where the page starts (``<created_at ISO>|<refund_id>`` of the last
    refund of the previous page) and its size."""
    v = Violations()
    if request.page_size < 0 or request.page_size > MAX_PAGE:
        v.add("page_size", f"0 to {MAX_PAGE}", "OUT_OF_RANGE")
    state = None
    if request.state not in pb.RefundState.values():
        v.add("state", "a RefundState", "INVALID")
    elif request.state != pb.REFUND_STATE_UNSPECIFIED:
        state = RefundState(enum_name(pb.RefundState, request.state))
    after = None
    if request.page_token:
        created, _, refund_id = request.page_token.partition("|")
        try:
            after = (dt.datetime.fromisoformat(created), refund_id)
        except ValueError:
            after = None
        if after is None or not refund_id or after[0].tzinfo is None:
            v.add("page_token", "a token from a previous answer", "INVALID")
    v.raise_if_any()
    return state, after, request.page_size or DEFAULT_PAGE


def _may_read(caller: Caller, operation: Operation) -> None:
    """Other sscard services and operations read everything; a person at a counter or in the
    app reads through the channels that serve the function."""
    if caller.has_any(Role.SERVICE, Role.OPS):
        return
    channels.check(operation, caller)


_CARD_STATUSES = frozenset(card_pb2.CardStatus.values())

_MOVE_REASONS = {
    pb.REFUND_REASON_REPLACEMENT: RefundReason.REPLACEMENT,
    pb.REFUND_REASON_CANCELLATION: RefundReason.CANCELLATION,
}


# --- encoding -----------------------------------------------------------------------------------


def entry_pb(entry: Entry) -> pb.Entry:
    return pb.Entry(
        entry_id=entry.entry_id,
        card_id=entry.card_id,
        kind=enum_value(pb.EntryKind, entry.kind.value),
        amount_fen=entry.amount_fen,
        balance_after_fen=entry.balance_after_fen,
        reference=entry.reference,
        channel=enum_value(common_pb2.Channel, entry.channel),
        outlet_id=entry.outlet_id,
        booked_at=to_timestamp(entry.booked_at),
    )


def wallet_pb(wallet: Wallet) -> pb.Wallet:
    return pb.Wallet(
        card_id=wallet.card_id,
        balance_fen=wallet.balance_fen,
        status=enum_value(pb.WalletStatus, wallet.status.value),
        closed_reason=enum_value(
            pb.RefundReason, wallet.closed_reason.value if wallet.closed_reason else ""
        ),
        updated_at=to_timestamp(wallet.updated_at),
    )


def refund_pb(refund: Refund) -> pb.BalanceRefund:
    return pb.BalanceRefund(
        refund_id=refund.refund_id,
        card_id=refund.card_id,
        to_card_id=refund.to_card_id,
        amount_fen=refund.amount_fen,
        reason=enum_value(pb.RefundReason, refund.reason.value),
        state=enum_value(pb.RefundState, refund.state.value),
        balance_after_fen=refund.balance_after_fen,
        created_at=to_timestamp(refund.created_at),
        arrived_at=to_timestamp(refund.arrived_at),
        bank_entry_id=refund.bank_entry_id,
        last_error=refund.last_error,
    )


def pass_pb(held: ParkPass) -> pb.ParkPass:
    return pb.ParkPass(
        pass_id=held.pass_id,
        card_id=held.card_id,
        year=held.year,
        valid_from=to_date(held.valid_from),
        valid_until=to_date(held.valid_until),
        purchased_at=to_timestamp(held.purchased_at),
        channel=enum_value(common_pb2.Channel, held.channel),
        outlet_id=held.outlet_id,
        original_card_id=held.original_card_id,
        transferred_at=to_timestamp(held.transferred_at),
    )


# --- the servicer -------------------------------------------------------------------------------


class TransitApi(transit_pb2_grpc.TransitServiceServicer):
    def __init__(
        self,
        db: Database,
        clock: Clock,
        keys: IdempotencyStore,
        cards: CardPort,
        identity: IdentityPort,
    ) -> None:
        self._db = db
        self._clock = clock
        self._cards = cards
        self._identity = identity
        self._keys = keys
        self._once: Idempotent[TransitUnitOfWork] = Idempotent(keys, self._uow)

    def _uow(self, readonly: bool = False) -> TransitUnitOfWork:
        return TransitUnitOfWork(self._db, readonly)

    def _ask(
        self, method: str, request: Message, answer: type[M], ask: Callable[[], None]
    ) -> M | None:
        """Run the questions to other services a use case needs. If one fails (the card
        service is down, the card is lost now) the request may still have run before: a
        retry gets its committed answer, never a refusal it did not get the first time."""
        try:
            ask()
        except DomainError:
            stored = self._once.replay(method, request, answer)
            if stored is not None:
                return stored
            raise
        return None

    def _learn(self, card_id: str, holder: bool) -> CardFacts:
        """Ask the card service about the card and record its answer in transit's view: the
        status with its version, or with ``holder`` the full answer, which names the holder
        (its status has no version: kept only where transit holds no status of the card)."""
        card = self._cards.card(card_id) if holder else self._cards.status(card_id)
        view = CardView(card.card_id, card.status, card.status_version, card.person_id)
        with self._uow() as uow:
            service.record_card_view(uow, view, self._clock)
            uow.commit()
        return card

    def _own(self, caller: Caller, card_id: str) -> None:
        """A person reads only their own card's wallet and pass, as transit's view names its
        holder; a view that does not name it yet is completed once from the card service."""
        if not caller.person_id:
            return
        with self._uow(readonly=True) as uow:
            holder = service.holder_of(uow, card_id)
        if not holder:
            holder = self._learn(card_id, holder=True).person_id
        wallets.check_own(caller.person_id, holder)

    # -- wallet

    def TopUp(self, request: pb.TopUpRequest, context: grpc.ServicerContext) -> pb.Entry:
        caller = current_caller()
        channels.check(Operation.TOP_UP, caller)
        _card_id(request.card_id)
        at_once = self._top_up_in_one(request, caller)
        if at_once is not None:
            return at_once
        try:  # on transit's own view of the card
            return self._top_up(request, caller, None)
        except service.NotTheHolder:
            raise wallets.card_not_found() from None
        except service.CardViewUnsettled as unsettled:  # the card service decides
            holder_unknown = unsettled.holder_unknown
        found: list[CardFacts] = []

        def ask() -> None:
            card = self._learn(request.card_id, holder=holder_unknown)
            if holder_unknown:
                wallets.check_own(caller.person_id, card.person_id)
            found.append(card)

        stored = self._ask("TopUp", request, pb.Entry, ask)
        if stored is not None:
            return stored
        return self._top_up(request, caller, found[0])

    def _top_up_in_one(self, request: pb.TopUpRequest, caller: Caller) -> pb.Entry | None:
        """PostgreSQL: the top-up in one statement (``service.top_up_in_one``); None when the
        ordinary path decides."""
        if self._db.is_sqlite:
            return None
        intended = service.intended_top_up(
            request.card_id, request.amount_fen, request.request_id, caller, self._clock
        )
        if intended is None:
            return None
        call = self._keys.one_statement("TopUp", request.request_id, request, intended.booked_at)
        answer = entry_pb(intended)
        trip = service.top_up_in_one(self._db, call, intended, answer.SerializeToString(), caller)
        if trip.result == "OK":
            answer.entry_id, answer.balance_after_fen = trip.entry_id, trip.balance_after_fen
            return answer
        if trip.result == "SLOW":
            return None
        return self._keys.settle(call, trip.held, pb.Entry)

    def _top_up(self, request: pb.TopUpRequest, caller: Caller, card: CardFacts | None) -> pb.Entry:
        def work(uow: TransitUnitOfWork) -> pb.Entry:
            entry = service.top_up(
                uow,
                request.card_id,
                card,
                request.amount_fen,
                request.request_id,
                caller,
                self._clock,
            )
            return entry_pb(entry)

        return self._once.call("TopUp", request, pb.Entry, work)

    def GetBalance(self, request: pb.GetBalanceRequest, context: grpc.ServicerContext) -> pb.Wallet:
        caller = current_caller()
        _may_read(caller, Operation.TOP_UP)
        _card_id(request.card_id)
        self._own(caller, request.card_id)
        with self._uow(readonly=True) as uow:
            return wallet_pb(service.get_wallet(uow, request.card_id))

    def ListTransactions(
        self, request: pb.ListTransactionsRequest, context: grpc.ServicerContext
    ) -> pb.ListTransactionsResponse:
        caller = current_caller()
        _may_read(caller, Operation.TOP_UP)
        before, size = _page(request)
        self._own(caller, request.card_id)
        with self._uow(readonly=True) as uow:
            found = service.list_entries(uow, request.card_id, before, size + 1)
        answer = pb.ListTransactionsResponse(entries=[entry_pb(e) for e in found[:size]])
        if len(found) > size:
            answer.next_page_token = str(found[size - 1].entry_id)
        return answer

    # -- refunds

    def Refund(self, request: pb.RefundRequest, context: grpc.ServicerContext) -> pb.BalanceRefund:
        caller = current_caller()
        channels.check(Operation.TRANSIT_REFUND, caller)
        _card_id(request.card_id)
        if request.amount_fen < 0:
            wallets.refund_amount(wallets.empty_wallet(request.card_id), request.amount_fen)

        def work(uow: TransitUnitOfWork) -> pb.BalanceRefund:
            refunded = service.refund(
                uow,
                request.card_id,
                "",
                request.amount_fen,
                RefundReason.AT_BRANCH,
                caller,
                self._clock,
            )
            return refund_pb(refunded)

        return self._once.call("Refund", request, pb.BalanceRefund, work)

    def RefundBalance(
        self, request: pb.RefundBalanceRequest, context: grpc.ServicerContext
    ) -> pb.BalanceRefund:
        caller = current_caller()
        channels.check(Operation.TRANSIT_REFUND, caller)
        v = Violations()
        _required_id(request.card_id, "card_id", v)
        reason = _MOVE_REASONS.get(request.reason)
        if reason is None:
            v.add("reason", "REPLACEMENT or CANCELLATION is required", "REQUIRED")
        if reason is RefundReason.REPLACEMENT:
            _required_id(request.to_card_id, "to_card_id", v)
        elif request.to_card_id and len(request.to_card_id) > MAX_ID:
            v.add("to_card_id", f"an id of at most {MAX_ID} characters", "INVALID")
        v.raise_if_any(rule="A16.3" if reason is RefundReason.REPLACEMENT else "A19.1")
        if reason is None:
            raise RuntimeError("reason must be known here")

        def work(uow: TransitUnitOfWork) -> pb.BalanceRefund:
            refunded = service.refund(
                uow, request.card_id, request.to_card_id, 0, reason, caller, self._clock
            )
            return refund_pb(refunded)

        return self._once.call("RefundBalance", request, pb.BalanceRefund, work)

    def GetRefund(
        self, request: pb.GetRefundRequest, context: grpc.ServicerContext
    ) -> pb.BalanceRefund:
        _may_read(current_caller(), Operation.TRANSIT_REFUND)
        with self._uow(readonly=True) as uow:
            return refund_pb(service.get_refund(uow, request.refund_id))

    def ListRefunds(
        self, request: pb.ListRefundsRequest, context: grpc.ServicerContext
    ) -> pb.ListRefundsResponse:
        state, after, size = _refund_page(request)
        with self._uow(readonly=True) as uow:
            found = service.list_refunds(uow, state, after, size + 1)
        answer = pb.ListRefundsResponse(refunds=[refund_pb(r) for r in found[:size]])
        if len(found) > size:
            last = found[size - 1]
            answer.next_page_token = f"{last.created_at.isoformat()}|{last.refund_id}"
        return answer

    # -- park annual pass

    def PurchaseParkPass(
        self, request: pb.PurchaseParkPassRequest, context: grpc.ServicerContext
    ) -> pb.ParkPass:
        caller = current_caller()
        channels.check(Operation.PARK_PASS, caller)
        _card_id(request.card_id)
        found: list[CardFacts] = []

        def ask() -> None:
            card = self._cards.card(request.card_id)
            channels.check(Operation.PARK_PASS, caller, card.bank_code)
            wallets.check_card_usable(card)
            passes.check_eligible(self._identity.preferential(card.person_id))
            found.append(card)

        stored = self._ask("PurchaseParkPass", request, pb.ParkPass, ask)
        if stored is not None:
            return stored
        card = found[0]

        def work(uow: TransitUnitOfWork) -> pb.ParkPass:
            return pass_pb(service.purchase_pass(uow, card, caller, self._clock))

        return self._once.call("PurchaseParkPass", request, pb.ParkPass, work)

    def GetParkPass(
        self, request: pb.GetParkPassRequest, context: grpc.ServicerContext
    ) -> pb.ParkPass:
        caller = current_caller()
        _may_read(caller, Operation.PARK_PASS)
        _card_id(request.card_id)
        self._own(caller, request.card_id)
        if request.year < 0 or request.year > 9999:
            v = Violations()
            v.add("year", "a calendar year, or 0 for this year", "OUT_OF_RANGE")
            v.raise_if_any()
        with self._uow(readonly=True) as uow:
            return pass_pb(service.get_pass(uow, request.card_id, request.year, self._clock))

    def TransferParkPass(
        self, request: pb.TransferParkPassRequest, context: grpc.ServicerContext
    ) -> pb.TransferParkPassResponse:
        v = Violations()
        _required_id(request.from_card_id, "from_card_id", v)
        _required_id(request.to_card_id, "to_card_id", v)
        v.raise_if_any(rule="A16.4")

        def work(uow: TransitUnitOfWork) -> pb.TransferParkPassResponse:
            moved = service.transfer_passes(
                uow, request.from_card_id, request.to_card_id, self._clock
            )
            return pb.TransferParkPassResponse(passes=[pass_pb(p) for p in moved])

        return self._once.call("TransferParkPass", request, pb.TransferParkPassResponse, work)

    # -- transit's view of the cards

    def RecordCardStatus(
        self, request: pb.RecordCardStatusRequest, context: grpc.ServicerContext
    ) -> pb.CardStatusView:
        service.check_card_service(current_caller())
        v = Violations()
        _required_id(request.card_id, "card_id", v)
        if (
            request.status not in _CARD_STATUSES
            or request.status == card_pb2.CARD_STATUS_UNSPECIFIED
        ):
            v.add("status", "a CardStatus", "INVALID")
        if request.version <= 0:
            v.add("version", "a positive status version", "OUT_OF_RANGE")
        if len(request.person_id) > MAX_ID:
            v.add("person_id", f"an id of at most {MAX_ID} characters", "INVALID")
        v.raise_if_any(rule="A13.2")
        view = CardView(
            request.card_id,
            enum_name(card_pb2.CardStatus, request.status),
            request.version,
            request.person_id,
        )

        def work(uow: TransitUnitOfWork) -> pb.CardStatusView:
            kept = service.record_card_view(uow, view, self._clock)
            return pb.CardStatusView(
                card_id=kept.card_id,
                status=enum_value(card_pb2.CardStatus, kept.status),
                version=kept.version,
            )

        return self._once.call("RecordCardStatus", request, pb.CardStatusView, work)
