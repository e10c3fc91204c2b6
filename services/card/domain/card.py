"""A card's states and the rules that move it between them, first application to activation.

APPLIED -> VERIFYING -> IN_PRODUCTION -> READY -> (MAILED | WITH_EMPLOYER) -> COLLECTED -> ACTIVE,
or REFUSED when the application saga fails. Every change is a ``Transition`` naming who, where
and under which rule; the words of ``progress`` are what a hotline operator reads out (A18.1).
"""

from __future__ import annotations

import datetime as dt
import enum
from calendar import monthrange
from dataclasses import dataclass, field, replace

from services.platform.auth import Caller, Channel
from services.platform.clock import BEIJING, beijing_date, day_after
from services.platform.errors import DomainError, FieldViolation, Kind

GENERATION = 3  # A27.1: cards issued under these rules carry SS, public-service and financial


class Status(enum.Enum):
    APPLIED = "APPLIED"
    VERIFYING = "VERIFYING"
    IN_PRODUCTION = "IN_PRODUCTION"
    READY = "READY"
    MAILED = "MAILED"
    WITH_EMPLOYER = "WITH_EMPLOYER"
    COLLECTED = "COLLECTED"
    ACTIVE = "ACTIVE"
    REFUSED = "REFUSED"
    TEMPORARILY_LOST = "TEMPORARILY_LOST"
    FORMALLY_LOST = "FORMALLY_LOST"
    REPLACED = "REPLACED"
    RETURN_DUE = "RETURN_DUE"
    WITHDRAWN = "WITHDRAWN"  # never reached its holder; issuing stopped (A21.1, A21.2)
    CANCELLATION_DUE = "CANCELLATION_DUE"  # the holder died; awaiting the estate (A21.2)
    SS_CANCELLED = "SS_CANCELLED"  # the SS function is cancelled (A19.1)


class ReplacementReason(enum.Enum):
    """A16.1: the only reasons a card is replaced."""

    DAMAGED_FACE = "DAMAGED_FACE"
    CHIP_FAILURE = "CHIP_FAILURE"
    BASIC_INFO_CHANGED = "BASIC_INFO_CHANGED"


IN_HAND = frozenset({Status.COLLECTED, Status.ACTIVE})  # states a holder can lose a card in
LOST = frozenset({Status.TEMPORARILY_LOST, Status.FORMALLY_LOST})
# Made but not yet in its holder's hands: at the branch, in the post, with the employer.
AWAITING_HOLDER = frozenset({Status.READY, Status.MAILED, Status.WITH_EMPLOYER, Status.RETURN_DUE})
# Not yet handed to its holder at all, made or not.
NOT_HANDED_OUT = AWAITING_HOLDER | {
    Status.APPLIED,
    Status.VERIFYING,
    Status.IN_PRODUCTION,
}
# States a holder (or the estate) may cancel the card from (A19.1).
CANCELLABLE = IN_HAND | LOST | {Status.CANCELLATION_DUE}
NOT_HANDED_OUT_MONTHS = 6  # A21.1
TEMPORARY_LOSS_DAYS = 15  # A13.3, natural days
BANK_CHANGE_LOCK_MONTHS = 6  # A16.7
EMPLOYER_HANDOUT_DAYS = 30  # A7.4, natural days
REISSUE_WORKING_DAYS = 4  # A22.2: a reissue or replacement not made on the spot


class Delivery(enum.Enum):
    BRANCH_PICKUP = "BRANCH_PICKUP"
    MAIL = "MAIL"
    EMPLOYER = "EMPLOYER"


class CollectionMethod(enum.Enum):
    AT_BRANCH = "AT_BRANCH"
    MAIL_SENT = "MAIL_SENT"
    MAIL_DELIVERED = "MAIL_DELIVERED"
    BY_EMPLOYER = "BY_EMPLOYER"


@dataclass(frozen=True)
class Transition:
    from_status: Status | None
    to_status: Status
    at: dt.datetime
    channel: Channel
    outlet_id: str
    operator_id: str
    rule: str
    reason: str


