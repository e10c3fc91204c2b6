"""The rules of the municipal transit card (市政交通一卡通) that A10.2 adopts, as named values.

Each value names where it comes from. Amounts are in fen (分).
"""

from __future__ import annotations

FEN_PER_YUAN = 100

# Beijing 市政交通一卡通: a card holds at most 1,000 yuan (the issuer's published balance cap for
# an ordinary card). A10.2 "a balance cap".
BALANCE_CAP_FEN = 1_000 * FEN_PER_YUAN

# 一卡通 top-ups are taken in whole yuan (kiosks and counters accept notes and whole-yuan
# amounts). A10.2 "whole-yuan top-ups".
TOP_UP_UNIT_FEN = FEN_PER_YUAN

# The largest single top-up: no more than the card can ever hold (the balance cap above), so
# one top-up never asks for money the cap would refuse on an empty card.
MAX_TOP_UP_FEN = BALANCE_CAP_FEN

# Card states (the card service's CardStatus names) in which the card is in its holder's hands
# and may be topped up (A10.1: "after collection").
COLLECTED_STATES = frozenset({"COLLECTED", "ACTIVE"})

# States before the holder has the card: not collected yet (A10.1).
BEFORE_COLLECTION = frozenset(
    {
        "APPLIED",
        "VERIFYING",
        "IN_PRODUCTION",
        "READY",
        "MAILED",
        "WITH_EMPLOYER",
        "RETURN_DUE",
    }
)

# Reported lost: top-ups stop at once (A13.2) until the card is unlocked (A14.1).
LOST_STATES = frozenset({"TEMPORARILY_LOST", "FORMALLY_LOST"})

# Any other state (REPLACED, REFUSED, WITHDRAWN, CANCELLATION_DUE, SS_CANCELLED, and any state
# added later) is a card replaced, cancelled or invalid: it takes no top-up (A10.2).

# The park annual pass (公园年票) is valid for one calendar year, 1 January to 31 December in
# Beijing (A11.1, "a calendar year's validity"); one pass per card per year.
PARK_PASS_PER_CARD_PER_YEAR = 1
