"""Card use cases: one function per operation, each run inside the unit of work it is given.

Every operation first asks the channel matrix (A3.1). Operations that span services only write
the card and its saga here; the orchestrator runs the saga once the transaction commits.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from services.card.clients import card_account, older_card_account
from services.card.deadlines import (
    EMPLOYER_HANDOUT,
    NON_COUNTER_SUSPENSION,
    PRODUCTION_OVERDUE,
    TEMPORARY_LOSS_EXPIRY,
    watch_bank_change_lock,
    watch_handout,
    watch_non_counter,
    watch_not_handed_out,
    watch_temporary_loss,
)
from services.card.domain import card as rules
from services.card.domain.agents import AgentPresence, check_agent
from services.card.domain.application import (
    HOLDS_PLACE,
    Applicant,
    OlderCardChoice,
    already_has_card,
    application_refusal,
    check_address,
    check_applicant,
    check_bank,
    check_delivery,
    check_employer,
    check_in_force,
    check_mobile,
    check_occupation,
    check_older_card,
)
from services.card.domain.card import Card, CollectionMethod, Delivery, Status, Transition
from services.card.domain.password import PasswordState, after_check, set_password, wrong_password
from services.card.flows import (
    APPLICATION,
    CANCELLATION,
    PARK_PASS_MOVE,
    REPLACEMENT,
    RETIREMENT,
    TRANSIT_REFUND,
    application_data,
)
from services.card.store import (
    CardUnitOfWork,
    Contact,
    SagaRecord,
    SagaSummary,
    TimerRecord,
    new_saga_id,
    wall_clock,
)
from services.card.tasks import start_bank_task, start_release_place, start_saga
from services.platform import channels
from services.platform.auth import Caller, Channel, Role, bound_caller
from services.platform.channels import Operation
from services.platform.clock import Clock, beijing_date
from services.platform.errors import DomainError, FieldViolation, Kind, Violations, invalid

MAX_BATCH = 20_000


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def card_not_found() -> DomainError:
    return DomainError("CARD_NOT_FOUND", "no such card", kind=Kind.NOT_FOUND)


def _card(uow: CardUnitOfWork, card_id: str, for_update: bool = False) -> Card:
    """The card, as the caller of the current call may see it: a person's own credential
    reaches only that person's cards, and another's answers exactly as a card that does not
    exist (the one place this is decided for every card operation)."""
    card = uow.cards.get(card_id, for_update) if card_id else None
    if card is None or not visible_to(bound_caller(), card):
        raise card_not_found()
    return card


def visible_to(caller: Caller | None, card: Card) -> bool:
    """Whether ``caller`` may know of ``card``: a person only of their own, an employer only of
    its employees' cards from its own batches."""
    if caller is None:
        return True
    if caller.person_id:
        return card.person_id == caller.person_id
    if Role.EMPLOYER in caller.roles:
        return card.employer_id == caller.caller
    return True


def _may_read(caller: Caller, card: Card | None = None) -> None:
    """A18.1: status queries through the channels A3 allows; sscard systems and ops always."""
    if caller.has_any(Role.SERVICE, Role.OPS):
        return
    if caller.has_any(Role.EMPLOYER) and card is not None and card.employer_id == caller.caller:
        return
    channels.check(Operation.QUERY, caller)


# --- applications (A5.1, A6, A27.1, A29.1) ------------------------------------------------------


@dataclass(frozen=True)
class ApplicationCommand:
    applicant: Applicant
    bank_code: str
    delivery: Delivery | None
    pickup_branch_id: str
    older_card: OlderCardChoice | None = None  # A27.3: cancel the older card's financial function


@dataclass(frozen=True)
class Started:
    card: Card
    saga_id: str


def _document_of(applicant: Applicant) -> tuple[str, str]:
    """The applicant's document as the card records it."""
    return applicant.document_type, applicant.document_number.strip().upper()


def _start(
    applicant: Applicant,
    bank_code: str,
    delivery: Delivery,
    pickup_branch_id: str,
    caller: Caller,
    now: dt.datetime,
    employer_id: str = "",
    batch_id: str = "",
    older_card: OlderCardChoice | None = None,
) -> tuple[Card, Contact, Transition, SagaRecord]:
    card = Card(
        card_id=new_id("card"),
        status=Status.APPLIED,
        bank_code=bank_code,
        delivery=delivery,
        pickup_branch_id=pickup_branch_id,
        applied_at=now,
        holder_name=" ".join(applicant.name.split()),
        employer_id=employer_id,
        batch_id=batch_id,
        status_since=now,
        person_id=caller.person_id,  # a person's own application is theirs from the start
    )
    contact = Contact(
        *_document_of(applicant),
        applicant.mobile,
        applicant.address.strip(),
        applicant.occupation.strip(),
        applicant.photo,
    )
    transition = Transition(
        None,
        Status.APPLIED,
        now,
        caller.channel,
        caller.outlet_id,
        caller.operator_id,
        "A5.1",
        "employer collective application" if batch_id else "application received",
    )
    saga = SagaRecord(
        saga_id=new_saga_id(),
        kind=APPLICATION,
        card_id=card.card_id,
        batch_id=batch_id,
        state="RUNNING",
        step=0,
        data=application_data(
            doc_type=contact.document_type,
            doc_number=contact.document_number,
            name=card.holder_name,
            doc_valid_until=applicant.document_valid_until,
            bank_code=bank_code,
            delivery=delivery.value,
            pickup_branch_id=pickup_branch_id,
            applied_at=now,
            applied_at_branch_id=caller.outlet_id if caller.channel is Channel.BANK_BRANCH else "",
            applicant_person=caller.person_id,
            older_card=older_card,
        ),
    )
    return card, contact, transition, saga


