"""The ledger's gRPC servicer (A4.5, A9.2, A13.2, A16.6, A19.1, A19.2, A20.1, A23.1): who may
call, request decoding, the use case in one unit of work (mutating ones through the idempotency
runner), encoding. Nothing else.

Callers (see ledger.proto): a BANK_BRANCH counter (role ``counter``) of the account's issuing
bank books counter business; role ``service`` over INTERNAL, ONLINE or BANK_HOTLINE (other
sscard services and the bank's own online banking, ATM, third-party payment and phone systems)
books non-counter business, transit refunds and closings; role ``ops`` runs classes,
suspensions and alerts.
"""

from __future__ import annotations

from typing import Any

import grpc

from services.bank import ledger_service as ledger
from services.bank.api import MAX_ID, required_id
from services.bank.counter_api import presented_agent, presented_document
from services.bank.domain.ledger import (
    MAX_AMOUNT_FEN,
    Alert,
    AlertStatus,
    Entry,
    EntrySource,
    NonCounterReason,
    PaymentChannel,
)
from services.bank.domain.recall import actor
from services.bank.domain.tiers import Limits, Tier
from services.bank.store import BankUnitOfWork
from services.platform import channels
from services.platform.auth import Caller, Channel, Role, current_caller
from services.platform.channels import Operation
from services.platform.db import Database
from services.platform.errors import DomainError, Kind, Violations
from services.platform.idempotency import IdempotencyStore, Idempotent
from services.platform.pii import PiiCipher
from services.platform.protoconv import enum_name, enum_value, to_timestamp
from sscard.bank.v1 import ledger_pb2 as pb
from sscard.bank.v1 import ledger_pb2_grpc

MAX_TEXT = 128
MAX_NOTE = 1000
DEFAULT_PAGE = 50
MAX_PAGE = 500


# --- who calls ---------------------------------------------------------------------------------


def _counter_or_service(caller: Caller) -> Caller | None:
    """A branch counter or a bank's own core system (returned: its bank is checked against the
    account's), or a service of the suite (None); anyone else is refused."""
    if caller.channel is Channel.BANK_BRANCH and caller.has_any(Role.COUNTER):
        return caller
    if caller.has_any(Role.BANK) and caller.bank_code:
        return caller
    if caller.has_any(Role.SERVICE) and channels.allows(
        Operation.NON_COUNTER_PAYMENT, caller.channel
    ):
        return None
    raise DomainError(
        "ROLE_NOT_ALLOWED",
        "a counter or the core system of the issuing bank, or a service of the suite, is required",
        kind=Kind.PERMISSION,
    )


def _reader(caller: Caller) -> Caller | None:
    if caller.has_any(Role.OPS):
        return None
    return _counter_or_service(caller)


def _payer(caller: Caller, channel: PaymentChannel) -> Caller | None:
    """A counter payment only at a counter; a non-counter one only from the bank's systems. The
    channel is checked first, so a channel without the service is told so (A3.1)."""
    channels.check(
        Operation.NON_COUNTER_PAYMENT if channel.non_counter else Operation.COUNTER_PAYMENT,
        caller,
    )
    return _counter_or_service(caller)


def _by(caller: Caller) -> str:
    return actor(caller.caller, caller.operator_id)[:200]


# --- decoding ----------------------------------------------------------------------------------


def _amount(value: int, v: Violations) -> None:
    if value <= 0 or value > MAX_AMOUNT_FEN:
        v.add("amount_fen", f"a positive amount in fen up to {MAX_AMOUNT_FEN} is required")


def _text(value: str, field: str, v: Violations, required: bool = False) -> None:
    if len(value) > MAX_TEXT:
        v.add(field, f"at most {MAX_TEXT} characters")
    elif required and not value.strip():
        v.add(field, "required", "REQUIRED")


def _payment_channel(value: int, v: Violations) -> PaymentChannel | None:
    name = enum_name(pb.PaymentChannel, value)
    if not name:
        v.add(
            "channel",
            "PAYMENT_CHANNEL_PAYMENT_COUNTER, PAYMENT_CHANNEL_ONLINE_BANKING, "
            "PAYMENT_CHANNEL_ATM or PAYMENT_CHANNEL_THIRD_PARTY is required",
            "REQUIRED",
        )
        return None
    return PaymentChannel(name)


def _tier(value: int, v: Violations) -> Tier | None:
    name = enum_name(pb.AccountTier, value)
    if not name:
        v.add(
            "tier",
            "ACCOUNT_TIER_TIER_I, ACCOUNT_TIER_TIER_II or ACCOUNT_TIER_TIER_III is required",
            "REQUIRED",
        )
        return None
    return Tier(name.removeprefix("TIER_"))