@dataclass(frozen=True)
class Notice:
    at: dt.datetime
    recipient: str  # "person" or "employer"
    text: str
    rule: str


@dataclass(frozen=True)
class Card:
    card_id: str
    status: Status
    bank_code: str
    delivery: Delivery
    pickup_branch_id: str
    applied_at: dt.datetime
    holder_name: str
    person_id: str = ""
    employer_id: str = ""
    batch_id: str = ""
    due_date: dt.date | None = None
    card_number: str = ""
    refusal_reason: str = ""
    refusal_rule: str = ""
    refusal_message: str = ""
    status_since: dt.datetime | None = None
    # The state a lost card returns to when the loss ends (A13.3, A14.1).
    status_before_loss: Status | None = None
    # The card that replaced this one after a reissue (A14.2).
    replaced_by: str = ""
    # For a reissued or replacing card: the card it replaces (A16.5).
    replaces_card_id: str = ""
    # The financial account the card carries.
    account_id: str = ""
    transitions: tuple[Transition, ...] = field(default=(), compare=False)


@dataclass
class Change:
    """A card's new state and what to record with it."""

    card: Card
    transitions: list[Transition] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


def _move(
    card: Card, to: Status, who: Caller, now: dt.datetime, rule: str, reason: str, **changes: object
) -> Change:
    moved = replace(card, status=to, status_since=now, **changes)  # type: ignore[arg-type]
    transition = Transition(
        card.status, to, now, who.channel, who.outlet_id, who.operator_id, rule, reason
    )
    return Change(moved, [transition])


def wrong_state(card: Card, action: str, reason: str, rule: str) -> DomainError:
    return DomainError(
        reason,
        f"cannot {action}: the card is {card.status.value.replace('_', ' ').lower()}",
        rule=rule,
        metadata={"status": card.status.value},
    )


# --- the application (driven by the application saga) -----------------------------------------


def verified(card: Card, person_id: str, who: Caller, now: dt.datetime) -> Change:
    """Identity verified and the person's place reserved (A4.1, A4.2)."""
    if card.status is not Status.APPLIED:
        return Change(card)
    return _move(card, Status.VERIFYING, who, now, "A4.1", "identity verified", person_id=person_id)


def ordered(
    card: Card, due_date: dt.date, who: Caller, now: dt.datetime, rule: str = "A22.1"
) -> Change:
    """The bank ordered the card, due by ``due_date`` (A22.1; A22.2 for a reissue or
    replacement)."""
    if card.status is not Status.VERIFYING:
        return Change(replace(card, due_date=due_date))  # the bank's notice came first
    return _move(
        card,
        Status.IN_PRODUCTION,
        who,
        now,
        rule,
        f"ordered from the bank, due by {due_date.isoformat()}",
        due_date=due_date,
    )


def due_date_recounted(card: Card, due_date: dt.date, now: dt.datetime) -> Change:
    """A22.2 counted again once the State Council's holiday schedule is loaded: a card still in
    production is due by ``due_date``; the holder is told when the day moved."""
    if card.status is not Status.IN_PRODUCTION or card.due_date == due_date:
        return Change(card)
    notice = Notice(
        now,
        "person",
        f"Your card is now due by {due_date.isoformat()}: its {REISSUE_WORKING_DAYS} working "
        "days are counted on the State Council's published holiday schedule.",
        "A22.2",
    )
    return Change(replace(card, due_date=due_date), notices=[notice])


def refused(
    card: Card, reason: str, rule: str, message: str, who: Caller, now: dt.datetime
) -> Change:
    """The application saga ended in a refusal; nothing it reserved is left behind."""
    if card.status is Status.REFUSED:
        return Change(card)
    return _move(
        card,
        Status.REFUSED,
        who,
        now,
        rule,
        f"application refused: {reason}",
        refusal_reason=reason,
        refusal_rule=rule,
        refusal_message=message,
    )


