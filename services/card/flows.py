"""The sagas of the card service, step by step.

Issuing a card — a first application (A5.1, A27.1), a reissue (A15.1) or a replacement (A16) —
is one sequence: identity reserves the person's place, or moves it from the old card (A4.2) ->
the card records the verified identity -> the bank opens the account after its identity
compare (A4.4; a reissue or same-bank replacement carries the old card's account instead) ->
the bank orders the card (30 natural days A22.1, 4 working days A22.2, on the spot at an instant
branch A22.3) -> the card is in production. The old card keeps its park pass (and everything
else) meanwhile: the pass moves only when the holder asks for it at collection (A16.4). A
refusal at any step undoes the completed ones in reverse, so no reservation, account or order is
left behind, and the card ends REFUSED with the refusal's reason and rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from services.card.clients import BankPort, IdentityPort, TransitPort, card_account
from services.card.deadlines import watch_not_handed_out, watch_production
from services.card.domain import card as rules
from services.card.domain.application import OlderCardChoice
from services.card.saga import LocalStep, RemoteStep, SagaDefinition
from services.card.store import TRANSIT_STATUS, CardUnitOfWork, SagaRecord
from services.card.tasks import BANK_TASK, RELEASE_PLACE
from services.platform.auth import Caller, Channel
from services.platform.calendar import WorkingDayCalendar
from services.platform.clock import Clock
from services.platform.errors import DomainError, Kind
from services.platform.masking import mask_account

APPLICATION = "application"
REPLACEMENT = "replacement"
RETIREMENT = "retirement"
SYSTEM = Caller("card-service", Channel.INTERNAL)
# The payout destination that is no account: the balance handed over at the counter.
CASH = "cash"


def paid_to_text(card_id: str, destination: str) -> str:
    """Where a closed account's balance went, as a notice says it: the card's own account by
    name, any other only by its last digits (a notice is no place for an account number)."""
    if destination == card_account(card_id):
        return "your new card's account"
    if destination.lower() == CASH:
        return "you in cash"
    return f"account {mask_account(destination)}"


def application_data(
    *,
    doc_type: str,
    doc_number: str,
    name: str,
    doc_valid_until: dt.date | None,
    bank_code: str,
    delivery: str,
    pickup_branch_id: str,
    applied_at: dt.datetime,
    applied_at_branch_id: str,
    applicant_person: str = "",
    older_card: OlderCardChoice | None = None,
) -> dict[str, Any]:
    """What the application saga starts from (kept encrypted with the saga)."""
    return {
        "doc_type": doc_type,
        "doc_number": doc_number,
        "name": name,
        # As presented (None: long-term), for the bank's compare with the verified identity.
        "doc_valid_until": _date_facts(doc_valid_until),
        "bank_code": bank_code,
        "delivery": delivery,
        "pickup_branch_id": pickup_branch_id,
        "applied_at": applied_at.isoformat(),
        "applied_at_branch_id": applied_at_branch_id,
        "kind": "FIRST",
        "old_card_id": "",
        "bank_change": True,
        # A person applying with their own credential: identity refuses another's document.
        "applicant_person": applicant_person,
        # A27.3: the older card's financial function to cancel at activation, if chosen.
        "older_card": None
        if older_card is None
        else {
            "bank_code": older_card.bank_code,
            "card_number": older_card.card_number,
            "payout_destination": older_card.payout_destination,
        },
    }


def _date_facts(day: dt.date | None) -> dict[str, int] | None:
    """A date as the fields of ``google.type.Date``, the form identity facts keep in a saga."""
    return None if day is None else {"year": day.year, "month": day.month, "day": day.day}


def _issuance_steps(
    identity: IdentityPort,
    bank: BankPort,
    transit: TransitPort,
    calendar: WorkingDayCalendar,
    clock: Clock,
) -> dict[str, Any]:
    """The steps of every saga that issues a card, keyed by name."""

    def reserve(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        d = saga.data
        verified = identity.reserve(
            request_id,
            d["doc_type"],
            d["doc_number"],
            d["name"],
            saga.card_id,
            d["kind"],
            d["old_card_id"],
            d.get("applicant_person", ""),
        )
        return {
            "person_id": verified.person_id,
            "verified": verified.facts,
            "legacy_generation": verified.legacy_generation,
        }

    def release(saga: SagaRecord, request_id: str) -> None:
        identity.release(request_id, saga.card_id)

    def record_verified(uow: CardUnitOfWork, saga: SagaRecord) -> dict[str, Any]:
        card = uow.cards.get(saga.card_id, for_update=True)
        if card is None:
            raise RuntimeError("card must be known here")
        uow.cards.record(rules.verified(card, saga.data["person_id"], SYSTEM, clock.now()))
        return {}

    def open_account(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        d = saga.data
        if not d["bank_change"]:
            return {"account_id": d["old_account_id"]}  # the successor carries the old account
        verified = d["verified"]
        presented: dict[str, Any] = {
            "name": d["name"],
            "document": {"type": d["doc_type"], "number": d["doc_number"]},
        }
        if "doc_valid_until" in d:
            # The document as the applicant presented it, which the bank compares (A4.4).
            if d["doc_valid_until"] is not None:
                presented["document_valid_until"] = d["doc_valid_until"]
        elif "document_valid_until" in verified:
            # A reissue or replacement presents no validity: the registry's stands for it.
            presented["document_valid_until"] = verified["document_valid_until"]
        account_id = bank.open_account(
            request_id, saga.card_id, d["bank_code"], presented, verified
        )
        return {"account_id": account_id}

    def close_account(saga: SagaRecord, request_id: str) -> None:
        if saga.data["bank_change"]:
            bank.close_account(request_id, saga.data["account_id"])

    def order(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        d = saga.data
        placed = bank.order(
            request_id,
            saga.card_id,
            d["bank_code"],
            d["account_id"],
            dt.datetime.fromisoformat(d["applied_at"]),
            d["applied_at_branch_id"],
            d["delivery"],
            d["pickup_branch_id"],
            kind=d["kind"],
        )
        return {
            "order_id": placed.order_id,
            "due_date": placed.due_date.isoformat() if placed.due_date else "",
            "card_number": placed.card_number,
        }

    def cancel_order(saga: SagaRecord, request_id: str) -> None:
        bank.cancel_order(request_id, saga.data["order_id"])

    def in_production(uow: CardUnitOfWork, saga: SagaRecord) -> dict[str, Any]:
        d = saga.data
        card = uow.cards.get(saga.card_id, for_update=True)
        if card is None:
            raise RuntimeError("card must be known here")
        now = clock.now()
        due = dt.date.fromisoformat(d["due_date"]) if d["due_date"] else now.date()
        rule = "A22.1" if d["kind"] == "FIRST" else "A22.2"
        change = rules.ordered(replace(card, account_id=d["account_id"]), due, SYSTEM, now, rule)
        uow.cards.record(change)
        if d["card_number"] and change.card.status is rules.Status.IN_PRODUCTION:
            # Made on the spot at an instant branch (A22.3).
            change = rules.produced(change.card, d["card_number"], SYSTEM, now)
            uow.cards.record(change)
            watch_not_handed_out(uow, change.card, now)
        watch_production(uow, change.card, rule, calendar, now)
        if d["old_card_id"]:
            old = uow.cards.get(d["old_card_id"], for_update=True)
            if old is not None and not old.replaced_by:
                # Marked when the reissue or replacement was accepted; a saga accepted by an
                # earlier release, which marked it only here, is still running.
                uow.cards.record(rules.Change(rules.superseded(old, saga.card_id)))
            notice = rules.subsidy_notice(now, "A15.2" if d["kind"] == "REISSUE" else "A16.8")
            uow.cards.record(rules.Change(change.card, notices=[notice]))
        return {}

    def failed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        card = uow.cards.get(saga.card_id, for_update=True)
        if card is None:
            raise RuntimeError("card must be known here")
        uow.cards.record(
            rules.refused(
                card,
                saga.refusal_reason,
                saga.refusal_rule,
                saga.refusal_message,
                SYSTEM,
                clock.now(),
            )
        )
        old = saga.data["old_card_id"] and uow.cards.get(saga.data["old_card_id"], for_update=True)
        if old:
            # The reissue or replacement was undone: the old card may be unlocked (A14.1) or
            # reissued or replaced again.
            uow.cards.record(rules.Change(rules.successor_refused(old, saga.card_id)))

    return {
        "reserve_issuance": RemoteStep("reserve_issuance", reserve, release),
        "record_verified": LocalStep("record_verified", record_verified),
        "open_account": RemoteStep("open_account", open_account, close_account),
        "order_card": RemoteStep("order_card", order, cancel_order),
        "in_production": LocalStep("in_production", in_production),
        "failed": failed,
    }


def _tell(
    uow: CardUnitOfWork,
    saga: SagaRecord,
    clock: Clock,
    recipient: str,
    rule: str,
    text_for: Callable[[rules.Card], str],
) -> None:
    """Leave a notice on the saga's card (for operations when a saga failed, or the holder)."""
    card = uow.cards.get(saga.card_id)
    if card is not None:
        notice = rules.Notice(clock.now(), recipient, text_for(card), rule)
        uow.cards.record(rules.Change(card, notices=[notice]))