def apply(
    uow: CardUnitOfWork,
    cmd: ApplicationCommand,
    caller: Caller,
    clock: Clock,
    agent: AgentPresence | None = None,
) -> Started:
    """A5.1: validate everything, record the application and start its saga."""
    channels.check(Operation.APPLY, caller)
    check_agent(Operation.APPLY, agent)
    now = clock.now()
    check_in_force(beijing_date(now))
    v = Violations()
    check_applicant(cmd.applicant, v, beijing_date(now))
    check_bank(cmd.bank_code, v)
    check_delivery(cmd.delivery, cmd.pickup_branch_id, v)
    if cmd.older_card is not None:
        check_older_card(cmd.older_card, v)
    refusal = application_refusal(v)
    if refusal is not None:
        raise refusal
    if uow.cards.holding([_document_of(cmd.applicant)], HOLDS_PLACE):
        raise already_has_card()
    if cmd.delivery is None:
        raise RuntimeError("cmd.delivery must be known here")
    pickup = cmd.pickup_branch_id if cmd.delivery is Delivery.BRANCH_PICKUP else ""
    card, contact, transition, saga = _start(
        cmd.applicant,
        cmd.bank_code,
        cmd.delivery,
        pickup,
        caller,
        now,
        older_card=cmd.older_card,
    )
    uow.cards.add_many([(card, contact, transition)], caller.channel, caller.outlet_id)
    uow.sagas.add_many([saga], wall_clock())
    return Started(card, saga.saga_id)


@dataclass(frozen=True)
class BatchCommand:
    batch_id: str
    employer_id: str
    employer_name: str
    bank_code: str
    pickup_branch_id: str
    applicants: Sequence[Applicant]


@dataclass(frozen=True)
class BatchItem:
    index: int
    started: Started | None = None
    refusal: DomainError | None = None


@dataclass
class BatchOutcome:
    items: list[BatchItem] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for i in self.items if i.started is not None)


def apply_batch(
    uow: CardUnitOfWork, cmd: BatchCommand, caller: Caller, clock: Clock
) -> BatchOutcome:
    """A6.1 / A6.2: each person checked on their own; a refused person never fails the batch."""
    channels.check(Operation.APPLY_BATCH, caller)
    if cmd.employer_id.strip() and cmd.employer_id.strip() != caller.caller:
        raise DomainError(
            "NOT_THE_EMPLOYER",
            "an employer files batches in its own name only",
            kind=Kind.PERMISSION,
            rule="A6.1",
        )
    now = clock.now()
    check_in_force(beijing_date(now))
    v = Violations()
    check_employer(cmd.employer_id, cmd.employer_name, v)
    check_bank(cmd.bank_code, v)
    if not cmd.pickup_branch_id:
        v.add("pickup_branch_id", "the branch where the employer collects is required", "REQUIRED")
    if not cmd.applicants:
        v.add("applicants", "the batch names no employee", "REQUIRED")
    elif len(cmd.applicants) > MAX_BATCH:
        v.add("applicants", f"at most {MAX_BATCH} employees per batch", "TOO_MANY")
    v.raise_if_any("INVALID_BATCH", rule="A6.1")
    outcome = BatchOutcome()
    refusals: dict[int, DomainError] = {}
    for index, applicant in enumerate(cmd.applicants):
        person = Violations()
        check_applicant(applicant, person, beijing_date(now), f"applicants[{index}]")
        if (refusal := application_refusal(person, f"applicants[{index}]")) is not None:
            refusals[index] = refusal
    held = uow.cards.holding(
        [_document_of(a) for i, a in enumerate(cmd.applicants) if i not in refusals], HOLDS_PLACE
    )
    rows, sagas = [], []
    for index, applicant in enumerate(cmd.applicants):
        if index not in refusals and _document_of(applicant) in held:
            refusals[index] = already_has_card()
        if index in refusals:
            outcome.items.append(BatchItem(index, refusal=refusals[index]))
            continue
        card, contact, transition, saga = _start(
            applicant,
            cmd.bank_code,
            Delivery.EMPLOYER,
            cmd.pickup_branch_id,
            caller,
            now,
            employer_id=cmd.employer_id,
            batch_id=cmd.batch_id,
        )
        rows.append((card, contact, transition))
        sagas.append(saga)
        outcome.items.append(BatchItem(index, Started(card, saga.saga_id)))
    uow.cards.add_batch(
        cmd.batch_id,
        cmd.employer_id,
        cmd.employer_name.strip(),
        len(cmd.applicants),
        len(cmd.applicants) - len(rows),
        now,
    )
    uow.cards.add_many(rows, caller.channel, caller.outlet_id)
    uow.sagas.add_many(sagas, wall_clock())
    return outcome


# --- reads (A18.1) ------------------------------------------------------------------------------


def get_card(uow: CardUnitOfWork, card_id: str, caller: Caller) -> Card:
    card = _card(uow, card_id)
    _may_read(caller, card)
    return card


def query_status(
    uow: CardUnitOfWork,
    card_id: str,
    doc_type: str,
    doc_number: str,
    caller: Caller,
    agent: AgentPresence | None = None,
) -> Card:
    _may_read(caller)
    check_agent(Operation.QUERY, agent)
    if card_id:
        return _card(uow, card_id)
    card = uow.cards.latest_for_document(doc_type, doc_number.strip().upper())
    if card is None or not visible_to(caller, card):
        raise card_not_found()
    return card


def status_version(uow: CardUnitOfWork, card: Card) -> tuple[rules.Status, int]:
    """The card's status now with its version, which grows with every status change: the
    transit service keeps the newest it has seen (``flows.transit_status_saga``)."""
    return uow.cards.status_version(card.card_id) or (card.status, 0)


def get_application(
    uow: CardUnitOfWork, card_id: str, saga_id: str, caller: Caller
) -> tuple[SagaRecord, Card]:
    saga = (
        uow.sagas.get(saga_id)
        if saga_id
        else uow.sagas.for_card(card_id, [APPLICATION, REPLACEMENT])
    )
    if saga is None:
        raise DomainError("APPLICATION_NOT_FOUND", "no such application", kind=Kind.NOT_FOUND)
    card = _card(uow, saga.card_id)
    _may_read(caller, card)
    return saga, card