def produced(card: Card, card_number: str, who: Caller, now: dt.datetime) -> Change:
    """The bank made the card; the person or the employer is told where to collect (A7.1)."""
    if card.status not in (Status.VERIFYING, Status.IN_PRODUCTION):
        if card.card_number == card_number:
            return Change(card)  # told again
        raise wrong_state(card, "record production", "NOT_IN_PRODUCTION", "A7.1")
    change = _move(
        card, Status.READY, who, now, "A7.1", "card made by the bank", card_number=card_number
    )
    if card.delivery is Delivery.EMPLOYER:
        text = (
            f"The social security cards of your employees are ready: collect card "
            f"{mask_card_number(card_number)} at branch {card.pickup_branch_id} with your business "
            "licence and, unless the legal representative comes, an authorisation letter."
        )
        change.notices.append(Notice(now, "employer", text, "A7.1"))
    elif card.delivery is Delivery.MAIL:
        text = "Your social security card is made and will be mailed to your address on file."
        change.notices.append(Notice(now, "person", text, "A7.1"))
    else:
        text = (
            f"Your social security card is ready: collect it at branch {card.pickup_branch_id} "
            "with your ID document."
        )
        change.notices.append(Notice(now, "person", text, "A7.1"))
    return change


# --- delivery and activation (A7.2, A7.3, A8.1) -----------------------------------------------


_COLLECTION: dict[CollectionMethod, tuple[Delivery, frozenset[Status], Status, str]] = {
    CollectionMethod.AT_BRANCH: (
        Delivery.BRANCH_PICKUP,
        frozenset({Status.READY}),
        Status.COLLECTED,
        "A7.2",
    ),
    CollectionMethod.MAIL_SENT: (Delivery.MAIL, frozenset({Status.READY}), Status.MAILED, "A7.2"),
    CollectionMethod.MAIL_DELIVERED: (
        Delivery.MAIL,
        frozenset({Status.MAILED}),
        Status.COLLECTED,
        "A7.2",
    ),
    CollectionMethod.BY_EMPLOYER: (
        Delivery.EMPLOYER,
        frozenset({Status.READY}),
        Status.WITH_EMPLOYER,
        "A7.3",
    ),
}


def collect(card: Card, method: CollectionMethod, who: Caller, now: dt.datetime) -> Change:
    """A7.2 / A7.3: the card reaches its holder, the post, or the employer."""
    delivery, sources, target, rule = _COLLECTION[method]
    if card.delivery is not delivery:
        raise DomainError(
            "WRONG_DELIVERY",
            f"this card is delivered by {card.delivery.value.replace('_', ' ').lower()}",
            rule=rule,
        )
    if card.status is target:
        return Change(card)
    if card.status not in sources:
        raise wrong_state(card, "record this collection", "NOT_READY_FOR_COLLECTION", rule)
    reason = {
        CollectionMethod.AT_BRANCH: "collected by the holder at the branch",
        CollectionMethod.MAIL_SENT: "handed to the post",
        CollectionMethod.MAIL_DELIVERED: "delivered by the post",
        CollectionMethod.BY_EMPLOYER: "collected by the employer",
    }[method]
    return _move(card, target, who, now, rule, reason)


def hand_out(card: Card, employer_id: str, who: Caller, now: dt.datetime) -> Change:
    """A7.3: the employer hands the card to its employee."""
    if card.employer_id != employer_id:
        raise DomainError(
            "NOT_THE_EMPLOYER",
            "only the employer that applied may hand this card out",
            kind=Kind.PERMISSION,
            rule="A7.3",
        )
    if card.status is Status.COLLECTED:
        return Change(card)
    if card.status is not Status.WITH_EMPLOYER:
        raise wrong_state(card, "hand the card out", "NOT_WITH_EMPLOYER", "A7.3")
    return _move(card, Status.COLLECTED, who, now, "A7.3", "handed to the employee by the employer")