def _waiting(uow: CardUnitOfWork, saga: SagaRecord) -> None:
    """Nothing more to do: the card waits for production (an old card keeps working, A16.5)."""


def application_saga(
    identity: IdentityPort,
    bank: BankPort,
    transit: TransitPort,
    calendar: WorkingDayCalendar,
    clock: Clock,
) -> SagaDefinition:
    """A first card (A5.1)."""
    s = _issuance_steps(identity, bank, transit, calendar, clock)
    names = ["reserve_issuance", "record_verified", "open_account", "order_card", "in_production"]
    return SagaDefinition(APPLICATION, [s[n] for n in names], _waiting, s["failed"])


def replacement_saga(
    identity: IdentityPort,
    bank: BankPort,
    transit: TransitPort,
    calendar: WorkingDayCalendar,
    clock: Clock,
) -> SagaDefinition:
    """A reissue (A15.1) or a replacement (A16), possibly to another bank (A16.7)."""
    s = _issuance_steps(identity, bank, transit, calendar, clock)
    names = [
        "reserve_issuance",
        "record_verified",
        "open_account",
        "order_card",
        "in_production",
    ]
    return SagaDefinition(REPLACEMENT, [s[n] for n in names], _waiting, s["failed"])


def bank_task_saga(bank: BankPort, clock: Clock) -> SagaDefinition:
    """What the card service asks of the bank after a change it made in its own transaction,
    retried until the bank answers:

    - ``suspend`` / ``lift``: the bank's half of a loss report or an unlock (A13.2, A13.4, A14.1);
      a loss report asks the bank itself first, with this saga's key, and the saga is its
      durable retry (``service.suspend_financial_at_once``);
    - ``stop_issuing``: the holder died before receiving the card: the production order is
      cancelled, a card already made is set aside for destruction (A21.2);
    - ``recall``: a card not handed out within 6 months is taken back (A21.1).

    A refusal from the bank is kept as a notice for operations on the card."""

    def tell_bank(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        d = saga.data
        match d["action"]:
            case "suspend":
                bank.suspend_for_loss(request_id, saga.card_id, d["loss"])
            case "lift":
                bank.lift_loss(request_id, saga.card_id)
            case "stop_issuing":
                if d.get("order_id"):
                    bank.cancel_order(request_id, d["order_id"])
            case "recall":
                bank.recall(request_id, saga.card_id, d["reason"])
            case "suspend_non_counter":
                bank.suspend_non_counter(request_id, saga.card_id, d["reason"])
        return {}

    def completed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        """The bank has done its part."""

    def failed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        what = {
            "suspend": "suspend the financial function",
            "lift": "restore the financial function",
            "stop_issuing": "stop issuing the card",
            "recall": "record the card taken back",
            "suspend_non_counter": "suspend the account's non-counter business",
        }[saga.data["action"]]
        _tell(
            uow,
            saga,
            clock,
            "operations",
            saga.refusal_rule,
            lambda card: (
                f"The bank could not {what}: {saga.refusal_message} "
                f"({saga.refusal_reason}); the holder should contact {card.bank_code}."
            ),
        )

    return SagaDefinition(BANK_TASK, [RemoteStep("tell_bank", tell_bank)], completed, failed)


def release_place_saga(identity: IdentityPort, clock: Clock) -> SagaDefinition:
    """A cancelled card (A19.1) or one withdrawn before its holder got it (A21.1) gives the
    person's place in the one-person-one-card register back (A4.2), so the person may apply
    again later. A refusal is kept as a notice for operations."""

    def release(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        identity.release(request_id, saga.card_id)
        return {}

    def completed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        """The place is free."""

    def failed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        _tell(
            uow,
            saga,
            clock,
            "operations",
            saga.refusal_rule or "A4.2",
            lambda card: (
                f"The identity service did not free the place of card {card.card_id}: "
                f"{saga.refusal_message} ({saga.refusal_reason})."
            ),
        )

    return SagaDefinition(RELEASE_PLACE, [RemoteStep("release_place", release)], completed, failed)


def retirement_saga(identity: IdentityPort, bank: BankPort, clock: Clock) -> SagaDefinition:
    """After a reissue or replacement is activated (A16.5), or a first card whose holder has a
    1st / 2nd generation card (A27.3): the person's place is final with identity, which then
    stops the older card's SS function; for a reissue, the account the lost card carried over
    to the new card is no longer suspended for its loss (a replaced card was taken back when
    the new one was collected, A16.6); after a bank change the old bank's account is paid
    out as the holder directed and closes, unless the holder keeps it (A16.7, A20.1). An old
    3rd-generation card itself stopped in the activation's transaction."""

    def confirm(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        identity.confirm(request_id, saga.card_id)
        return {}

    def lift_old_loss(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        if saga.data["kind"] == "REISSUE":
            # The lost card is dead for good: the account it carried over to the reissued card
            # no longer needs the loss suspension (A14.1's lift, for the new card's sake).
            bank.lift_loss(request_id, saga.data["old_card_id"])
        return {}

    def closes_old_account(saga: SagaRecord) -> bool:
        return bool(saga.data["bank_change"] and not saga.data["keep_old_account"])

    def close_old_account(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        # Pension or subsidy money may sit in the old account: it closes through the same
        # CloseFinancial as a cancellation, which pays the whole balance out as the holder
        # directed when replacing the card (by default into the new card's account, credited
        # in the bank's one transaction) and only then closes it. A status change alone would
        # leave the money in an account nothing can debit any more.
        if closes_old_account(saga):
            bank.close_financial(
                request_id,
                saga.data["old_card_id"],
                saga.data.get("payout_destination") or card_account(saga.card_id),
                saga.saga_id,
            )
        return {}

    def close_older_card_account(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        # A27.3: the holder chose to cancel the financial function of their 1st / 2nd
        # generation card. Its bank checks the account is the applicant's, pays the whole
        # balance out as the holder directed (by default into this card's account, in the
        # bank's one transaction) and only then closes it.
        older = saga.data.get("older_card")
        if older:
            bank.close_financial(
                request_id,
                older["account"],
                older["payout_destination"],
                saga.saga_id,
                (older["doc_type"], older["doc_number"]),
            )
        return {}

    def done(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        """The old card is retired; after a bank change, or the cancellation of an older
        card's financial function, the holder is told where the closed account's balance went
        and to give the paying bodies the new account (A20.1, A15.2, A27.3)."""
        older = saga.data.get("older_card")
        if older:
            paid_to = paid_to_text(saga.card_id, older["payout_destination"])
            _tell(
                uow,
                saga,
                clock,
                "person",
                "A27.3",
                lambda card: (
                    "As you chose, the financial function of your older social security card "
                    f"at {older['bank_code']} is cancelled and its account closed, its balance "
                    f"paid to {paid_to}. Where pension, subsidies or allowances were paid into "
                    f"it, register your new card's account at {card.bank_code} with the paying "
                    "agency."
                ),
            )
        if not closes_old_account(saga):
            return
        paid_to = paid_to_text(
            saga.card_id, saga.data.get("payout_destination") or card_account(saga.card_id)
        )
        _tell(
            uow,
            saga,
            clock,
            "person",
            "A20.1",
            lambda card: (
                f"Your account at your former bank is closed, its balance paid to {paid_to}. "
                "Where pension, subsidies or allowances were paid into it, register your new "
                f"card's account at {card.bank_code} with the paying agency."
            ),
        )

    def not_closed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        older = saga.data.get("older_card")
        if older:
            why = f"{saga.refusal_message} ({saga.refusal_reason})"
            _tell(
                uow,
                saga,
                clock,
                "operations",
                saga.refusal_rule or "A27.3",
                lambda card: (
                    f"The older card's account at {older['bank_code']} of the holder of card "
                    f"{card.card_id} was not closed: {why}; it stays open with its balance."
                ),
            )
            _tell(
                uow,
                saga,
                clock,
                "person",
                "A27.3",
                lambda card: (
                    "The financial function of your older social security card could not be "
                    f"cancelled ({saga.refusal_reason}); its account at {older['bank_code']} "
                    "stays open with its balance: cancel it at that bank's counter."
                ),
            )
        if not closes_old_account(saga):
            return
        _tell(
            uow,
            saga,
            clock,
            "operations",
            saga.refusal_rule or "A16.7",
            lambda card: (
                f"The retirement of card {saga.data['old_card_id']} stopped: "
                f"{saga.refusal_message} ({saga.refusal_reason}); its account at the former "
                "bank stays open with its balance until it is paid out as the holder directs."
            ),
        )

    return SagaDefinition(
        RETIREMENT,
        [
            RemoteStep("confirm_issuance", confirm),
            RemoteStep("lift_lost_card_suspension", lift_old_loss),
            RemoteStep("close_old_account", close_old_account),
            RemoteStep("close_older_card_account", close_older_card_account),
        ],
        done,
        not_closed,
    )


TRANSIT_REFUND = "transit_refund"


def transit_refund_saga(transit: TransitPort, clock: Clock) -> SagaDefinition:
    """A16.3: the new card of a reissue or replacement was collected, so the old card's transit
    balance goes to the holder's designated bank account (the new card's). Started in the
    collection's transaction and retried until the transit service takes the money over; its
    relay then credits the bank. A refusal is kept as a notice for operations on the card."""

    def refund(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        transit.refund_balance(request_id, saga.data["old_card_id"], saga.card_id)
        return {}

    def completed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        """The transit service holds the refund and delivers it to the bank."""

    def failed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        _tell(
            uow,
            saga,
            clock,
            "operations",
            "A16.3",
            lambda card: (
                f"The old card's transit balance could not be refunded: {saga.refusal_message} "
                f"({saga.refusal_reason})."
            ),
        )

    return SagaDefinition(
        TRANSIT_REFUND, [RemoteStep("refund_old_transit_balance", refund)], completed, failed
    )


def transit_status_saga(transit: TransitPort, clock: Clock) -> SagaDefinition:
    """Every change of a card into or out of a state that takes top-ups reaches transit's view
    of the card, which decides top-ups without asking this service: started in the change's
    transaction (``store.CardRepository.record``) and retried until transit has it. A change
    that stops top-ups is also pushed at once before it is acknowledged
    (``service.push_status_at_once``), with this saga's key. Transit keeps the newest version
    it has seen, so pushes arriving out of order change nothing. A refusal is kept as a notice
    for operations on the card."""

    def push(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        d = saga.data
        # A push started before the holder was sent along has none: transit asks for it once.
        holder = d.get("person_id", "")
        transit.record_card_status(request_id, saga.card_id, holder, d["status"], d["version"])
        return {}

    def completed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        """Transit's view of the card is as new as this change, or newer."""

    def failed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        _tell(
            uow,
            saga,
            clock,
            "operations",
            saga.refusal_rule or "A13.2",
            lambda card: (
                f"The transit service did not record card {card.card_id} as "
                f"{saga.data['status']}: {saga.refusal_message} ({saga.refusal_reason})."
            ),
        )

    return SagaDefinition(
        TRANSIT_STATUS, [RemoteStep("record_card_status", push)], completed, failed
    )


PARK_PASS_MOVE = "park_pass_move"


def park_pass_move_saga(transit: TransitPort, clock: Clock) -> SagaDefinition:
    """A16.4: the holder collecting a replacing card asked for the old card's park pass to move
    to it on the spot. Started in the collection's transaction and retried until the transit
    service answers; an old card with no pass moves nothing. A refusal (the new card already
    holds a pass for the year) is kept as a notice for operations on the card."""

    def move(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        transit.move_park_pass(request_id, saga.data["old_card_id"], saga.card_id)
        return {}

    def completed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        """The pass, if any, is on the new card."""

    def failed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        _tell(
            uow,
            saga,
            clock,
            "operations",
            "A16.4",
            lambda card: (
                f"The old card's park pass could not move to card {card.card_id}: "
                f"{saga.refusal_message} ({saga.refusal_reason})."
            ),
        )

    return SagaDefinition(PARK_PASS_MOVE, [RemoteStep("move_park_pass", move)], completed, failed)


CANCELLATION = "cancellation"


def refund_in_flight() -> DomainError:
    return DomainError(
        "REFUND_IN_FLIGHT",
        "the transit balance is on its way to the account",
        kind=Kind.UNAVAILABLE,
        rule="A19.1",
    )


def cancellation_saga(bank: BankPort, transit: TransitPort, clock: Clock) -> SagaDefinition:
    """A19.1 at the issuing bank, after the card stopped in the caller's transaction: the transit
    balance is refunded into the card's account, the saga waits until it has arrived, then the
    bank pays the whole balance out as the holder directed and closes the account. Every step
    is the holder's own instruction and idempotent, so the saga only moves forward, retrying;
    money is never outside the wallet or the account in between. A refusal that retrying
    cannot cure is flagged to operations with where the money is."""

    def refund_transit(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        return {"refund_id": transit.refund_balance(request_id, saga.card_id, "", True)}

    def await_refund(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        refund_id = saga.data["refund_id"]
        if refund_id and not transit.refund_arrived(refund_id):
            raise refund_in_flight()
        return {}

    def close_financial(saga: SagaRecord, request_id: str) -> dict[str, Any]:
        bank.close_financial(
            request_id, saga.card_id, saga.data["payout_destination"], saga.saga_id
        )
        return {}

    def completed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        _tell(
            uow,
            saga,
            clock,
            "person",
            "A19.1",
            lambda card: (
                "Your card is cancelled: its transit balance was refunded and its bank account "
                f"closed, the balance paid to "
                f"{paid_to_text(saga.card_id, saga.data['payout_destination'])}."
            ),
        )

    def failed(uow: CardUnitOfWork, saga: SagaRecord) -> None:
        def text(card: rules.Card) -> str:
            where = (
                "in the transit wallet" if saga.step == 0 else f"in the account at {card.bank_code}"
            )
            return (
                f"The cancellation of card {card.card_id} could not finish: "
                f"{saga.refusal_message} ({saga.refusal_reason}); the money is still {where}."
            )

        _tell(uow, saga, clock, "operations", saga.refusal_rule or "A19.1", text)

    return SagaDefinition(
        CANCELLATION,
        [
            RemoteStep("refund_transit_balance", refund_transit),
            RemoteStep("await_transit_refund", await_refund),
            RemoteStep("close_financial_account", close_financial),
        ],
        completed,
        failed,
    )