# --- production, delivery, activation (A7, A8) --------------------------------------------------


def record_produced(
    uow: CardUnitOfWork, card_id: str, card_number: str, caller: Caller, clock: Clock
) -> Card:
    """A7.1: the bank made the card; the person or the employer is told."""
    card = _card(uow, card_id, for_update=True)
    change = rules.produced(card, card_number, caller, clock.now())
    if change.card is not card:
        uow.timers.cancel(PRODUCTION_OVERDUE, card_id, "made")
        watch_not_handed_out(uow, change.card, clock.now())
    uow.cards.record(change)
    return change.card


def _same_document(uow: CardUnitOfWork, card: Card, doc_type: str, number: str, rule: str) -> None:
    """The holder proves who they are with the document the card was issued on."""
    stored_type, stored_number = uow.cards.document_of(card.card_id)
    if (doc_type, number.strip().upper()) != (stored_type, stored_number):
        raise DomainError(
            "DOCUMENT_MISMATCH",
            "the document presented is not the card holder's",
            kind=Kind.PERMISSION,
            rule=rule,
            violations=(FieldViolation("document", "not the document the card was issued on"),),
        )


@dataclass(frozen=True)
class EmployerDocuments:
    """What an employer presents at the bank's counter (A7.3, A7.4)."""

    licence_number: str = ""
    legal_representative: bool = False
    authorisation_letter_ref: str = ""


def _employer_documents(card: Card, documents: EmployerDocuments, rule: str) -> None:
    """The applying employer's licence, and an authorisation letter unless the legal
    representative comes."""
    v = Violations()
    if documents.licence_number != card.employer_id:
        v.add("employer.licence_number", "must be the applying employer's credit code")
    if not documents.legal_representative and not documents.authorisation_letter_ref:
        v.add(
            "employer.authorisation_letter_ref",
            "an authorisation letter is needed unless the legal representative comes",
            "REQUIRED",
        )
    v.raise_if_any("EMPLOYER_DOCUMENTS_MISSING", rule=rule)


@dataclass(frozen=True)
class CollectionCommand:
    card_id: str
    method: CollectionMethod | None
    doc_type: str = ""
    doc_number: str = ""
    employer: EmployerDocuments = EmployerDocuments()
    agent: AgentPresence | None = None
    # A16.2 / A16.6: the old card the holder hands in to collect a replacement.
    old_card_id: str = ""
    # A16.4: the holder asks for the old card's park pass to move to this card on the spot.
    move_park_pass: bool = False


def _successor_kind(uow: CardUnitOfWork, card: Card) -> str:
    """ "REISSUE" or "REPLACEMENT" for a card that replaces another one, "" otherwise."""
    if not card.replaces_card_id:
        return ""
    application = uow.sagas.for_card(card.card_id, [REPLACEMENT])
    return str(application.data.get("kind", "REPLACEMENT")) if application else "REPLACEMENT"


def record_collection(
    uow: CardUnitOfWork, cmd: CollectionCommand, caller: Caller, clock: Clock
) -> Card:
    """A7.2 (branch or mail) and A7.3 (the employer, with its documents). The new card of a
    replacement is handed over only against the old card, which the bank takes back on the spot
    (A16.2, A16.6); the holder may have the old card's park pass moved to it (A16.4)."""
    if cmd.method is None:
        raise DomainError(
            "INVALID_REQUEST",
            "say how the card was collected",
            kind=Kind.INVALID,
            violations=(FieldViolation("method", "a collection method is required"),),
        )
    card = _card(uow, cmd.card_id, for_update=True)
    at_counter = cmd.method in (CollectionMethod.AT_BRANCH, CollectionMethod.BY_EMPLOYER)
    operation = Operation.RECORD_COLLECTION if at_counter else Operation.RECORD_MAILING
    channels.check(operation, caller, card.bank_code)
    check_agent(operation, cmd.agent)
    if cmd.method is CollectionMethod.AT_BRANCH:
        _same_document(uow, card, cmd.doc_type, cmd.doc_number, "A7.2")
    if cmd.method is CollectionMethod.BY_EMPLOYER:
        _employer_documents(card, cmd.employer, "A7.3")
    successor = _successor_kind(uow, card)
    if successor == "REPLACEMENT":
        rules.check_old_card_presented(card, cmd.old_card_id)
    if cmd.move_park_pass:
        rules.check_park_pass_move(card)
    change = rules.collect(card, cmd.method, caller, clock.now())
    if change.card is not card and change.card.status is Status.WITH_EMPLOYER:
        watch_handout(uow, change.card, clock.now())
    if change.card is not card and change.card.status is Status.COLLECTED:
        _refund_old_transit_balance(uow, change.card)
        if successor == "REPLACEMENT":
            start_bank_task(uow, card.replaces_card_id, action="recall", reason="REPLACED")
        if cmd.move_park_pass:
            start_saga(uow, PARK_PASS_MOVE, card.card_id, {"old_card_id": card.replaces_card_id})
    uow.cards.record(change)
    return change.card


def _refund_old_transit_balance(uow: CardUnitOfWork, card: Card) -> None:
    """A16.3: a reissued or replacing card is collected: the old card's transit balance is
    refunded by a saga started in this transaction (``flows.transit_refund_saga``)."""
    if not card.replaces_card_id:
        return
    start_saga(uow, TRANSIT_REFUND, card.card_id, {"old_card_id": card.replaces_card_id})