def activate(card: Card, who: Caller, now: dt.datetime) -> Change:
    """A8.1: the SS function is activated only once the holder has the card."""
    if card.status is Status.ACTIVE:
        return Change(card)
    if card.status is not Status.COLLECTED:
        raise wrong_state(card, "activate", "NOT_COLLECTED", "A8.1")
    return _move(card, Status.ACTIVE, who, now, "A8.1", "social security function activated")


# --- loss and unlock (A13, A14) -------------------------------------------------------------


def report_temporary_loss(card: Card, who: Caller, now: dt.datetime) -> Change:
    """A13.1 / A13.2: the SS function stops at once; A13.3's clock starts."""
    if card.status in LOST:
        return Change(card)  # already lost: reporting again changes nothing
    if card.status not in IN_HAND:
        raise wrong_state(card, "report a loss", "NOT_IN_HOLDERS_HANDS", "A13.1")
    return _move(
        card,
        Status.TEMPORARILY_LOST,
        who,
        now,
        "A13.2",
        "temporary loss reported; SS and financial functions suspended",
        status_before_loss=card.status,
    )


def report_formal_loss(card: Card, financial_too: bool, who: Caller, now: dt.datetime) -> Change:
    """A13.1 / A13.4: a formal loss, of the SS function only or of the financial one too."""
    if card.status is Status.FORMALLY_LOST:
        return Change(card)
    if card.status is not Status.TEMPORARILY_LOST and card.status not in IN_HAND:
        raise wrong_state(card, "report a loss", "NOT_IN_HOLDERS_HANDS", "A13.1")
    what = "SS and financial functions" if financial_too else "SS function only"
    return _move(
        card,
        Status.FORMALLY_LOST,
        who,
        now,
        "A13.4",
        f"formal loss reported ({what})",
        status_before_loss=card.status_before_loss or card.status,
    )


def temporary_loss_lapses(reported: dt.datetime) -> dt.datetime:
    """A13.3: when a temporary loss reported at ``reported`` runs out. Under the Civil Code
    (art. 201, 203) a period of days does not count its first day and ends at 24:00 of its last:
    a loss reported on 1 March lasts to the end of 16 March, Beijing time."""
    return day_after(beijing_date(reported) + dt.timedelta(days=TEMPORARY_LOSS_DAYS))


def _financial_stays_suspended(card: Card) -> str:
    # A13.3 restores only the SS function by itself; the financial function, suspended with it
    # (A13.2), is the issuing bank's to unlock (A20.1).
    return (
        f"The financial function stays suspended until you have it unlocked at a branch of "
        f"{card.bank_code}."
    )


def expire_temporary_loss(card: Card, who: Caller, now: dt.datetime) -> Change:
    """A13.3: 15 natural days without a formal loss: the SS function restores itself, and the
    holder is told that the financial function does not."""
    if card.status is not Status.TEMPORARILY_LOST:
        return Change(card)  # a formal loss came, or the loss ended otherwise
    change = _move(
        card,
        card.status_before_loss or Status.ACTIVE,
        who,
        now,
        "A13.3",
        "temporary loss expired after 15 natural days; SS function restored",
        status_before_loss=None,
    )
    text = (
        f"Your temporary loss report of {_day(card.status_since)} has run its "
        f"{TEMPORARY_LOSS_DAYS} natural days without a formal loss: the social security "
        f"function of your card works again. {_financial_stays_suspended(card)}"
    )
    change.notices.append(Notice(now, "person", text, "A13.3"))
    return change


def in_use(card: Card | None) -> bool:
    """The card serves its holder: a service password check (A12.1) stands only for such a
    card, never for one lost (A13.2), replaced (A16.5), cancelled (A19.1) or whose holder died
    (A21.2)."""
    return card is not None and card.status in IN_HAND


