"""The channel matrix of A3.1: the one place in the suite that knows which channel may do what.

The card, bank and transit services all ask ``check`` before anything else. A channel missing
from an operation's row is refused PERMISSION_DENIED ``CHANNEL_NOT_ALLOWED`` (rule A3.1); a bank
branch that is allowed only as the card's issuing bank must present a credential whose
``bank_code`` is the card's bank. INTERNAL callers (other sscard services, the scheduler,
logistics) are allowed only where a row names INTERNAL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.platform.auth import Caller, Channel
from services.platform.errors import DomainError, Kind


class Operation(enum.Enum):
    APPLY = "apply (申领)"
    APPLY_BATCH = "employer collective application (集体申领)"
    ACTIVATE = "activate the SS function (启用)"
    TEMPORARY_LOSS = "temporary loss (临时挂失)"
    FORMAL_LOSS = "formal loss (正式挂失)"
    UNLOCK = "unlock after formal loss (解挂)"
    REISSUE = "reissue (补领)"
    REPLACE = "replace (换领)"
    CANCEL = "cancel (注销)"
    SERVICE_PASSWORD_CHANGE = "service password change"
    SERVICE_PASSWORD_RESET = "service password reset"
    QUERY = "status / progress query"
    INFO_CHANGE = "non-basic information change"
    RECORD_COLLECTION = "hand a card over at the counter"
    RECORD_MAILING = "record a card mailed or delivered by the post"
    RECORD_HANDOUT = "employer hands a card to its employee"
    RECORD_EMPLOYER_RETURN = "employer returns a card it did not hand out (退回)"
    # transit (A10, A11, A16.3, A19.1)
    TOP_UP = "transit top-up (充值)"
    TRANSIT_REFUND = "transit balance refund (退资)"
    PARK_PASS = "park annual pass purchase (公园年票)"
    # the issuing bank's financial function (A9, A12.3, A20.1, A25.1)
    ACTIVATE_FINANCIAL = "activate the financial function (金融功能启用)"
    FINANCIAL_SERVICE = "financial loss, unlock, close, reserved phone, financial password"
    HOME_SERVICE = "book home service (上门服务)"
    COUNTER_PAYMENT = "a payment or deposit at the bank's counter"
    NON_COUNTER_PAYMENT = "an online banking, ATM or third-party payment"


class Reach(enum.Enum):
    """How far a channel's permission goes."""

    ANY = "any"  # any outlet of the channel
    ISSUING_BANK = "issuing bank"  # only a branch of the card's issuing bank
    SS_ONLY = "SS function only"  # the outlet may act on the SS function alone (A13.4, A19.1)


@dataclass(frozen=True)
class Permission:
    channel: Channel
    reach: Reach


ONLINE = Channel.ONLINE
DISTRICT = Channel.DISTRICT_OUTLET
BRANCH = Channel.BANK_BRANCH
HOTLINE = Channel.HOTLINE
TRANSIT_OUTLET = Channel.TRANSIT_OUTLET
TRANSIT_APP = Channel.TRANSIT_APP
PARK_OUTLET = Channel.PARK_OUTLET
BANK_HOTLINE = Channel.BANK_HOTLINE
INTERNAL = Channel.INTERNAL
ANY, ISSUING, SS = Reach.ANY, Reach.ISSUING_BANK, Reach.SS_ONLY