def record_employer_return(
    uow: CardUnitOfWork, card_id: str, documents: EmployerDocuments, caller: Caller, clock: Clock
) -> Card:
    """A7.4: the employer returns a card it did not hand out to a branch of the issuing bank,
    which takes it back (the bank's recall, reason RETURNED_BY_EMPLOYER); the holder collects
    it there with the ID document."""
    channels.check(Operation.RECORD_EMPLOYER_RETURN, caller)
    card = _card(uow, card_id, for_update=True)
    channels.check(Operation.RECORD_EMPLOYER_RETURN, caller, card.bank_code)
    _employer_documents(card, documents, "A7.4")
    change = rules.returned_by_employer(card, caller.outlet_id, caller, clock.now())
    uow.timers.cancel(EMPLOYER_HANDOUT, card_id, "returned to the bank")
    start_bank_task(uow, card_id, action="recall", reason="RETURNED_BY_EMPLOYER")
    uow.cards.record(change)
    return change.card


def record_handout(uow: CardUnitOfWork, card_id: str, caller: Caller, clock: Clock) -> Card:
    """A7.3: the employer gives the card to its employee."""
    channels.check(Operation.RECORD_HANDOUT, caller)
    card = _card(uow, card_id, for_update=True)
    change = rules.hand_out(card, caller.caller, caller, clock.now())
    if change.card is not card:
        uow.timers.cancel(EMPLOYER_HANDOUT, card_id, "handed out")
    uow.cards.record(change)
    return change.card


def activate(
    uow: CardUnitOfWork, card_id: str, presented: Presented, caller: Caller, clock: Clock
) -> Card:
    """A8.1: online, at a district outlet, or at the issuing bank, after collection; the holder
    or an agent (A24.1)."""
    channels.check(Operation.ACTIVATE, caller)
    card = _card(uow, card_id, for_update=True)
    channels.check(Operation.ACTIVATE, caller, card.bank_code)
    _holder(uow, card, presented, Operation.ACTIVATE, "A8.1")
    change = rules.activate(card, caller, clock.now())
    if change.card is not card:
        if card.replaces_card_id:
            _retire_predecessor(uow, card, caller, clock)
        application = uow.sagas.for_card(card.card_id, [APPLICATION])
        data = application.data if application is not None else {}
        legacy = int(data.get("legacy_generation", 0))
        older = data.get("older_card") if legacy else None
        if legacy:
            notice = rules.older_generation_notice(card, legacy, clock.now(), bool(older))
            change.notices.append(notice)
            _stop_older_generation(uow, card, data if older else None)
        elif data.get("older_card"):
            change.notices.append(rules.no_older_card_notice(clock.now()))
    uow.cards.record(change)
    return change.card


def _retire_predecessor(uow: CardUnitOfWork, card: Card, caller: Caller, clock: Clock) -> None:
    """A16.5: the old card stops for good; identity and the old bank are told by a saga."""
    old = _card(uow, card.replaces_card_id, for_update=True)
    uow.cards.record(rules.retire(old, caller, clock.now()))
    application = uow.sagas.for_card(card.card_id, [REPLACEMENT])
    data = application.data if application is not None else {}
    start_saga(
        uow,
        RETIREMENT,
        card.card_id,
        {
            "kind": data.get("kind", "REPLACEMENT"),
            "old_card_id": old.card_id,
            "bank_change": bool(data.get("bank_change")),
            "keep_old_account": bool(data.get("keep_old_account")),
            "old_account_id": old.account_id,
            # The holder's direction at replacement time, by default the new card's account:
            # the old account closes only with its balance paid there (A16.7, A20.1).
            "payout_destination": data.get("old_account_payout") or card_account(card.card_id),
        },
    )


def _stop_older_generation(
    uow: CardUnitOfWork, card: Card, application: dict[str, Any] | None
) -> None:
    """A27.3: the holder's 1st / 2nd generation card loses its SS function now; the identity
    register records it when the retirement saga confirms this card. The older card is not
    recalled; its financial function is cancelled only when the holder chose so when applying
    (``application``, the application saga's data): the retirement saga has its bank close the
    account, paid out as the holder directed, after checking it is the applicant's."""
    data: dict[str, Any] = {
        "kind": "FIRST",
        "old_card_id": "",
        "bank_change": False,
        "keep_old_account": False,
        "old_account_id": "",
    }
    if application is not None:
        older = application["older_card"]
        data["older_card"] = {
            "account": older_card_account(older["bank_code"], older["card_number"]),
            "bank_code": older["bank_code"],
            "payout_destination": older["payout_destination"] or card_account(card.card_id),
            "doc_type": application["doc_type"],
            "doc_number": application["doc_number"],
        }
    start_saga(uow, RETIREMENT, card.card_id, data)


def history(uow: CardUnitOfWork, card_id: str) -> tuple[list[Transition], list[rules.Notice]]:
    return uow.cards.history(card_id)


def get_batch(
    uow: CardUnitOfWork, batch_id: str, caller: Caller
) -> tuple[Any, dict[str, int], list[Any]]:
    """A6.1: an employer batch's progress, for the employer, its channels and operations."""
    batch = uow.cards.batch(batch_id) if batch_id else None
    if batch is None:
        raise DomainError("BATCH_NOT_FOUND", "no such batch", kind=Kind.NOT_FOUND)
    if caller.has_any(Role.EMPLOYER) and caller.caller != batch.employer_id:
        raise DomainError("BATCH_NOT_FOUND", "no such batch", kind=Kind.NOT_FOUND)
    if not caller.has_any(Role.EMPLOYER, Role.SERVICE, Role.OPS):
        channels.check(Operation.APPLY_BATCH, caller)
    return batch, uow.cards.batch_progress(batch_id), uow.cards.batch_refusals(batch_id)


# --- the card in use: loss, unlock, information, passwords (A12, A13, A14, A17, A24) ----------


@dataclass(frozen=True)
class Presented:
    """Who stands at the counter (or on the line) for the card, and with which documents."""

    doc_type: str
    doc_number: str
    agent: AgentPresence | None = None