def unlock(card: Card, who: Caller, now: dt.datetime) -> Change:
    """A14.1: a found card is unlocked at once, only from formal loss (A14.3), never after a
    reissue (A14.2)."""
    if card.replaced_by:
        raise DomainError(
            "CARD_REISSUED",
            "the card has been reissued and can no longer be unlocked",
            rule="A14.2",
        )
    if card.status is not Status.FORMALLY_LOST:
        raise wrong_state(card, "unlock", "NOT_FORMALLY_LOST", "A14.3")
    return _move(
        card,
        card.status_before_loss or Status.ACTIVE,
        who,
        now,
        "A14.1",
        "unlocked: the card was found",
        status_before_loss=None,
    )


# --- reissue and replacement (A15, A16) -------------------------------------------------------


def check_reissue(old: Card) -> None:
    """A15.1: a reissue follows a formal loss, once."""
    if old.replaced_by:
        raise DomainError("ALREADY_REISSUED", "the card was already reissued", rule="A15.1")
    if old.status is not Status.FORMALLY_LOST:
        raise wrong_state(old, "reissue", "NOT_FORMALLY_LOST", "A15.1")


def check_replacement(old: Card, reason: ReplacementReason | None) -> None:
    """A16.1: only for a damaged face, a failed chip or changed basic information, and only for
    a card in its holder's hands."""
    if reason is None:
        raise DomainError(
            "INVALID_REPLACEMENT_REASON",
            "a card is replaced only for a damaged face, a failed chip or changed basic "
            "information",
            kind=Kind.INVALID,
            rule="A16.1",
        )
    if old.replaced_by:
        raise DomainError(
            "REPLACEMENT_IN_PROGRESS", "a replacement for this card already exists", rule="A16.1"
        )
    if old.status not in IN_HAND:
        raise wrong_state(old, "replace the card", "NOT_IN_HOLDERS_HANDS", "A16.1")


def check_replacement_delivery(delivery: Delivery | None) -> None:
    """A16.2: a replacement card is collected at the issuing bank's branch, where the holder
    hands in the old card; it is never mailed."""
    if delivery is Delivery.MAIL:
        raise DomainError(
            "REPLACEMENT_COLLECTED_AT_BRANCH",
            "a replacement card is collected at a branch of the issuing bank, with the ID "
            "document and the old card; it is not mailed",
            kind=Kind.INVALID,
            rule="A16.2",
        )


def check_old_card_presented(card: Card, presented_old_card_id: str) -> None:
    """A16.2 / A16.6: the new card of a replacement is handed over only against the old card,
    which the bank takes back on the spot."""
    if presented_old_card_id.strip() != card.replaces_card_id:
        raise DomainError(
            "OLD_CARD_NOT_PRESENTED",
            "the new card is handed over only against the old card it replaces",
            rule="A16.2",
            violations=(FieldViolation("old_card_id", "must be the card this one replaces"),),
        )


def check_park_pass_move(card: Card) -> None:
    """A16.4: only the new card of a replacement (or reissue) takes over an old card's park
    pass, when it is collected."""
    if not card.replaces_card_id:
        raise DomainError(
            "NO_OLD_CARD",
            "this card replaces no other card: there is no park pass to move",
            kind=Kind.INVALID,
            rule="A16.4",
            violations=(FieldViolation("move_park_pass", "only for a replacing card"),),
        )


def months_later(moment: dt.datetime, months: int) -> dt.datetime:
    """The same day ``months`` later, or the month's last day if it is shorter."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, monthrange(year, month)[1]))


def check_bank_change(last_change: dt.datetime | None, now: dt.datetime) -> None:
    """A16.7: after a change of issuing bank, no further change within 6 months."""
    if last_change is not None and now < months_later(last_change, BANK_CHANGE_LOCK_MONTHS):
        until = months_later(last_change, BANK_CHANGE_LOCK_MONTHS).astimezone(BEIJING).date()
        raise DomainError(
            "BANK_CHANGE_TOO_SOON",
            f"the issuing bank was changed less than 6 months ago; next change from {until}",
            rule="A16.7",
        )


def superseded(old: Card, new_card_id: str) -> Card:
    """The old card has a successor from the moment it is applied for: a reissued card can no
    longer be unlocked (A14.2), a card is not reissued or replaced twice (A15.1, A16.1)."""
    return replace(old, replaced_by=new_card_id)


def successor_refused(old: Card, new_card_id: str) -> Card:
    """The successor's issuance was refused and undone: the old card is as it was before."""
    if old.replaced_by != new_card_id:
        return old
    return replace(old, replaced_by="")


