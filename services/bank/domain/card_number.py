"""Card numbers: 19 digits, ``9`` + the bank's 3-digit number + a 14-digit serial + a Luhn check
digit. Each bank's serials come from one counter row in the database, so numbers never collide;
the bank number is given to a bank when its first branch is registered."""

from __future__ import annotations

from services.platform.errors import DomainError, Kind

LENGTH = 19
PREFIX = "9"
MAX_BANK_NUMBER = 999
SERIAL_DIGITS = 14
MAX_SERIAL = 10**SERIAL_DIGITS - 1


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload`` + digit pass the Luhn (mod 10) check."""
    if not payload.isascii() or not payload.isdigit():
        raise ValueError("expected ASCII digits")
    total = 0
    # The check digit will sit rightmost, so the payload's rightmost digit is doubled.
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return (
        len(number) >= 2
        and number.isascii()
        and number.isdigit()
        and luhn_check_digit(number[:-1]) == number[-1]
    )


def card_number(bank_number: int, serial: int) -> str:
    """The card number of the bank's ``serial``-th card."""
    if not 1 <= bank_number <= MAX_BANK_NUMBER:
        raise ValueError(f"bank number {bank_number} out of range")
    if not 1 <= serial <= MAX_SERIAL:
        raise DomainError(
            "CARD_NUMBERS_EXHAUSTED",
            "the bank has used every card number of its range",
            kind=Kind.EXHAUSTED,
        )
    payload = f"{PREFIX}{bank_number:03d}{serial:0{SERIAL_DIGITS}d}"
    return payload + luhn_check_digit(payload)


def next_bank_number(highest_in_use: int | None) -> int:
    """The number for a newly registered bank."""
    number = (highest_in_use or 0) + 1
    if number > MAX_BANK_NUMBER:
        raise DomainError(
            "BANK_NUMBERS_EXHAUSTED",
            f"at most {MAX_BANK_NUMBER} banks can issue card numbers",
            kind=Kind.EXHAUSTED,
        )
    return number
