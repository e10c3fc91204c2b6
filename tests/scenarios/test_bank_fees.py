"""A23.1: application, reissue, replacement and mailing are free. No message of the suite's
contract has a field for a fee, and a card's whole life through application, production,
mailing, activation and replacement leaves its bank account without a single ledger entry."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.descriptor import Descriptor, FileDescriptor

import sscard
from services.platform.auth import Channel
from sscard.bank.v1 import ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2 as pb
from tests.cardsuite import Suite
from tests.scenarios.test_card_replacement import hand_over, replace

FEE_LIKE = re.compile(r"fee|charge|cost|price|tariff", re.IGNORECASE)


def contract_files() -> list[FileDescriptor]:
    files = []
    for module in pkgutil.walk_packages(sscard.__path__, "sscard."):
        if module.name.endswith("_pb2"):
            files.append(importlib.import_module(module.name).DESCRIPTOR)
    return files


def messages(found: Any) -> Iterator[Descriptor]:
    for message in found:
        yield message
        yield from messages(message.nested_types)


def test_A23_1_no_message_of_the_contract_has_a_fee_field() -> None:
    """A23.1: every field, message, enum value and method of every sscard.* descriptor."""
    files = contract_files()
    packages = {f.package for f in files}
    assert {"sscard.bank.v1", "sscard.card.v1", "sscard.transit.v1"} <= packages
    names: list[str] = []
    for file in files:
        for message in messages(file.message_types_by_name.values()):
            names.append(message.full_name)
            names.extend(f"{message.full_name}.{field.name}" for field in message.fields)
            for enum in message.enum_types:
                names.extend(f"{enum.full_name}.{v.name}" for v in enum.values)
        for enum in file.enum_types_by_name.values():
            names.extend(f"{enum.full_name}.{v.name}" for v in enum.values)
        for service in file.services_by_name.values():
            names.extend(f"{service.full_name}.{m.name}" for m in service.methods)
    assert len(names) > 500
    assert [n for n in names if FEE_LIKE.search(n.rsplit(".", 1)[-1])] == []


def test_A23_1_application_mailing_and_replacement_charge_nothing(
    start_service: Callable[..., Any], token: Callable[..., Any]
) -> None:
    """A23.1: a first card applied for online and mailed, then replaced at an instant branch;
    neither card's account holds any entry."""
    running: dict[str, Any] = {}

    def start(name: str, build: Callable[..., Any], **kwargs: Any) -> Any:
        running[name] = start_service(name, build, **kwargs)
        return running[name]

    suite = Suite(start, token)
    ledger = ledger_pb2_grpc.LedgerServiceStub(running["bank"].channel)

    person = suite.person()
    started = suite.apply(person, delivery=pb.DELIVERY_MAIL)
    assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED
    suite.produce(started.card_id)
    for method in (pb.COLLECTION_METHOD_MAIL_SENT, pb.COLLECTION_METHOD_MAIL_DELIVERED):
        suite.card.RecordCollection(
            pb.RecordCollectionRequest(
                request_id=suite.rid("post"), card_id=started.card_id, method=method
            ),
            metadata=suite.factory,  # the factory reports the card posted and delivered
        )
    suite.activate(started.card_id, person)
    online = suite.at(Channel.ONLINE, person)
    replaced = replace(
        suite, started.card_id, person, pb.REPLACEMENT_REASON_DAMAGED_FACE, metadata=online
    )
    assert suite.settle(replaced.card_id).state == pb.SAGA_STATE_COMPLETED
    hand_over(suite, replaced.card_id, person, old_card_id=started.card_id)
    assert suite.get(replaced.card_id).status == pb.CARD_STATUS_ACTIVE

    for card_id in (started.card_id, replaced.card_id):
        entries = ledger.ListEntries(
            ledger_pb2.ListEntriesRequest(card_id=card_id), metadata=suite.ops
        )
        assert list(entries.entries) == []  # nothing was ever charged
        balance = ledger.GetBalance(
            ledger_pb2.GetBalanceRequest(card_id=card_id), metadata=suite.ops
        )
        assert balance.balance_fen == 0