def _holder(
    uow: CardUnitOfWork, card: Card, presented: Presented, operation: Operation, rule: str
) -> None:
    """A24 for agents, then the holder's document must be the card's."""
    check_agent(operation, presented.agent)
    if presented.agent is not None:
        _same_document(
            uow,
            card,
            presented.agent.principal_document_type,
            presented.agent.principal_document_number,
            "A24.2",
        )
        return
    _same_document(uow, card, presented.doc_type, presented.doc_number, rule)


def _bank_saga(uow: CardUnitOfWork, card: Card, action: str, loss: str = "") -> str:
    """The bank's half of a loss or unlock, run by the orchestrator after this commit; returns
    the idempotency key of its call to the bank."""
    return start_bank_task(uow, card.card_id, action=action, loss=loss)


@dataclass(frozen=True)
class Suspension:
    """The bank's suspension of the financial function for a loss (A13.2), asked for with the
    same idempotency key as the bank task saga that retries it."""

    request_id: str
    loss: str  # TEMPORARY_LOSS or FORMAL_LOSS


@dataclass(frozen=True)
class LossOutcome:
    card: Card
    starts_saga: bool
    suspension: Suspension | None = None


# How long a loss report waits for the bank's suspension before it answers "pending".
SUSPENSION_DEADLINE_SECONDS = 2.0


def suspend_financial_at_once(
    new_uow: Callable[[], CardUnitOfWork],
    suspend_for_loss: Callable[[str, str, str, float], None],
    card: Card,
    suspension: Suspension,
    clock: Clock,
) -> rules.Notice | None:
    """A13.2: a loss takes effect on the financial function before it is acknowledged. The bank
    is asked here, after the loss is recorded and before the answer; if it does not confirm in
    time, the bank task saga keeps asking, and the holder is told, in a notice returned and kept
    on the card, that payments may still go through until it does."""
    try:
        suspend_for_loss(
            suspension.request_id, card.card_id, suspension.loss, SUSPENSION_DEADLINE_SECONDS
        )
    except DomainError as exc:
        notice = rules.Notice(
            clock.now(),
            "person",
            f"The bank {card.bank_code} has not yet confirmed that the card's financial function "
            f"is suspended ({exc.reason}); it is being asked again until it does. Until then "
            f"payments with the card may still go through: call {card.bank_code} to stop them.",
            "A13.2",
        )
        with new_uow() as uow:
            now_card = _card(uow, card.card_id, for_update=True)
            uow.cards.record(rules.Change(now_card, notices=[notice]))
            uow.commit()
        return notice
    return None


# How long a change that stops top-ups waits for transit's confirmation before it answers.
TRANSIT_PUSH_DEADLINE_SECONDS = 2.0


def push_status_at_once(
    new_uow: Callable[[], CardUnitOfWork],
    record_card_status: Callable[[str, str, str, str, int, float], None],
    pushes: Sequence[SagaRecord],
    clock: Clock,
) -> list[rules.Notice]:
    """A13.2 (and A10.2 for a card replaced or cancelled): a change that stops top-ups takes
    effect in transit before it is acknowledged. Transit is told here, after the change is
    committed with its push saga and before the answer; if it does not confirm in time, the
    saga keeps telling it, and the holder is told, in a notice returned and kept on the card,
    that top-ups may still go through until it does. A change that allows top-ups again is
    left to the saga: until it arrives, transit asks this service about the card."""
    last = {push.card_id: push for push in pushes}  # a card's last change is the one that counts
    notices = []
    for push in last.values():
        status = rules.Status(push.data["status"])
        if status in rules.IN_HAND:
            continue
        try:
            # Its own key: the saga may be telling transit the same version at the same time.
            record_card_status(
                f"{push.saga_id}:at-once",
                push.card_id,
                push.data["person_id"],
                status.value,
                push.data["version"],
                TRANSIT_PUSH_DEADLINE_SECONDS,
            )
        except DomainError as exc:
            notice = rules.Notice(
                clock.now(),
                "person",
                "The transit service has not yet confirmed that the card takes no more top-ups "
                f"({exc.reason}); it is being told again until it does. Until then the card's "
                "transit wallet may still be topped up.",
                "A13.2" if status in rules.LOST else "A10.2",
            )
            with new_uow() as uow:
                now_card = _card(uow, push.card_id, for_update=True)
                uow.cards.record(rules.Change(now_card, notices=[notice]))
                uow.commit()
            notices.append(notice)
    return notices


def report_temporary_loss(
    uow: CardUnitOfWork, card_id: str, presented: Presented, caller: Caller, clock: Clock
) -> LossOutcome:
    """A13.1 / A13.2: SS stops now, the bank suspends the financial function, and A13.3's
    15 natural days start."""
    channels.check(Operation.TEMPORARY_LOSS, caller)
    card = _card(uow, card_id, for_update=True)
    _holder(uow, card, presented, Operation.TEMPORARY_LOSS, "A13.1")
    now = clock.now()
    change = rules.report_temporary_loss(card, caller, now)
    if change.card is card:
        return LossOutcome(card, False)
    uow.cards.record(change)
    watch_temporary_loss(uow, change.card, now)
    key = _bank_saga(uow, card, "suspend", "TEMPORARY_LOSS")
    return LossOutcome(change.card, True, Suspension(key, "TEMPORARY_LOSS"))


def report_formal_loss(
    uow: CardUnitOfWork, card_id: str, presented: Presented, caller: Caller, clock: Clock
) -> LossOutcome:
    """A13.1 / A13.4: at a district outlet the SS function only; at the issuing bank the
    financial function too."""
    channels.check(Operation.FORMAL_LOSS, caller)
    card = _card(uow, card_id, for_update=True)
    reach = channels.check(Operation.FORMAL_LOSS, caller, card.bank_code)
    _holder(uow, card, presented, Operation.FORMAL_LOSS, "A13.1")
    financial_too = reach is channels.Reach.ISSUING_BANK
    change = rules.report_formal_loss(card, financial_too, caller, clock.now())
    if change.card is card and not financial_too:
        return LossOutcome(card, False)
    uow.cards.record(change)
    uow.timers.cancel(TEMPORARY_LOSS_EXPIRY, card.card_id, "superseded by a formal loss (A13.3)")
    if not financial_too:
        return LossOutcome(change.card, False)
    key = _bank_saga(uow, card, "suspend", "FORMAL_LOSS")
    return LossOutcome(change.card, True, Suspension(key, "FORMAL_LOSS"))


