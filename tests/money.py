"""Money as the holder and the suite's books see it, read over gRPC: bank accounts through the
ledger's read API, transit wallets through the transit service's."""

from __future__ import annotations

from typing import Any

from sscard.bank.v1 import ledger_pb2, ledger_pb2_grpc
from tests.cardsuite import Suite

YUAN = 100


def ledger(suite: Suite) -> ledger_pb2_grpc.LedgerServiceStub:
    return ledger_pb2_grpc.LedgerServiceStub(suite.bank_server.channel)


def pay_in(suite: Suite, card_id: str, amount_fen: int, payer: str = "pension-fund") -> None:
    """Money from outside the suite into the card's account (a pension, a subsidy)."""
    ledger(suite).Credit(
        ledger_pb2.CreditRequest(
            request_id=suite.rid("credit"),
            card_id=card_id,
            amount_fen=amount_fen,
            source=ledger_pb2.NON_COUNTER,
            reference=suite.rid("payment"),
            counterparty=payer,
        ),
        metadata=suite.service,
    )


def account_balance(suite: Suite, card_id: str) -> Any:
    return ledger(suite).GetBalance(
        ledger_pb2.GetBalanceRequest(card_id=card_id), metadata=suite.ops
    )
