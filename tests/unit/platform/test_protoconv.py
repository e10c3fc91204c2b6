"""The contract's enum values carry their type's prefix (CARD_STATUS_ACTIVE) while the domain,
the databases, saga payloads and the console keep the short names (ACTIVE): protoconv is the
one place that converts, and every domain enum sent or read over gRPC must survive it."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from services.bank.domain import account, home_service, ledger, production, recall, tiers
from services.card.domain import card
from services.identity.domain import person
from services.platform import auth, documents
from services.platform.protoconv import enum_name, enum_value
from services.transit.domain import wallet
from sscard.bank.v1 import bank_pb2, counter_pb2, ledger_pb2
from sscard.card.v1 import card_pb2
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2
from sscard.transit.v1 import transit_pb2

PAIRS = [
    (auth.Channel, common_pb2.Channel),
    (documents.DocumentType, common_pb2.DocumentType),
    (documents.Sex, common_pb2.Sex),
    (person.Preferential, identity_pb2.PreferentialTreatment),
    (person.Source, identity_pb2.RecordSource),
    (person.Basis, identity_pb2.EligibilityBasis),
    (person.IssuanceKind, identity_pb2.IssuanceKind),
    (person.Outcome, identity_pb2.ImportOutcome),
    (person.EventType, identity_pb2.PersonEventType),
    (card.Status, card_pb2.CardStatus),
    (card.ReplacementReason, card_pb2.ReplacementReason),
    (card.Delivery, card_pb2.Delivery),
    (card.CollectionMethod, card_pb2.CollectionMethod),
    (recall.RecallReason, bank_pb2.RecallReason),
    (account.AccountStatus, bank_pb2.AccountStatus),
    (account.LossKind, bank_pb2.LossKind),
    (production.ProductionKind, bank_pb2.ProductionKind),
    (production.Delivery, bank_pb2.Delivery),
    (production.OrderStatus, bank_pb2.OrderStatus),
    (ledger.EntrySource, ledger_pb2.EntrySource),
    (ledger.PaymentChannel, ledger_pb2.PaymentChannel),
    (ledger.NonCounterReason, ledger_pb2.NonCounterReason),
    (ledger.AlertStatus, ledger_pb2.AlertStatus),
    (home_service.Business, counter_pb2.HomeBusiness),
    (home_service.Slot, counter_pb2.HomeSlot),
    (home_service.Status, counter_pb2.HomeServiceStatus),
    (wallet.EntryKind, transit_pb2.EntryKind),
    (wallet.WalletStatus, transit_pb2.WalletStatus),
    (wallet.RefundReason, transit_pb2.RefundReason),
    (wallet.RefundState, transit_pb2.RefundState),
]


@pytest.mark.parametrize(("domain", "proto"), PAIRS, ids=lambda e: getattr(e, "__name__", ""))
def test_every_domain_name_goes_to_the_contract_and_back(
    domain: type[enum.Enum], proto: Any
) -> None:
    for member in domain:
        value = enum_value(proto, member.value)
        assert value != 0
        assert proto.Name(value).endswith("_" + member.value)
        assert enum_name(proto, value) == member.value


def test_names_lose_exactly_their_type_s_prefix() -> None:
    assert card_pb2.CardStatus.Name(card_pb2.CARD_STATUS_ACTIVE) == "CARD_STATUS_ACTIVE"
    assert enum_name(card_pb2.CardStatus, card_pb2.CARD_STATUS_ACTIVE) == "ACTIVE"
    assert enum_name(ledger_pb2.AlertStatus, ledger_pb2.ALERT_STATUS_ALERT_OPEN) == "ALERT_OPEN"
    assert enum_value(common_pb2.Channel, "BANK_BRANCH") == common_pb2.CHANNEL_BANK_BRANCH
    assert enum_value(card_pb2.CardStatus, "") == card_pb2.CARD_STATUS_UNSPECIFIED


def test_the_unspecified_or_an_unknown_number_has_no_name() -> None:
    assert enum_name(card_pb2.CardStatus, card_pb2.CARD_STATUS_UNSPECIFIED) == ""
    assert enum_name(card_pb2.CardStatus, 999) == ""


def test_a_name_the_contract_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError):
        enum_value(card_pb2.CardStatus, "CARD_STATUS_ACTIVE")


def test_account_tiers_are_named_tier_and_their_numeral() -> None:
    for tier in tiers.Tier:
        value = enum_value(ledger_pb2.AccountTier, f"TIER_{tier.value}")
        assert enum_name(ledger_pb2.AccountTier, value) == f"TIER_{tier.value}"