def unlock(
    uow: CardUnitOfWork, card_id: str, presented: Presented, caller: Caller, clock: Clock
) -> LossOutcome:
    """A14.1: restored at once; at the issuing bank the financial function too."""
    channels.check(Operation.UNLOCK, caller)
    card = _card(uow, card_id, for_update=True)
    reach = channels.check(Operation.UNLOCK, caller, card.bank_code)
    _holder(uow, card, presented, Operation.UNLOCK, "A14.1")
    change = rules.unlock(card, caller, clock.now())
    uow.cards.record(change)
    financial_too = reach is channels.Reach.ISSUING_BANK
    if financial_too:
        _bank_saga(uow, card, "lift")
    return LossOutcome(change.card, financial_too)


# --- cancellation (A19) ----------------------------------------------------------------------


def business_not_settled() -> DomainError:
    return DomainError(
        "BUSINESS_NOT_SETTLED",
        "the holder's HR and medical insurance business is not settled yet: settle it first",
        rule="A19.1",
    )


def cancel_card(
    uow: CardUnitOfWork,
    card_id: str,
    presented: Presented,
    payout_destination: str,
    settled: Callable[[str], bool],
    caller: Caller,
    clock: Clock,
) -> LossOutcome:
    """A19.1: at a district outlet the SS function only (the bank suspends the account's
    non-counter business six months later, A19.2); at the issuing bank the financial function
    and the transit balance too, by the cancellation saga. ``settled(person_id)``: the identity
    service shows the holder's business settled."""
    channels.check(Operation.CANCEL, caller)
    card = _card(uow, card_id, for_update=True)
    reach = channels.check(Operation.CANCEL, caller, card.bank_code)
    _holder(uow, card, presented, Operation.CANCEL, "A19.1")
    financial_too = reach is channels.Reach.ISSUING_BANK
    if card.status is rules.Status.SS_CANCELLED:
        # Cancelled at a district outlet, the SS function only: at the issuing bank the rest
        # is done now, the transit refund then the account's payout and close, by the one
        # cancellation saga (A19.1); once started, a repeat changes nothing.
        if not financial_too or uow.sagas.for_card(card.card_id, [CANCELLATION]) is not None:
            return LossOutcome(card, False)
        _payout_destination_given(payout_destination)
        _start_cancellation(uow, card, payout_destination)
        return LossOutcome(card, True)
    if financial_too:
        _payout_destination_given(payout_destination)
    if not settled(card.person_id):
        raise business_not_settled()
    now = clock.now()
    change = rules.cancel(card, financial_too, caller, now)
    uow.cards.record(change)
    uow.timers.cancel(TEMPORARY_LOSS_EXPIRY, card.card_id, "the card was cancelled (A19.1)")
    if financial_too:
        _start_cancellation(uow, card, payout_destination)
    elif card.account_id:
        watch_non_counter(uow, card, now)
    start_release_place(uow, card.card_id)
    return LossOutcome(change.card, True)


def _payout_destination_given(payout_destination: str) -> None:
    if not payout_destination.strip():
        v = Violations()
        v.add(
            "payout_destination",
            "say where the account's balance is paid (an account elsewhere, or cash)",
            "REQUIRED",
        )
        v.raise_if_any("INVALID_REQUEST", rule="A19.1")


def _start_cancellation(uow: CardUnitOfWork, card: Card, payout_destination: str) -> None:
    """The financial half of A19.1: the saga refunds the transit balance into the account,
    pays the account out as the holder directs and closes it. The A19.2 suspension a district
    cancellation scheduled has nothing left to prompt."""
    uow.timers.cancel(
        NON_COUNTER_SUSPENSION, card.card_id, "the account is closed at the bank (A19.1)"
    )
    destination = {"payout_destination": payout_destination.strip(), "refund_id": ""}
    start_saga(uow, CANCELLATION, card.card_id, destination)


@dataclass(frozen=True)
class ContactChange:
    mobile: str | None
    occupation: str | None
    address: str | None
    name: str | None
    new_document: bool


def update_contact(
    uow: CardUnitOfWork,
    card_id: str,
    presented: Presented,
    change: ContactChange,
    caller: Caller,
) -> Card:
    """A17.1: mobile, occupation, address; A17.2: basic information goes through identity."""
    channels.check(Operation.INFO_CHANGE, caller)
    card = _card(uow, card_id, for_update=True)
    if change.name or change.new_document:
        raise DomainError(
            "BASIC_INFO_CHANGE_VIA_IDENTITY",
            "a name or document change is made in the HR / medical-insurance records first; "
            "then the card is replaced at the issuing bank",
            rule="A17.2",
        )
    _holder(uow, card, presented, Operation.INFO_CHANGE, "A17.1")
    v = Violations()
    if change.mobile is not None:
        check_mobile(change.mobile, v)
    if change.occupation is not None:
        check_occupation(change.occupation, v)
    if change.address is not None:
        check_address(change.address, v)
    if change.mobile is None and change.occupation is None and change.address is None:
        v.add("mobile", "give a new mobile number, occupation or address", "REQUIRED")
    v.raise_if_any("INVALID_CONTACT_INFO", rule="A17.1")
    uow.cards.update_contact(
        card_id,
        change.mobile,
        change.occupation.strip() if change.occupation is not None else None,
        change.address.strip() if change.address is not None else None,
    )
    return card


