"""The park annual pass without I/O: A11.1, A11.2, A16.4."""

from __future__ import annotations

import datetime as dt

import pytest

from services.platform.clock import BEIJING
from services.platform.errors import DomainError, Kind
from services.transit.domain import park_pass as p


def test_A11_2_only_the_park_pass_flag_makes_a_holder_eligible() -> None:
    p.check_eligible(frozenset({"PARK_PASS", "ELDERLY"}))
    with pytest.raises(DomainError) as excinfo:
        p.check_eligible(frozenset({"ELDERLY", "DISABLED"}))
    assert (excinfo.value.reason, excinfo.value.rule) == ("NOT_ELIGIBLE_FOR_PARK_PASS", "A11.2")


def test_A11_1_the_pass_is_valid_for_the_beijing_calendar_year() -> None:
    # 31 December 17:00 UTC is already 1 January in Beijing.
    moment = dt.datetime(2026, 12, 31, 17, 0, tzinfo=dt.UTC)
    bought = p.purchase(None, "pass-1", "card-1", "PARK_OUTLET", "P-1", moment)
    assert bought.year == 2027
    assert (bought.valid_from, bought.valid_until) == (dt.date(2027, 1, 1), dt.date(2027, 12, 31))
    late = dt.datetime(2026, 12, 31, 23, 59, tzinfo=BEIJING)
    assert p.pass_year(late) == 2026


def test_A11_1_one_pass_per_card_per_year() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    held = p.purchase(None, "pass-1", "card-1", "PARK_OUTLET", "", now)
    with pytest.raises(DomainError) as excinfo:
        p.purchase(held, "pass-2", "card-1", "PARK_OUTLET", "", now)
    assert (excinfo.value.reason, excinfo.value.kind) == (
        "PARK_PASS_ALREADY_HELD",
        Kind.ALREADY_EXISTS,
    )


def test_A16_4_a_moved_pass_remembers_the_card_it_was_bought_for_and_can_move_back() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    held = p.purchase(None, "pass-1", "old", "PARK_OUTLET", "", now)
    moved = p.moved(held, "new", now)
    assert (moved.card_id, moved.original_card_id, moved.pass_id) == ("new", "old", "pass-1")
    back = p.moved(moved, "old", now)
    assert (back.card_id, back.original_card_id) == ("old", "")
    with pytest.raises(DomainError) as excinfo:
        p.check_transfer("old", "new", {2026})
    assert excinfo.value.reason == "PARK_PASS_ALREADY_HELD"