def retire(old: Card, who: Caller, now: dt.datetime) -> Change:
    """A16.5: the old card stops for good once its successor is activated."""
    if old.status is Status.REPLACED:
        return Change(old)
    return _move(
        old,
        Status.REPLACED,
        who,
        now,
        "A16.5",
        "its replacement was activated; this card stops for good",
        status_before_loss=None,
    )


def older_generation_notice(
    card: Card, generation: int, now: dt.datetime, cancelling: bool = False
) -> Notice:
    """A27.3: the holder's 1st / 2nd generation card is not recalled; its SS function stops
    when this card is activated, its financial function only if the holder chose so."""
    account = (
        "As you chose, its bank account is now being closed, its balance paid out as you directed."
        if cancelling
        else "Its bank account stays open unless you ask your bank to cancel it."
    )
    return Notice(
        now,
        "person",
        f"Your generation-{generation} social security card is not taken back, but its social "
        f"security function stops now that this card is active. {account}",
        "A27.3",
    )


def no_older_card_notice(now: dt.datetime) -> Notice:
    """A27.3: the holder asked to cancel an older card's financial function, but the register
    records no 1st / 2nd generation card of theirs: nothing is cancelled."""
    return Notice(
        now,
        "person",
        "No 1st or 2nd generation social security card of yours is on record, so no older "
        "card's bank account was closed; ask the bank that issued it.",
        "A27.3",
    )


def subsidy_notice(now: dt.datetime, rule: str) -> Notice:
    """A15.2 / A16.8: agencies paying subsidies to the old card need the new number."""
    return Notice(
        now,
        "person",
        "Your new card replaces your old one: once you have it, register the new card number "
        "with every agency that pays subsidies or allowances to your card.",
        rule,
    )


# --- deadlines (A7.4, A22) ---------------------------------------------------------------------


def production_overdue(card: Card, now: dt.datetime, rule: str) -> Change:
    """A22.1 / A22.2 / A22.4: a card not made by its due date is flagged to operations with how
    late it is; mailing time does not count, so only a card still in production is late."""
    if card.status is not Status.IN_PRODUCTION or card.due_date is None:
        return Change(card)
    late = (now.astimezone(BEIJING).date() - card.due_date).days
    text = (
        f"Production overdue: card {card.card_id} at {card.bank_code} was due by "
        f"{card.due_date.isoformat()} and is {late} day(s) late."
    )
    return Change(card, notices=[Notice(now, "operations", text, rule)])


def handout_overdue(card: Card, who: Caller, now: dt.datetime) -> Change:
    """A7.4: a card the employer has not handed out within 30 natural days of collecting it
    must go back to the issuing bank: it is flagged and marked for return."""
    if card.status is not Status.WITH_EMPLOYER:
        return Change(card)
    change = _move(
        card,
        Status.RETURN_DUE,
        who,
        now,
        "A7.4",
        f"not handed out within {EMPLOYER_HANDOUT_DAYS} days of collection; to be returned",
    )
    text = (
        f"Card {card.card_id} was not handed to its employee within {EMPLOYER_HANDOUT_DAYS} "
        f"days: return it to the issuing bank {card.bank_code}."
    )
    change.notices.append(Notice(now, "employer", text, "A7.4"))
    return change