MATRIX: dict[Operation, dict[Channel, Reach]] = {
    Operation.APPLY: {ONLINE: ANY, DISTRICT: ANY, BRANCH: ANY},
    Operation.APPLY_BATCH: {ONLINE: ANY, BRANCH: ANY},  # A6.1 online, A6.2 at a bank branch
    Operation.ACTIVATE: {ONLINE: ANY, DISTRICT: ANY, BRANCH: ISSUING},
    Operation.TEMPORARY_LOSS: {ONLINE: ANY, DISTRICT: ANY, BRANCH: ANY, HOTLINE: ANY},
    Operation.FORMAL_LOSS: {DISTRICT: SS, BRANCH: ISSUING},
    Operation.UNLOCK: {DISTRICT: SS, BRANCH: ISSUING},
    Operation.REISSUE: {ONLINE: ANY, BRANCH: ISSUING},
    Operation.REPLACE: {ONLINE: ANY, BRANCH: ISSUING},
    Operation.CANCEL: {DISTRICT: SS, BRANCH: ISSUING},
    Operation.SERVICE_PASSWORD_CHANGE: {ONLINE: ANY, DISTRICT: ANY, BRANCH: ISSUING},
    Operation.SERVICE_PASSWORD_RESET: {ONLINE: ANY, DISTRICT: ANY, BRANCH: ISSUING},
    Operation.QUERY: {ONLINE: ANY, DISTRICT: ANY, BRANCH: ANY, HOTLINE: ANY, BANK_HOTLINE: ANY},
    Operation.INFO_CHANGE: {ONLINE: ANY, DISTRICT: ANY, BRANCH: ANY},
    # A7.2 / A7.3: a card is handed over at a counter of the issuing bank ...
    Operation.RECORD_COLLECTION: {BRANCH: ISSUING},
    # ... or its mailing is reported by the bank or by the post through an internal system.
    Operation.RECORD_MAILING: {BRANCH: ISSUING, INTERNAL: ANY},
    Operation.RECORD_HANDOUT: {ONLINE: ANY, BRANCH: ANY},  # A7.3: the employer's credential
    # A7.4: a card the employer did not hand out goes back to the issuing bank's counter.
    Operation.RECORD_EMPLOYER_RETURN: {BRANCH: ISSUING},
    # A10.1: any cooperating bank's branch, a transit outlet or the transit app.
    Operation.TOP_UP: {BRANCH: ANY, TRANSIT_OUTLET: ANY, TRANSIT_APP: ANY},
    # 退资 is done at a bank branch; replacement (A16.3) and cancellation (A19.1) refund through
    # the card service's sagas (INTERNAL).
    Operation.TRANSIT_REFUND: {BRANCH: ANY, INTERNAL: ANY},
    # A11.1: a park pass outlet or the issuing bank's branch.
    Operation.PARK_PASS: {PARK_OUTLET: ANY, BRANCH: ISSUING},
    # A9.1: only at a counter of the issuing bank.
    Operation.ACTIVATE_FINANCIAL: {BRANCH: ISSUING},
    # A20.1, A12.3: the issuing bank's own rules, at its counter.
    Operation.FINANCIAL_SERVICE: {BRANCH: ISSUING},
    # A20.1: money moved at a counter is the issuing bank's own counter business ...
    Operation.COUNTER_PAYMENT: {BRANCH: ISSUING},
    # ... while online banking, ATM and third-party payments reach the ledger from the bank's
    # own core system (and the suite's services), never from a counter nor from the HR bureau's
    # online channel (A4.5, A19.2).
    Operation.NON_COUNTER_PAYMENT: {INTERNAL: ANY, BANK_HOTLINE: ANY},
    # A25.1: booked at the issuing bank's branch, its phone service, or online.
    Operation.HOME_SERVICE: {BRANCH: ISSUING, BANK_HOTLINE: ANY, ONLINE: ANY},
}


def allows(operation: Operation, channel: Channel) -> bool:
    """Whether ``operation``'s row names ``channel`` at all."""
    return channel in MATRIX[operation]


def check(operation: Operation, caller: Caller, card_bank: str | None = None) -> Reach:
    """The caller's reach for ``operation``, or PERMISSION_DENIED CHANNEL_NOT_ALLOWED (A3.1).

    ``card_bank`` is the card's issuing bank, where the operation concerns an existing card.
    """
    reach = MATRIX[operation].get(caller.channel)
    if reach is None:
        raise DomainError(
            "CHANNEL_NOT_ALLOWED",
            f"{operation.value} is not offered through {caller.channel.value}",
            kind=Kind.PERMISSION,
            rule="A3.1",
            metadata={"channel": caller.channel.value},
        )
    if reach is Reach.ISSUING_BANK and card_bank is not None and caller.bank_code != card_bank:
        raise DomainError(
            "CHANNEL_NOT_ALLOWED",
            f"{operation.value} at a bank branch is for the card's issuing bank only",
            kind=Kind.PERMISSION,
            rule="A3.1",
            metadata={"channel": caller.channel.value},
        )
    return reach