# A12.2: at these counters the holder presents the ID document and the card itself.
PASSWORD_COUNTERS = frozenset({Channel.DISTRICT_OUTLET, Channel.BANK_BRANCH})


def may_set_password(
    uow: CardUnitOfWork,
    card_id: str,
    presented: Presented,
    card_number: str,
    caller: Caller,
    operation: Operation,
) -> Card | None:
    """A12.2 channels; A24.1 agents may change, never reset. A reset needs the holder's ID
    document, and so does a change at a counter; at a counter the card is presented too. An
    agent presents the holder's document as the principal's (A24.2).

    A change online for a card that does not exist answers None rather than NOT_FOUND: the
    caller then refuses it exactly like a wrong password, so the answer never tells whether a
    card exists.
    """
    check_agent(operation, presented.agent)
    at_counter = caller.channel in PASSWORD_COUNTERS
    card = uow.cards.get(card_id)
    if card is not None and not visible_to(caller, card):
        card = None
    if card is None and operation is Operation.SERVICE_PASSWORD_CHANGE and not at_counter:
        channels.check(operation, caller)
        return None
    if card is None:
        raise card_not_found()
    channels.check(operation, caller, card.bank_code)
    if at_counter or presented.agent is not None or operation is Operation.SERVICE_PASSWORD_RESET:
        _holder(uow, card, presented, operation, "A12.2")
    if at_counter:
        rules.check_card_presented(card, card_number, "A12.2")
    return card


def password_state(uow: CardUnitOfWork, card_id: str) -> PasswordState:
    return uow.passwords.get(card_id)


def count_try(
    uow: CardUnitOfWork, card_id: str, correct: bool, seen_hash: str | None, clock: Clock
) -> bool:
    """Record one password check; True if it stands (right password, unchanged, not locked)."""
    now = clock.now()
    state = uow.passwords.get(card_id)
    stands = correct and state.hash == seen_hash and not state.locked(now)
    if not state.locked(now):
        uow.passwords.save(after_check(state, stands, now))
    return stands


def verify_password(
    uow: CardUnitOfWork, card_id: str, correct: bool, seen_hash: str | None, clock: Clock
) -> bool:
    """A12.1: another service checks the holder's service password. Counted like every try,
    and valid only for a card in use: a card lost, replaced, cancelled or whose holder died
    answers as a wrong password or an unknown card does (A12.2)."""
    stands = count_try(uow, card_id, correct, seen_hash, clock)
    return stands and rules.in_use(uow.cards.get(card_id))


def store_password(
    uow: CardUnitOfWork, card_id: str, new_hash: str, seen_hash: str | None, clock: Clock
) -> PasswordState:
    """Set the new hash, unless the password changed since it was checked."""
    state = uow.passwords.get(card_id)
    if state.hash != seen_hash:
        raise wrong_password()
    updated = set_password(state, new_hash, clock.now())
    uow.passwords.save(updated)
    return updated


# --- reissue and replacement (A15, A16) ---------------------------------------------------------


@dataclass(frozen=True)
class SuccessorCommand:
    """What a reissue or replacement asks for."""

    old_card_id: str
    presented: Presented
    name: str
    delivery: Delivery | None
    pickup_branch_id: str
    reason: rules.ReplacementReason | None = None
    new_bank_code: str = ""
    keep_old_account: bool = False
    old_account_payout: str = ""  # "" for the new card's account (A16.7)


def _successor(
    uow: CardUnitOfWork,
    old: Card,
    cmd: SuccessorCommand,
    kind: str,
    bank_code: str,
    caller: Caller,
    now: dt.datetime,
) -> Started:
    """Record the new card, mark the old one superseded (A14.2: a reissued card is never
    unlocked, from the moment the reissue is accepted) and start the replacement saga (A4.2
    moves the person's place)."""
    v = Violations()
    check_delivery(cmd.delivery, cmd.pickup_branch_id, v)
    v.raise_if_any("INVALID_REQUEST")
    if cmd.delivery is None:
        raise RuntimeError("cmd.delivery must be known here")
    contact = uow.cards.contact_of(old.card_id)
    doc_type = cmd.presented.doc_type or contact.document_type
    number = (cmd.presented.doc_number or contact.document_number).strip().upper()
    pickup = cmd.pickup_branch_id if cmd.delivery is Delivery.BRANCH_PICKUP else ""
    applicant = Applicant(
        doc_type,
        number,
        cmd.name or old.holder_name,
        contact.photo,
        contact.occupation,
        contact.mobile,
        contact.address,
    )
    card, new_contact, transition, _ = _start(
        applicant, bank_code, cmd.delivery, pickup, caller, now
    )
    card = replace(card, replaces_card_id=old.card_id, person_id=old.person_id)
    transition = replace(
        transition,
        rule="A15.1" if kind == "REISSUE" else "A16.2",
        reason="reissue applied for" if kind == "REISSUE" else "replacement applied for",
    )
    uow.cards.add_many([(card, new_contact, transition)], caller.channel, caller.outlet_id)
    uow.cards.record(rules.Change(rules.superseded(old, card.card_id)))
    saga = SagaRecord(
        saga_id=new_saga_id(),
        kind=REPLACEMENT,
        card_id=card.card_id,
        batch_id="",
        state="RUNNING",
        step=0,
        data={
            "kind": kind,
            "old_card_id": old.card_id,
            "old_account_id": old.account_id,
            "doc_type": doc_type,
            "doc_number": number,
            "name": card.holder_name,
            "bank_code": bank_code,
            "bank_change": bank_code != old.bank_code,
            "keep_old_account": cmd.keep_old_account,
            "old_account_payout": cmd.old_account_payout,
            "delivery": cmd.delivery.value,
            "pickup_branch_id": pickup,
            "applied_at": now.isoformat(),
            "applied_at_branch_id": caller.outlet_id
            if caller.channel is Channel.BANK_BRANCH
            else "",
            # identity confirms the presented document is the old card's holder's
            "applicant_person": old.person_id,
        },
    )
    uow.sagas.add_many([saga], wall_clock())
    return Started(card, saga.saga_id)