def returned_by_employer(card: Card, branch_id: str, who: Caller, now: dt.datetime) -> Change:
    """A7.4: the employer returns a card it did not hand out to the issuing bank, before or
    after its 30 days ran out; the holder then collects it at that branch with the ID document
    (A7.2), as any card waiting at a branch."""
    if card.status not in (Status.WITH_EMPLOYER, Status.RETURN_DUE):
        raise wrong_state(card, "record the employer's return", "NOT_WITH_EMPLOYER", "A7.4")
    change = _move(
        card,
        Status.READY,
        who,
        now,
        "A7.4",
        f"returned to the issuing bank by the employer; waiting at branch {branch_id}",
        delivery=Delivery.BRANCH_PICKUP,
        pickup_branch_id=branch_id,
    )
    text = (
        f"Your employer returned your social security card to {card.bank_code}: collect it at "
        f"branch {branch_id} with your ID document."
    )
    change.notices.append(Notice(now, "person", text, "A7.4"))
    return change


# --- endings (A19, A21) ------------------------------------------------------------------------


def withdraw_not_handed_out(card: Card, who: Caller, now: dt.datetime) -> Change:
    """A21.1: a card with a financial function not handed to its holder within 6 months of
    production is taken back by the bank and destroyed."""
    if card.status not in AWAITING_HOLDER or not card.account_id:
        return Change(card)
    change = _move(
        card,
        Status.WITHDRAWN,
        who,
        now,
        "A21.1",
        f"not handed to its holder within {NOT_HANDED_OUT_MONTHS} months of production",
    )
    text = (
        f"Card {card.card_id} was not handed to its holder within {NOT_HANDED_OUT_MONTHS} months: "
        f"{card.bank_code} takes it back and destroys it."
    )
    change.notices.append(Notice(now, "operations", text, "A21.1"))
    return change


def holder_died(card: Card, who: Caller, now: dt.datetime) -> Change:
    """A21.2: when a holder's death is confirmed, a card not yet handed out stops being issued
    and the bank takes it back; a card in use is marked for cancellation pending the estate's
    visit (A19.1). Cards already ended stay as they are."""
    if card.status in NOT_HANDED_OUT:
        change = _move(
            card, Status.WITHDRAWN, who, now, "A21.2", "the holder died; issuing stopped"
        )
        text = (
            f"The holder of card {card.card_id} died: issuing stopped; {card.bank_code} takes the "
            "card back within 10 working days."
        )
        change.notices.append(Notice(now, "operations", text, "A21.2"))
        return change
    if card.status in IN_HAND | LOST:
        change = _move(
            card,
            Status.CANCELLATION_DUE,
            who,
            now,
            "A21.2",
            "the holder died; to be cancelled when the estate settles the holder's business",
            status_before_loss=None,
        )
        text = (
            "The holder of this card has died. Once the social security and medical insurance "
            "business is settled, a family member or agent cancels the card at a district "
            "outlet or, with its account and transit balance, at the issuing bank."
        )
        change.notices.append(Notice(now, "person", text, "A19.1"))
        return change
    return Change(card)


def cancel(card: Card, financial_too: bool, who: Caller, now: dt.datetime) -> Change:
    """A19.1: the SS function is cancelled; at the issuing bank the financial function and the
    transit balance go with it (the cancellation saga), at a district outlet the account stays
    and the bank suspends its non-counter business six months later (A19.2)."""
    if card.status is Status.SS_CANCELLED:
        return Change(card)
    if card.status not in CANCELLABLE:
        raise wrong_state(card, "cancel", "NOT_CANCELLABLE", "A19.1")
    what = (
        "cancelled with its financial function and transit balance"
        if financial_too
        else "social security function cancelled"
    )
    change = _move(card, Status.SS_CANCELLED, who, now, "A19.1", what, status_before_loss=None)
    if not financial_too:
        text = (
            "The social security function of your card is cancelled. Its bank account stays "
            f"open: close it at {card.bank_code}; six months from now its online, ATM and "
            "third-party payments are suspended."
        )
        change.notices.append(Notice(now, "person", text, "A19.2"))
    return change


