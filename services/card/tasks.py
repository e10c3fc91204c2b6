"""Starting the card service's follow-up work with the bank: a saga record written in the
caller's transaction, run by the orchestrator after the commit (``flows.bank_task_saga``)."""

from __future__ import annotations

from services.card.saga import new_saga_id, wall_clock
from services.card.store import CardUnitOfWork, SagaRecord

BANK_TASK = "bank_task"


def start_bank_task(uow: CardUnitOfWork, card_id: str, **data: str) -> None:
    """Start a bank task saga for ``card_id``; the orchestrator runs it after this commit."""
    uow.sagas.add_many(
        [
            SagaRecord(
                saga_id=new_saga_id(),
                kind=BANK_TASK,
                card_id=card_id,
                batch_id="",
                state="RUNNING",
                step=0,
                data=dict(data),
            )
        ],
        wall_clock(),
    )
