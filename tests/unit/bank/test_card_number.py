"""Card numbers (services/bank/domain/card_number.py): 19 digits, the bank's prefix, Luhn-valid."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.bank.domain.card_number import (
    MAX_SERIAL,
    card_number,
    luhn_check_digit,
    luhn_valid,
    next_bank_number,
)
from services.platform.errors import DomainError


def test_known_luhn_numbers() -> None:
    assert luhn_check_digit("7992739871") == "3"
    assert luhn_valid("79927398713")
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


@given(bank=st.integers(1, 999), serial=st.integers(1, MAX_SERIAL))
def test_generated_numbers_are_19_digit_luhn_valid_with_the_bank_prefix(
    bank: int, serial: int
) -> None:
    number = card_number(bank, serial)
    assert len(number) == 19 and number.isdigit()
    assert number.startswith(f"9{bank:03d}")
    assert luhn_valid(number)


@given(bank=st.integers(1, 999), serial=st.integers(1, MAX_SERIAL - 1))
def test_consecutive_serials_give_different_numbers(bank: int, serial: int) -> None:
    assert card_number(bank, serial) != card_number(bank, serial + 1)


@given(number=st.from_regex(r"9[0-9]{18}", fullmatch=True), position=st.integers(0, 18))
def test_a_single_mistyped_digit_is_detected(number: str, position: int) -> None:
    valid = number[:-1] + luhn_check_digit(number[:-1])
    wrong = str((int(valid[position]) + 1) % 10)
    assert not luhn_valid(valid[:position] + wrong + valid[position + 1 :])


def test_a_bank_beyond_its_serial_range_is_refused() -> None:
    with pytest.raises(DomainError) as excinfo:
        card_number(1, MAX_SERIAL + 1)
    assert excinfo.value.reason == "CARD_NUMBERS_EXHAUSTED"


def test_bank_numbers_count_up_to_999() -> None:
    assert next_bank_number(None) == 1
    assert next_bank_number(41) == 42
    with pytest.raises(DomainError):
        next_bank_number(999)
