"""The services as the console sees them: gRPC stubs called with the console's own credential.

Every call has a deadline. A refusal or an unreachable service comes back as a DomainError (the
services' own error type, reason and rule intact) that the pages show instead of a crash.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from services.platform.clients import open_channel
from services.platform.errors import DomainError, Kind
from services.platform.grpc_errors import from_rpc_error, is_retryable
from services.platform.tls import ClientTls
from services.platform.tokens import CredentialSource
from sscard.bank.v1 import ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.transit.v1 import transit_pb2, transit_pb2_grpc

M = TypeVar("M", bound=Message)

DEADLINE = 5.0
# How many items a page of the console reads at most from one list RPC.
SCAN_LIMIT = 2000


class Backend:
    """``credentials(operator)``: the console's credential acting for a staff operator ("" for
    reading, which no audit trail records); ``own``: its side of mutual TLS."""

    def __init__(
        self,
        targets: dict[str, str],
        credentials: Callable[[str], CredentialSource],
        own: ClientTls | None = None,
    ) -> None:
        self._credentials = credentials
        self._sources: dict[str, CredentialSource] = {}
        self._lock = threading.Lock()
        self._channels = {name: open_channel(target, own) for name, target in targets.items()}
        self.ops = card_pb2_grpc.OpsServiceStub(self._channels["card"])
        self.cards = card_pb2_grpc.CardServiceStub(self._channels["card"])
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self._channels["bank"])
        self.transit = transit_pb2_grpc.TransitServiceStub(self._channels["transit"])

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def _token(self, operator: str) -> str:
        with self._lock:
            source = self._sources.get(operator)
            if source is None:
                source = self._sources[operator] = self._credentials(operator)
        return source.token()

    def call(
        self, method: Callable[..., Any], request: Message, answer: type[M], operator: str = ""
    ) -> M:
        metadata = (("authorization", f"Bearer {self._token(operator)}"),)
        try:
            found: M = method(request, metadata=metadata, timeout=DEADLINE)
            return found
        except grpc.RpcError as exc:
            if is_retryable(exc):
                raise DomainError(
                    "DEPENDENCY_UNAVAILABLE",
                    "the service did not answer; try again",
                    kind=Kind.UNAVAILABLE,
                ) from exc
            raise from_rpc_error(exc) from exc

    def _pages(self, method: Callable[..., Any], request: Any, field: str) -> Iterator[Any]:
        seen = 0
        while True:
            page: Any = self.call(method, request, Message)
            for item in getattr(page, field):
                yield item
                seen += 1
            if not page.next_page_token or seen >= SCAN_LIMIT:
                return
            request.page_token = page.next_page_token

    # -- card service

    def sagas(self, state: int = 0, kind: str = "", card_id: str = "") -> list[card_pb2.Saga]:
        request = card_pb2.ListSagasRequest(
            state=state,  # type: ignore[arg-type]
            kind=kind,
            card_id=card_id,
            page_size=500,
        )
        return list(self._pages(self.ops.ListSagas, request, "sagas"))

    def saga(self, saga_id: str) -> card_pb2.Saga:
        return self.call(self.ops.GetSaga, card_pb2.GetSagaRequest(saga_id=saga_id), card_pb2.Saga)

    def retry_saga(self, request_id: str, saga_id: str, operator: str) -> card_pb2.Saga:
        request = card_pb2.RetrySagaRequest(request_id=request_id, saga_id=saga_id)
        return self.call(self.ops.RetrySaga, request, card_pb2.Saga, operator)

    def compensate_saga(self, request_id: str, saga_id: str, operator: str) -> card_pb2.Saga:
        request = card_pb2.CompensateSagaRequest(request_id=request_id, saga_id=saga_id)
        return self.call(self.ops.CompensateSaga, request, card_pb2.Saga, operator)

    def deadlines(
        self, state: int = 0, rule: str = "", overdue_only: bool = False
    ) -> Iterator[card_pb2.Deadline]:
        request = card_pb2.ListDeadlinesRequest(
            state=state,  # type: ignore[arg-type]
            rule=rule,
            overdue_only=overdue_only,
            page_size=500,
        )
        return self._pages(self.ops.ListDeadlines, request, "deadlines")

    def due_before(self, until: dt.datetime) -> list[card_pb2.Deadline]:
        """Pending deadlines due before ``until``, overdue ones included (by due time)."""
        found = []
        for deadline in self.deadlines(state=card_pb2.DEADLINE_STATE_PENDING):
            if deadline.due_at.ToDatetime(dt.UTC) >= until:
                break
            found.append(deadline)
        return found

    def card(self, card_id: str) -> card_pb2.Card:
        request = card_pb2.GetCardRequest(card_id=card_id, include_history=True)
        return self.call(self.cards.GetCard, request, card_pb2.Card)

    # -- bank

    def alerts(self, status: int = 0) -> list[ledger_pb2.Alert]:
        request = ledger_pb2.ListAlertsRequest(status=status, page_size=200)  # type: ignore[arg-type]
        return list(self._pages(self.ledger.ListAlerts, request, "alerts"))

    def assign_alert(self, request_id: str, alert_id: str, assignee: str) -> ledger_pb2.Alert:
        request = ledger_pb2.AssignAlertRequest(
            request_id=request_id, alert_id=alert_id, assignee=assignee
        )
        return self.call(self.ledger.AssignAlert, request, ledger_pb2.Alert, assignee)

    def resolve_alert(
        self, request_id: str, alert_id: str, note: str, operator: str
    ) -> ledger_pb2.Alert:
        request = ledger_pb2.ResolveAlertRequest(
            request_id=request_id, alert_id=alert_id, resolution=note
        )
        return self.call(self.ledger.ResolveAlert, request, ledger_pb2.Alert, operator)

    def account(self, card_id: str) -> ledger_pb2.AccountBalance:
        return self.call(
            self.ledger.GetBalance,
            ledger_pb2.GetBalanceRequest(card_id=card_id),
            ledger_pb2.AccountBalance,
        )

    def ledger_entries(self, card_id: str) -> list[ledger_pb2.LedgerEntry]:
        request = ledger_pb2.ListEntriesRequest(card_id=card_id, page_size=50)
        return list(
            self.call(self.ledger.ListEntries, request, ledger_pb2.ListEntriesResponse).entries
        )

    # -- transit

    def refunds(self, state: int = 0) -> list[transit_pb2.BalanceRefund]:
        request = transit_pb2.ListRefundsRequest(state=state, page_size=200)  # type: ignore[arg-type]
        return list(self._pages(self.transit.ListRefunds, request, "refunds"))

    def wallet(self, card_id: str) -> transit_pb2.Wallet:
        return self.call(
            self.transit.GetBalance,
            transit_pb2.GetBalanceRequest(card_id=card_id),
            transit_pb2.Wallet,
        )

    def wallet_entries(self, card_id: str) -> list[transit_pb2.Entry]:
        request = transit_pb2.ListTransactionsRequest(card_id=card_id, page_size=50)
        return list(
            self.call(
                self.transit.ListTransactions, request, transit_pb2.ListTransactionsResponse
            ).entries
        )