def _reason(value: int, v: Violations) -> NonCounterReason | None:
    name = enum_name(pb.NonCounterReason, value)
    if not name:
        known = ", ".join(name for name, number in pb.NonCounterReason.items() if number)
        v.add("reason", f"one of {known} is required", "REQUIRED")
        return None
    return NonCounterReason(name)


def _page(size: int, token: str, v: Violations) -> tuple[int, int | None]:
    if size < 0 or size > MAX_PAGE:
        v.add("page_size", f"0 to {MAX_PAGE}")
    before: int | None = None
    if token:
        if not token.isdigit() or len(token) > 19:
            v.add("page_token", "not a token this service gave out")
        else:
            before = int(token)
    return size or DEFAULT_PAGE, before


# --- encoding ----------------------------------------------------------------------------------


def entry_pb(entry: Entry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        entry_id=entry.entry_id,
        account_id=entry.account_id,
        card_id=entry.card_id,
        amount_fen=entry.amount_fen,
        balance_after_fen=entry.balance_after_fen,
        source=enum_value(pb.EntrySource, entry.source.value),
        reference=entry.reference,
        counterparty=entry.counterparty,
        booked_at=to_timestamp(entry.booked_at),
        channel=enum_value(pb.PaymentChannel, entry.channel.value if entry.channel else ""),
        transfer_id=entry.transfer_id,
    )


def _limits_pb(limits: Limits) -> pb.TierLimits:
    return pb.TierLimits(
        single_non_counter_fen=limits.single_fen or 0,
        daily_non_counter_fen=limits.daily_fen or 0,
        balance_cap_fen=limits.balance_cap_fen or 0,
    )


def alert_pb(alert: Alert) -> pb.Alert:
    return pb.Alert(
        alert_id=alert.alert_id,
        account_id=alert.account_id,
        card_id=alert.card_id,
        rule=alert.rule,
        summary=alert.summary,
        entry_ids=list(alert.entry_ids),
        freeze=alert.freeze,
        status=enum_value(pb.AlertStatus, alert.status.value),
        assignee=alert.assignee,
        resolution=alert.resolution,
        raised_at=to_timestamp(alert.raised_at),
        assigned_at=to_timestamp(alert.assigned_at),
        resolved_at=to_timestamp(alert.resolved_at),
        resolved_by=alert.resolved_by,
    )


# --- the servicer ------------------------------------------------------------------------------


