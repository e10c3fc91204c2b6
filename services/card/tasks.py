"""Starting the card service's follow-up work with the bank or identity: a saga record written in
the caller's transaction, run by the orchestrator after the commit (``flows.bank_task_saga``,
``flows.release_place_saga``)."""

from __future__ import annotations

from typing import Any

from services.card.saga import request_id
from services.card.store import CardUnitOfWork, SagaRecord, new_saga_id, wall_clock

BANK_TASK = "bank_task"
RELEASE_PLACE = "release_place"


def start_bank_task(uow: CardUnitOfWork, card_id: str, **data: str) -> str:
    """Start a bank task saga for ``card_id``; the orchestrator runs it after this commit.
    Returns the idempotency key of its one call to the bank: a caller that asks the bank at
    once with this key and the saga's own call are one request to the bank."""
    return request_id(start_saga(uow, BANK_TASK, card_id, data), 0)


def start_release_place(uow: CardUnitOfWork, card_id: str) -> None:
    """The card ended without its holder keeping it: identity frees the person's place (A4.2)
    so that the person may apply again."""
    start_saga(uow, RELEASE_PLACE, card_id, {})


def start_saga(uow: CardUnitOfWork, kind: str, card_id: str, data: dict[str, Any]) -> SagaRecord:
    """Start a saga of ``kind`` for ``card_id`` in this transaction; the orchestrator runs it
    after the commit."""
    saga = SagaRecord(
        saga_id=new_saga_id(),
        kind=kind,
        card_id=card_id,
        batch_id="",
        state="RUNNING",
        step=0,
        data=dict(data),
    )
    uow.sagas.add_many([saga], wall_clock())
    return saga
