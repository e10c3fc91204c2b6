"""The channel matrix of A3.1: the one place that knows which channel may do what.

Every card operation asks ``check`` before anything else. A channel missing from an
operation's row is refused PERMISSION_DENIED ``CHANNEL_NOT_ALLOWED`` (rule A3.1); a bank
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
}


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