class LedgerApi(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(
        self,
        db: Database,
        cipher: PiiCipher,
        keys: IdempotencyStore,
        config: ledger.LedgerConfig,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._config = config
        self._once: Idempotent[BankUnitOfWork] = Idempotent(keys, self._uow)

    def _uow(self, readonly: bool = False) -> BankUnitOfWork:
        return BankUnitOfWork(self._db, self._cipher, readonly)

    def _balance_pb(self, standing: ledger.Standing) -> pb.AccountBalance:
        ledger_row = standing.ledger
        since = ledger_row.non_counter_since
        return pb.AccountBalance(
            account_id=standing.account.account_id,
            card_id=standing.account.card_id,
            balance_fen=ledger_row.balance_fen,
            tier=enum_value(pb.AccountTier, f"TIER_{ledger_row.tier.value}"),
            limits=_limits_pb(self._config.tiers.of(ledger_row.tier)),
            non_counter_today_fen=standing.non_counter_today_fen,
            non_counter_suspensions=sorted(
                enum_value(pb.NonCounterReason, r.value) for r in ledger_row.non_counter
            ),
            non_counter_suspended_at=to_timestamp(since),
            closed=standing.account.closed_at is not None,
        )

    # -- money

    def Credit(self, request: pb.CreditRequest, context: grpc.ServicerContext) -> pb.LedgerEntry:
        caller = current_caller()
        counter = _counter_or_service(caller)
        v = Violations()
        required_id(request.card_id, "card_id", v)
        _amount(request.amount_fen, v)
        _text(request.reference, "reference", v)
        _text(request.counterparty, "counterparty", v)
        if counter is None:  # a service of the suite
            allowed = {EntrySource.TRANSIT_REFUND, EntrySource.NON_COUNTER}
        elif counter.channel is Channel.BANK_BRANCH:
            allowed = {EntrySource.COUNTER}
        else:  # the bank's core system: online banking, ATM, third-party payments
            allowed = {EntrySource.NON_COUNTER}
        name = enum_name(pb.EntrySource, request.source)
        if not name or EntrySource(name) not in allowed:
            v.add(
                "source",
                "COUNTER at a counter; NON_COUNTER from the bank's core system; TRANSIT_REFUND "
                "or NON_COUNTER from a service",
                "REQUIRED",
            )
        v.raise_if_any()
        cmd = ledger.Credit(
            request.card_id,
            request.amount_fen,
            EntrySource(name),
            request.reference,
            request.counterparty,
        )
        by = _by(caller)

        def work(uow: BankUnitOfWork) -> pb.LedgerEntry:
            return entry_pb(ledger.credit(uow, self._config, cmd, counter, by))

        return self._once.call("Credit", request, pb.LedgerEntry, work)

    def Debit(self, request: pb.DebitRequest, context: grpc.ServicerContext) -> pb.LedgerEntry:
        caller = current_caller()
        v = Violations()
        required_id(request.card_id, "card_id", v)
        _amount(request.amount_fen, v)
        channel = _payment_channel(request.channel, v)
        _text(request.reference, "reference", v)
        _text(request.counterparty, "counterparty", v)
        v.raise_if_any()
        if channel is None:
            raise RuntimeError("channel must be known here")
        counter = _payer(caller, channel)
        cmd = ledger.Debit(
            request.card_id, request.amount_fen, channel, request.reference, request.counterparty
        )
        by = _by(caller)

        def work(uow: BankUnitOfWork) -> pb.LedgerEntry:
            return entry_pb(ledger.debit(uow, self._config, cmd, counter, by))

        return self._once.call("Debit", request, pb.LedgerEntry, work)

    def Transfer(
        self, request: pb.TransferRequest, context: grpc.ServicerContext
    ) -> pb.TransferResponse:
        caller = current_caller()
        _counter_or_service(caller)
        v = Violations()
        required_id(request.from_card_id, "from_card_id", v)
        _amount(request.amount_fen, v)
        channel = _payment_channel(request.channel, v)
        to = request.WhichOneof("to")
        if to == "to_card_id":
            required_id(request.to_card_id, "to_card_id", v)
            if request.to_card_id == request.from_card_id:
                v.add("to_card_id", "a transfer goes to another account", "SAME_ACCOUNT")
        elif to == "external_counterparty":
            _text(request.external_counterparty, "external_counterparty", v, required=True)
        else:
            v.add("to", "to_card_id or external_counterparty is required", "REQUIRED")
        _text(request.reference, "reference", v)
        v.raise_if_any()
        if channel is None:
            raise RuntimeError("channel must be known here")
        counter = _payer(caller, channel)
        cmd = ledger.Transfer(
            request.from_card_id,
            request.amount_fen,
            channel,
            request.to_card_id,
            request.external_counterparty,
            request.reference,
        )
        by = _by(caller)

        def work(uow: BankUnitOfWork) -> pb.TransferResponse:
            transfer_id, out, into = ledger.transfer(uow, self._config, cmd, counter, by)
            return pb.TransferResponse(
                transfer_id=transfer_id,
                debit=entry_pb(out),
                credit=entry_pb(into) if into else None,
            )

        return self._once.call("Transfer", request, pb.TransferResponse, work)

    # -- reading

    def GetBalance(
        self, request: pb.GetBalanceRequest, context: grpc.ServicerContext
    ) -> pb.AccountBalance:
        counter = _reader(current_caller())
        v = Violations()
        required_id(request.card_id, "card_id", v)
        v.raise_if_any()
        with self._uow(readonly=True) as uow:
            standing = ledger.get_balance(uow, self._config, request.card_id, counter)
        return self._balance_pb(standing)

    def ListEntries(
        self, request: pb.ListEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListEntriesResponse:
        counter = _reader(current_caller())
        v = Violations()
        required_id(request.card_id, "card_id", v)
        size, before = _page(request.page_size, request.page_token, v)
        v.raise_if_any()
        with self._uow(readonly=True) as uow:
            entries, last = ledger.list_entries(uow, request.card_id, before, size, counter)
        return pb.ListEntriesResponse(
            entries=[entry_pb(e) for e in entries], next_page_token=str(last) if last else ""
        )

    # -- standing

    def SetAccountTier(
        self, request: pb.SetAccountTierRequest, context: grpc.ServicerContext
    ) -> pb.AccountBalance:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        tier = _tier(request.tier, v)
        v.raise_if_any(rule="A4.5")
        if tier is None:
            raise RuntimeError("tier must be known here")

        def work(uow: BankUnitOfWork) -> pb.AccountBalance:
            return self._balance_pb(ledger.set_tier(uow, self._config, request.card_id, tier))

        return self._once.call("SetAccountTier", request, pb.AccountBalance, work)

    def _suspension(self, request: Any) -> NonCounterReason:
        v = Violations()
        required_id(request.card_id, "card_id", v)
        reason = _reason(request.reason, v)
        v.raise_if_any(rule="A19.2")
        if reason is None:
            raise RuntimeError("reason must be known here")
        return reason

    def SuspendNonCounter(
        self, request: pb.SuspendNonCounterRequest, context: grpc.ServicerContext
    ) -> pb.AccountBalance:
        reason = self._suspension(request)

        def work(uow: BankUnitOfWork) -> pb.AccountBalance:
            standing = ledger.suspend_non_counter(uow, self._config, request.card_id, reason)
            return self._balance_pb(standing)

        return self._once.call("SuspendNonCounter", request, pb.AccountBalance, work)

    def ResumeNonCounter(
        self, request: pb.ResumeNonCounterRequest, context: grpc.ServicerContext
    ) -> pb.AccountBalance:
        reason = self._suspension(request)

        def work(uow: BankUnitOfWork) -> pb.AccountBalance:
            standing = ledger.resume_non_counter(uow, self._config, request.card_id, reason)
            return self._balance_pb(standing)

        return self._once.call("ResumeNonCounter", request, pb.AccountBalance, work)

    def CloseFinancial(
        self, request: pb.CloseFinancialRequest, context: grpc.ServicerContext
    ) -> pb.CloseFinancialResponse:
        caller = current_caller()
        counter = _counter_or_service(caller)
        v = Violations()
        required_id(request.card_id, "card_id", v)
        _text(request.payout_destination, "payout_destination", v, required=True)
        _text(request.reference, "reference", v)
        # At a counter the holder's document is required; the card service sends one when the
        # account is an older card's the holder named (A27.3), and it is checked the same way.
        presented = counter is not None or request.HasField("document")
        holder = presented_document(request.document, v) if presented else None
        agent = presented_agent(request, v)
        if agent is not None and counter is None:
            v.add("agent", "an agent acts only at a counter of the issuing bank")
        v.raise_if_any(rule="A19.1")
        by = _by(caller)

        def work(uow: BankUnitOfWork) -> pb.CloseFinancialResponse:
            closed = ledger.close_financial(
                uow,
                self._config,
                request.card_id,
                request.payout_destination,
                request.reference,
                counter,
                holder,
                by,
                agent,
            )
            return pb.CloseFinancialResponse(
                account=self._balance_pb(closed.standing),
                payout=entry_pb(closed.payout) if closed.payout else None,
                closed_at=to_timestamp(closed.closed_at),
            )

        return self._once.call("CloseFinancial", request, pb.CloseFinancialResponse, work)

    # -- alerts (A4.5)

    def ListAlerts(
        self, request: pb.ListAlertsRequest, context: grpc.ServicerContext
    ) -> pb.ListAlertsResponse:
        v = Violations()
        status_name = enum_name(pb.AlertStatus, request.status)
        if request.status and not status_name:
            v.add("status", "a known alert status")
        if len(request.account_id) > MAX_ID:
            v.add("account_id", f"at most {MAX_ID} characters")
        if len(request.rule) > MAX_ID:
            v.add("rule", f"at most {MAX_ID} characters")
        size, before = _page(request.page_size, request.page_token, v)
        v.raise_if_any()
        status = AlertStatus(status_name) if status_name else None
        with self._uow(readonly=True) as uow:
            alerts, last = ledger.list_alerts(
                uow, status, request.account_id, request.rule, before, size
            )
        return pb.ListAlertsResponse(
            alerts=[alert_pb(a) for a in alerts], next_page_token=str(last) if last else ""
        )

    def AssignAlert(
        self, request: pb.AssignAlertRequest, context: grpc.ServicerContext
    ) -> pb.Alert:
        v = Violations()
        required_id(request.alert_id, "alert_id", v)
        if not request.assignee.strip() or len(request.assignee) > 200:
            v.add("assignee", "who works on the alert, 1 to 200 characters", "REQUIRED")
        v.raise_if_any(rule="A4.5")

        def work(uow: BankUnitOfWork) -> pb.Alert:
            return alert_pb(
                ledger.assign_alert(uow, self._config, request.alert_id, request.assignee.strip())
            )

        return self._once.call("AssignAlert", request, pb.Alert, work)

    def ResolveAlert(
        self, request: pb.ResolveAlertRequest, context: grpc.ServicerContext
    ) -> pb.Alert:
        caller = current_caller()
        v = Violations()
        required_id(request.alert_id, "alert_id", v)
        if not request.resolution.strip() or len(request.resolution) > MAX_NOTE:
            v.add("resolution", f"a note of 1 to {MAX_NOTE} characters", "REQUIRED")
        v.raise_if_any(rule="A4.5")
        by = _by(caller)

        def work(uow: BankUnitOfWork) -> pb.Alert:
            return alert_pb(
                ledger.resolve_alert(
                    uow, self._config, request.alert_id, request.resolution.strip(), by
                )
            )

        return self._once.call("ResolveAlert", request, pb.Alert, work)