def bank_change_lock_ended(card: Card, now: dt.datetime) -> Change:
    """A16.7: six months after a change of issuing bank, the holder may change again."""
    if card.status in (Status.SS_CANCELLED, Status.REPLACED, Status.REFUSED, Status.WITHDRAWN):
        return Change(card)
    text = (
        f"Six months have passed since you changed your issuing bank to {card.bank_code}: you "
        "may change it again when you next replace your card."
    )
    return Change(card, notices=[Notice(now, "person", text, "A16.7")])


def check_card_presented(card: Card, card_number: str, rule: str) -> None:
    """The card presented at a counter is this card: its chip reads the number it was made with."""
    if not card.card_number or card_number.strip() != card.card_number:
        raise DomainError(
            "CARD_MISMATCH",
            "the card presented is not this card",
            kind=Kind.PERMISSION,
            rule=rule,
            violations=(FieldViolation("card_number", "is not this card's number", "MISMATCH"),),
        )


# --- words ------------------------------------------------------------------------------------


def mask_card_number(number: str) -> str:
    if len(number) < 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def _day(moment: dt.datetime | None) -> str:
    return moment.astimezone(BEIJING).date().isoformat() if moment else "an earlier date"


def progress(card: Card) -> str:
    """The card's state in words a hotline operator can read out (A18.1)."""
    since = _day(card.status_since)
    match card.status:
        case Status.APPLIED:
            return f"Application received on {_day(card.applied_at)}; identity being verified."
        case Status.VERIFYING:
            return "Identity verified; the bank is opening the account and ordering the card."
        case Status.IN_PRODUCTION:
            due = card.due_date.isoformat() if card.due_date else "the legal time limit"
            return f"In production at {card.bank_code}; due by {due}."
        case Status.READY if card.delivery is Delivery.MAIL:
            return f"Made on {since}; it will be mailed to the address on file."
        case Status.READY if card.employer_id and card.delivery is Delivery.BRANCH_PICKUP:
            return (
                f"Returned to {card.bank_code} by the employer on {since}; ready for collection "
                f"at branch {card.pickup_branch_id}."
            )
        case Status.READY if card.delivery is Delivery.EMPLOYER:
            return f"Made on {since}; ready for the employer to collect at {card.pickup_branch_id}."
        case Status.READY:
            return f"Made on {since}; ready for collection at branch {card.pickup_branch_id}."
        case Status.MAILED:
            return f"Mailed on {since} to the address on file."
        case Status.WITH_EMPLOYER:
            return f"Collected by the employer on {since}; the employer hands it out."
        case Status.COLLECTED:
            return (
                f"Collected on {since}; activate it online, at a district outlet or at a "
                f"branch of {card.bank_code}."
            )
        case Status.ACTIVE:
            return f"Active since {since}."
        case Status.TEMPORARILY_LOST:
            back = _day(card.status_since and temporary_loss_lapses(card.status_since))
            return (
                f"Reported lost on {since}: the social security and financial functions are "
                f"suspended. Without a formal loss report the social security function works "
                f"again from 00:00 on {back} (Beijing time). {_financial_stays_suspended(card)}"
            )
        case Status.FORMALLY_LOST:
            return (
                f"Formally reported lost on {since}. If found, unlock it at a district outlet "
                f"or at a branch of {card.bank_code}; otherwise apply for a reissue."
            )
        case Status.RETURN_DUE:
            return (
                f"Not handed out by the employer within {EMPLOYER_HANDOUT_DAYS} days; it is to "
                f"be returned to {card.bank_code}, where the holder can then collect it."
            )
        case Status.REPLACED:
            return f"Stopped for good on {since}: replaced by a new card."
        case Status.WITHDRAWN:
            return f"Withdrawn on {since}: never handed out; {card.bank_code} takes it back."
        case Status.CANCELLATION_DUE:
            return (
                f"Stopped on {since}: the holder has died; to be cancelled once the holder's "
                "business is settled."
            )
        case Status.SS_CANCELLED:
            return f"Cancelled on {since}."
        case Status.REFUSED:
            rule = f" (rule {card.refusal_rule})" if card.refusal_rule else ""
            return f"Application refused: {card.refusal_message}{rule}."
    return card.status.value