def reissue(uow: CardUnitOfWork, cmd: SuccessorCommand, caller: Caller, clock: Clock) -> Started:
    """A15.1: after a formal loss, online or at the issuing bank, with the ID document."""
    channels.check(Operation.REISSUE, caller)
    old = _card(uow, cmd.old_card_id, for_update=True)
    channels.check(Operation.REISSUE, caller, old.bank_code)
    _holder(uow, old, cmd.presented, Operation.REISSUE, "A15.1")
    rules.check_reissue(old)
    return _successor(uow, old, cmd, "REISSUE", old.bank_code, caller, clock.now())


def replace_card(
    uow: CardUnitOfWork, cmd: SuccessorCommand, caller: Caller, clock: Clock
) -> Started:
    """A16.1 / A16.2 / A16.7: replacement for a lawful reason, possibly to another bank."""
    channels.check(Operation.REPLACE, caller)
    old = _card(uow, cmd.old_card_id, for_update=True)
    channels.check(Operation.REPLACE, caller, old.bank_code)
    check_agent(Operation.REPLACE, cmd.presented.agent)
    rules.check_replacement(old, cmd.reason)
    rules.check_replacement_delivery(cmd.delivery)
    if cmd.reason is not rules.ReplacementReason.BASIC_INFO_CHANGED:
        _same_document(uow, old, cmd.presented.doc_type, cmd.presented.doc_number, "A16.2")
    elif not (cmd.presented.doc_type and cmd.presented.doc_number.strip()):
        # A17.2: the holder presents the document as it is now; the saga has identity confirm
        # it is this holder's (``applicant_person``), so no one replaces another's card.
        raise invalid(
            "DOCUMENT_REQUIRED",
            [FieldViolation("document", "the holder's document as it is now", "REQUIRED")],
            rule="A16.2",
        )
    now = clock.now()
    bank_code = cmd.new_bank_code or old.bank_code
    if bank_code != old.bank_code:
        v = Violations()
        check_bank(bank_code, v, "new_bank_code")
        v.raise_if_any("INVALID_REQUEST", rule="A16.7")
        rules.check_bank_change(uow.cards.last_bank_change(old.person_id), now)
    started = _successor(uow, old, cmd, "REPLACEMENT", bank_code, caller, now)
    if bank_code != old.bank_code:
        watch_bank_change_lock(uow, started.card, now)
    return started


# --- operations (sagas and deadlines) -----------------------------------------------------------

MAX_PAGE = 500


def page_size(requested: int) -> int:
    return 50 if requested <= 0 else min(requested, MAX_PAGE)


def list_sagas(
    uow: CardUnitOfWork, state: str, kind: str, card_id: str, after: str, size: int, caller: Caller
) -> list[SagaSummary]:
    return uow.sagas.summaries(state, kind, card_id, after, page_size(size))


def saga_not_found() -> DomainError:
    return DomainError("SAGA_NOT_FOUND", "no such saga", kind=Kind.NOT_FOUND)


def get_saga(uow: CardUnitOfWork, saga_id: str, caller: Caller) -> SagaSummary:
    found = uow.sagas.summary(saga_id) if saga_id else None
    if found is None:
        raise saga_not_found()
    return found


def _saga_finished() -> DomainError:
    return DomainError(
        "SAGA_FINISHED",
        "the saga has finished; an operator can no longer retry or compensate it",
        kind=Kind.PRECONDITION,
    )


def watched_saga(uow: CardUnitOfWork, saga_id: str, caller: Caller) -> SagaRecord:
    """The saga a caller asks to follow, if it may read the saga's card (A18.1): a person only
    their own, an employer only its batches'; anyone else's answers as a saga that does not
    exist."""
    saga = uow.sagas.get(saga_id) if saga_id else None
    card = uow.cards.get(saga.card_id) if saga is not None else None
    if saga is None or card is None or not visible_to(caller, card):
        raise saga_not_found()
    _may_read(caller, card)
    return saga


def retry_saga(uow: CardUnitOfWork, saga_id: str, now: dt.datetime, caller: Caller) -> SagaSummary:
    """An operator resumes a saga that gave up retrying; a saga still at work is left as it is,
    so asking twice does no harm."""
    found = get_saga(uow, saga_id, caller)
    if found.record.state in ("COMPLETED", "FAILED"):
        raise _saga_finished()
    uow.sagas.resume(saga_id, now)
    return get_saga(uow, saga_id, caller)


def compensate_saga(
    uow: CardUnitOfWork, saga_id: str, now: dt.datetime, caller: Caller
) -> SagaSummary:
    """An operator gives up a saga that waits for them: the compensations of its completed
    steps run in reverse and it ends FAILED, as after a refusal."""
    found = get_saga(uow, saga_id, caller)
    if found.record.state in ("COMPLETED", "FAILED"):
        raise _saga_finished()
    if not uow.sagas.give_up(
        saga_id, now, "OPERATOR_COMPENSATED", "operations gave up the saga and undid its steps"
    ):
        raise DomainError(
            "SAGA_NOT_WAITING",
            "the saga is still at work; only a saga that waits for an operator is compensated",
            kind=Kind.PRECONDITION,
        )
    return get_saga(uow, saga_id, caller)


def list_deadlines(
    uow: CardUnitOfWork,
    kind: str,
    rule: str,
    state: str,
    overdue_only: bool,
    after: tuple[dt.datetime, str] | None,
    size: int,
    caller: Caller,
    clock: Clock,
) -> list[TimerRecord]:
    overdue_at = clock.now() if overdue_only else None
    return uow.timers.listing(kind, rule, state, overdue_at, after, page_size(size))
