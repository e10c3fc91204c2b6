"""Money as the holder and the suite's books see it, read over gRPC: bank accounts through the
ledger's read API, transit wallets through the transit service's; and the conservation
invariant over them (``assert_conserved``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from sscard.bank.v1 import ledger_pb2, ledger_pb2_grpc
from sscard.transit.v1 import transit_pb2, transit_pb2_grpc
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
            source=ledger_pb2.ENTRY_SOURCE_NON_COUNTER,
            reference=suite.rid("payment"),
            counterparty=payer,
        ),
        metadata=suite.service,
    )


def account_balance(suite: Suite, card_id: str) -> Any:
    return ledger(suite).GetBalance(
        ledger_pb2.GetBalanceRequest(card_id=card_id), metadata=suite.ops
    )


@dataclass
class Books:
    """Every fen of a set of cards, from the bank ledger and the transit wallets."""

    outside_in: int = 0  # paid in from outside the suite: deposits, pensions, top-ups
    outside_out: int = 0  # paid out of the suite: payments, payouts to accounts elsewhere
    balances: int = 0  # held in bank accounts and wallets
    wallets_to_bank: int = 0  # left wallets for a bank account (refunds and moves)
    bank_from_wallets: int = 0  # arrived in a bank account from a wallet
    card_to_card: int = 0  # closing payouts between two accounts of the suite, net
    stranded: list[str] = field(default_factory=list)  # closed, yet holding money
    unbalanced: list[str] = field(default_factory=list)  # entries do not sum to the balance


def _pages(call: Callable[[Any], Any], request: Any, items: str) -> list[Any]:
    found: list[Any] = []
    while True:
        answer = call(request)
        found += list(getattr(answer, items))
        if not answer.next_page_token:
            return found
        request.page_token = answer.next_page_token


def _found(read: Callable[[], Any]) -> Any:
    """What ``read`` answers, or None for NOT_FOUND."""
    try:
        return read()
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return None


def books(suite: Suite, card_ids: Iterable[str]) -> Books:
    """Read the books of ``card_ids`` (cards, or accounts kept under a card id); an account a
    reissued card carries over from the lost one is read once."""
    seen = Books()
    accounts: set[str] = set()
    transit = transit_pb2_grpc.TransitServiceStub(suite.transit_server.channel)
    for card_id in card_ids:
        account = _found(lambda c=card_id: account_balance(suite, c))
        if account is not None and account.account_id not in accounts:
            accounts.add(account.account_id)
            entries = _pages(
                lambda r: ledger(suite).ListEntries(r, metadata=suite.ops),
                ledger_pb2.ListEntriesRequest(card_id=card_id),
                "entries",
            )
            if sum(e.amount_fen for e in entries) != account.balance_fen:
                seen.unbalanced.append(f"account of {card_id}")
            if account.closed and account.balance_fen:
                seen.stranded.append(f"account of {card_id}")
            seen.balances += account.balance_fen
            for e in entries:
                between_cards = (
                    e.source == ledger_pb2.ENTRY_SOURCE_CLOSING_PAYOUT
                    and e.counterparty.startswith("card:")
                )
                if between_cards:
                    seen.card_to_card += e.amount_fen
                elif e.source == ledger_pb2.ENTRY_SOURCE_TRANSIT_REFUND:
                    seen.bank_from_wallets += e.amount_fen
                elif e.amount_fen > 0:
                    seen.outside_in += e.amount_fen
                else:
                    seen.outside_out -= e.amount_fen
        wallet = _found(
            lambda c=card_id: transit.GetBalance(
                transit_pb2.GetBalanceRequest(card_id=c), metadata=suite.ops
            )
        )
        if wallet is None:
            continue
        moves = _pages(
            lambda r: transit.ListTransactions(r, metadata=suite.ops),
            transit_pb2.ListTransactionsRequest(card_id=card_id),
            "entries",
        )
        if sum(m.amount_fen for m in moves) != wallet.balance_fen:
            seen.unbalanced.append(f"wallet of {card_id}")
        if wallet.status == transit_pb2.WALLET_STATUS_CLOSED and wallet.balance_fen:
            seen.stranded.append(f"wallet of {card_id}")
        seen.balances += wallet.balance_fen
        for m in moves:
            if m.kind == transit_pb2.ENTRY_KIND_TOP_UP:
                seen.outside_in += m.amount_fen
            else:  # refunds and moves to a bank account, and refunds put back
                seen.wallets_to_bank -= m.amount_fen
    return seen


def assert_conserved(suite: Suite, card_ids: Iterable[str]) -> Books:
    """Money in = money out + balances, across the bank ledger and the transit wallets; every
    fen that left a wallet arrived in an account; payouts between accounts net to nothing; no
    closed account or wallet holds money; every balance is the sum of its entries."""
    seen = books(suite, card_ids)
    assert seen.unbalanced == [], seen
    assert seen.stranded == [], seen
    assert seen.wallets_to_bank == seen.bank_from_wallets, seen
    assert seen.card_to_card == 0, seen
    assert seen.outside_in == seen.outside_out + seen.balances, seen
    return seen
