"""Suspicious-transaction monitoring (services/bank/domain/monitoring.py, A4.5): each rule trips
on its pattern and not one step below any of its thresholds, a finding names only the movements
of its pattern, the same pattern found again keeps its dedupe key, thresholds come from
SSCARD_BANK_MONITORING, and summaries never carry an account-like number."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.bank.domain import monitoring
from services.bank.domain.monitoring import (
    JUST_UNDER_THRESHOLD,
    LARGE_SOON_AFTER_OPENING,
    LOOKBACK,
    MANY_COUNTERPARTIES,
    NIGHT_BURST,
    RULES,
    SMALL_CREDITS_THEN_SWEEP,
    AccountProfile,
    Finding,
    Movement,
    Thresholds,
    evaluate,
)
from services.platform.clock import BEIJING

DAY = dt.datetime(2026, 3, 2, 10, 0, tzinfo=BEIJING)  # a Monday morning, Beijing time
OLD = AccountProfile("acct-1", dt.datetime(2025, 6, 1, tzinfo=BEIJING))  # long open
DEFAULTS = Thresholds()
MINUTE, HOUR = dt.timedelta(minutes=1), dt.timedelta(hours=1)
PAYERS = [f"62220200000000{i:05d}" for i in range(30)]  # account-like counterparties


def mv(
    entry_id: str, yuan: float, at: dt.datetime, counterparty: str = "", non_counter: bool = True
) -> Movement:
    return Movement(entry_id, round(yuan * 100), counterparty, non_counter, at)


def run(
    ledger: Sequence[Movement],
    profile: AccountProfile = OLD,
    thresholds: Thresholds = DEFAULTS,
) -> list[Finding]:
    """Evaluate the last movement of ``ledger`` against the ones before it, given shuffled."""
    *history, new = ledger
    return evaluate(profile, list(reversed(history)), new, thresholds)


def rules(findings: Sequence[Finding]) -> list[str]:
    return [f.rule for f in findings]


def only(findings: Sequence[Finding], rule: str) -> Finding:
    [finding] = [f for f in findings if f.rule == rule]
    return finding


def near_miss(
    ledger: Sequence[Movement],
    rule: str,
    relaxed: dict[str, object] | None,
    profile: AccountProfile = OLD,
) -> None:
    """Nothing is raised, and relaxing the one threshold it misses (when it is one) trips it."""
    assert run(ledger, profile) == []
    if relaxed is not None:
        assert rule in rules(run(ledger, profile, Thresholds.from_env(env(relaxed))))


# --- SMALL_CREDITS_THEN_SWEEP ----------------------------------------------------------------


def sweep_ledger(
    credits: int = 10,
    credit_yuan: float = 500,
    payers: int = 5,
    swept_yuan: float = 4_000,
    gap: dt.timedelta = 120 * MINUTE,
    first_before_last: dt.timedelta = 9 * HOUR,
) -> list[Movement]:
    """``credits`` small credits, the first ``first_before_last`` before the last and the rest
    hourly, then one debit ``gap`` after the last credit."""
    last = DAY + 9 * HOUR
    times = [last - first_before_last] + [
        last - (credits - 2 - i) * HOUR for i in range(credits - 1)
    ]
    ledger = [mv(f"c{i}", credit_yuan, at, PAYERS[i % payers]) for i, at in enumerate(times)]
    return [*ledger, mv("out", -swept_yuan, last + gap, "6217000000000000999")]


def test_A4_5_SMALL_CREDITS_THEN_SWEEP_trips_at_every_threshold() -> None:
    """10 credits of 500 yuan from 5 payers within 9 h, 4,000 yuan (80%) out 2 h after the last
    (A4.5)."""
    ledger = sweep_ledger()
    findings = run(ledger)
    assert rules(findings) == [SMALL_CREDITS_THEN_SWEEP]
    finding = findings[0]
    assert finding.entry_ids == tuple(m.entry_id for m in ledger)
    assert finding.freeze is True
    assert finding.dedupe_key == "SMALL_CREDITS_THEN_SWEEP:acct-1:out"
    assert "5,000.00 yuan" in finding.summary and "4,000.00 yuan (80%)" in finding.summary


def test_A4_5_SMALL_CREDITS_THEN_SWEEP_trips_at_the_minimum_sweep() -> None:
    """10 × 250 yuan in, 2,000 yuan out (A4.5)."""
    assert rules(run(sweep_ledger(credit_yuan=250, swept_yuan=2_000))) == [SMALL_CREDITS_THEN_SWEEP]


@pytest.mark.parametrize(
    ("ledger", "relaxed"),
    [
        pytest.param(
            sweep_ledger(credits=9, swept_yuan=4_500),
            {"sweep_min_small_credits": 9},
            id="9-credits",
        ),
        pytest.param(
            sweep_ledger(credit_yuan=500.01, swept_yuan=4_000.08),
            {"sweep_small_credit_max_fen": 50_001},
            id="credits-of-500.01",
        ),
        pytest.param(sweep_ledger(payers=4), {"sweep_min_counterparties": 4}, id="4-payers"),
        pytest.param(
            sweep_ledger(swept_yuan=3_999.99), {"sweep_min_percent": 79}, id="79.99-percent"
        ),
        pytest.param(
            sweep_ledger(gap=121 * MINUTE), {"sweep_within_minutes": 121}, id="121-minutes-later"
        ),
        pytest.param(
            sweep_ledger(first_before_last=24 * HOUR + MINUTE),
            {"sweep_credit_window_hours": 25},
            id="first-credit-24h-1min-early",
        ),
        pytest.param(
            sweep_ledger(credit_yuan=249.99, swept_yuan=1_999.99),
            {"sweep_min_fen": 199_999},
            id="sweep-of-1999.99",
        ),
    ],
)
def test_A4_5_SMALL_CREDITS_THEN_SWEEP_near_misses_do_not_trip(
    ledger: list[Movement], relaxed: dict[str, object]
) -> None:
    """One step below any threshold is ordinary (A4.5)."""
    near_miss(ledger, SMALL_CREDITS_THEN_SWEEP, relaxed)


def test_A4_5_SMALL_CREDITS_THEN_SWEEP_counts_a_sweep_split_over_debits_once() -> None:
    """Two debits of 2,000 yuan sweep it; a third keeps the key of the first (A4.5)."""
    *credits, _ = sweep_ledger()
    last = credits[-1].booked_at
    first_out = mv("out-1", -2_000, last + 10 * MINUTE, "x")
    second_out = mv("out-2", -2_000, last + 30 * MINUTE, "y")
    assert run([*credits, first_out]) == []
    found = only(run([*credits, first_out, second_out]), SMALL_CREDITS_THEN_SWEEP)
    assert found.entry_ids[-2:] == ("out-1", "out-2")
    third = only(
        run([*credits, first_out, second_out, mv("out-3", -100, last + HOUR, "z")]),
        SMALL_CREDITS_THEN_SWEEP,
    )
    assert third.dedupe_key == found.dedupe_key == "SMALL_CREDITS_THEN_SWEEP:acct-1:out-1"


def test_A4_5_SMALL_CREDITS_THEN_SWEEP_names_only_the_small_credits_and_the_sweep() -> None:
    """A salary, a credit of the day before and a later purchase are not part of it (A4.5)."""
    ledger = sweep_ledger()
    early = mv("older", 100, ledger[0].booked_at - 30 * HOUR, PAYERS[9])
    salary = mv("salary", 8_000, ledger[3].booked_at + MINUTE, "employer")
    *credits, out = ledger
    later = mv("coffee", -30, out.booked_at + 3 * HOUR, "shop")
    found = only(run([early, *credits, salary, out]), SMALL_CREDITS_THEN_SWEEP)
    assert found.entry_ids == tuple(m.entry_id for m in ledger)
    assert run([early, *credits, salary, out, later]) == []


# --- NIGHT_BURST -----------------------------------------------------------------------------

NIGHT = dt.datetime(2026, 3, 3, 1, 0, tzinfo=BEIJING)


def night_ledger(
    count: int = 5, start: dt.datetime = NIGHT, span: dt.timedelta = HOUR
) -> list[Movement]:
    step = span / (count - 1)
    return [mv(f"n{i}", -200, start + i * step, "platform") for i in range(count)]


def test_A4_5_NIGHT_BURST_trips_on_5_night_movements_within_an_hour() -> None:
    """01:00 to 02:00 Beijing time (A4.5)."""
    ledger = night_ledger()
    finding = only(run(ledger), NIGHT_BURST)
    assert rules(run(ledger)) == [NIGHT_BURST]
    assert finding.entry_ids == ("n0", "n1", "n2", "n3", "n4")
    assert finding.freeze is False
    assert finding.dedupe_key == "NIGHT_BURST:acct-1:n0"


def test_A4_5_NIGHT_BURST_reads_the_night_in_Beijing_time() -> None:
    """17:00 UTC is 01:00 in Beijing (A4.5)."""
    ledger = night_ledger(start=NIGHT.astimezone(dt.UTC))
    assert rules(run(ledger)) == [NIGHT_BURST]


@pytest.mark.parametrize(
    ("ledger", "relaxed"),
    [
        pytest.param(night_ledger(count=4), {"night_burst_min_movements": 4}, id="4-movements"),
        pytest.param(
            night_ledger(span=61 * MINUTE), {"night_burst_window_minutes": 61}, id="over-61-minutes"
        ),
        pytest.param(night_ledger(start=NIGHT + 4 * HOUR), {"night_end_hour": 7}, id="05-to-06"),
        pytest.param(
            night_ledger(start=NIGHT - 90 * MINUTE), {"night_start_hour": 23}, id="23:30-to-00:30"
        ),
    ],
)
def test_A4_5_NIGHT_BURST_near_misses_do_not_trip(
    ledger: list[Movement], relaxed: dict[str, object]
) -> None:
    """One movement fewer, a minute longer, or partly by day is not a burst (A4.5)."""
    near_miss(ledger, NIGHT_BURST, relaxed)


def test_A4_5_NIGHT_BURST_a_longer_burst_keeps_its_key_and_names_only_night_movements() -> None:
    """The 6th movement joins the burst already raised; day movements are not part (A4.5)."""
    day = [mv("d1", -50, NIGHT - 15 * HOUR, "shop"), mv("d2", -50, NIGHT + 6 * HOUR, "shop")]
    burst = night_ledger()
    first = only(run([day[0], *burst]), NIGHT_BURST)
    sixth = mv("n5", -200, NIGHT + 70 * MINUTE, "platform")
    again = only(run([day[0], *burst, sixth]), NIGHT_BURST)
    assert again.dedupe_key == first.dedupe_key
    assert again.entry_ids == (*first.entry_ids, "n5")
    assert run([day[0], *burst, sixth, day[1]]) == []


# --- LARGE_SOON_AFTER_OPENING ----------------------------------------------------------------

NEW = AccountProfile("acct-2", DAY)


def test_A4_5_LARGE_SOON_AFTER_OPENING_trips_on_one_large_credit() -> None:
    """50,000 yuan credited on the second day (A4.5)."""
    finding = only(
        run([mv("big", 50_000, DAY + 30 * HOUR, "someone")], NEW), LARGE_SOON_AFTER_OPENING
    )
    assert finding.entry_ids == ("big",)
    assert finding.freeze is False
    assert finding.dedupe_key == "LARGE_SOON_AFTER_OPENING:acct-2:opening-credited"
    assert "50,000.00 yuan credited" in finding.summary


def test_A4_5_LARGE_SOON_AFTER_OPENING_trips_on_cumulative_debits() -> None:
    """30,000 + 20,000 yuan out by the 7th day; credits are not counted with them (A4.5)."""
    ledger = [
        mv("in", 60_000, DAY + HOUR, "employer"),
        mv("out-1", -30_000, DAY + 2 * HOUR, "a"),
        mv("small", 200, DAY + 3 * HOUR, "b"),
        mv("out-2", -20_000, DAY + 7 * 24 * HOUR, "c"),
    ]
    finding = only(run(ledger, NEW), LARGE_SOON_AFTER_OPENING)
    assert finding.entry_ids == ("out-1", "out-2")
    assert finding.dedupe_key == "LARGE_SOON_AFTER_OPENING:acct-2:opening-debited"


@pytest.mark.parametrize(
    ("ledger", "relaxed"),
    [
        pytest.param(
            [mv("x", 49_999.99, DAY + HOUR)], {"opening_large_fen": 4_999_999}, id="49999.99"
        ),
        pytest.param(
            [mv("x", 50_000, DAY + 7 * 24 * HOUR + MINUTE)], None, id="7-days-1-minute-later"
        ),
        pytest.param(
            [mv("in", 30_000, DAY + HOUR), mv("out", -30_000, DAY + 2 * HOUR)],
            {"opening_large_fen": 3_000_000},
            id="30000-in-30000-out",
        ),
        pytest.param([mv("x", 50_000, DAY - MINUTE)], None, id="before-opening"),
    ],
)
def test_A4_5_LARGE_SOON_AFTER_OPENING_near_misses_do_not_trip(
    ledger: list[Movement], relaxed: dict[str, object] | None
) -> None:
    """Below 50,000 yuan in one direction, or outside the first 7 days (A4.5)."""
    near_miss(ledger, LARGE_SOON_AFTER_OPENING, relaxed, NEW)


def test_A4_5_LARGE_SOON_AFTER_OPENING_keeps_one_key_for_the_opening() -> None:
    """A later credit of the first week joins the finding; one of the second week does not."""
    big = mv("big", 50_000, DAY + HOUR)
    later = mv("later", 10, DAY + 3 * 24 * HOUR)
    first, again = (
        only(run([big], NEW), LARGE_SOON_AFTER_OPENING),
        only(run([big, later], NEW), LARGE_SOON_AFTER_OPENING),
    )
    assert again.dedupe_key == first.dedupe_key
    assert again.entry_ids == ("big", "later")
    assert run([big, later, mv("week-2", 10, DAY + 8 * 24 * HOUR)], NEW) == []


# --- MANY_COUNTERPARTIES ---------------------------------------------------------------------


def parties_ledger(
    parties: int = 10, span: dt.timedelta = 9 * HOUR, repeats: int = 0
) -> list[Movement]:
    names = [PAYERS[i] for i in range(parties)] + [PAYERS[0]] * repeats
    step = span / (len(names) - 1)
    return [mv(f"p{i}", 100, DAY + i * step, name) for i, name in enumerate(names)]


def test_A4_5_MANY_COUNTERPARTIES_trips_on_10_within_24_hours() -> None:
    """10 distinct counterparties, the first and last 24 h apart (A4.5)."""
    ledger = parties_ledger(span=24 * HOUR)
    finding = only(run(ledger), MANY_COUNTERPARTIES)
    assert rules(run(ledger)) == [MANY_COUNTERPARTIES]
    assert finding.entry_ids == tuple(m.entry_id for m in ledger)
    assert finding.freeze is True
    assert finding.dedupe_key == "MANY_COUNTERPARTIES:acct-1:p0"
    assert finding.summary.startswith("10 distinct counterparties in 10 movements")


@pytest.mark.parametrize(
    ("ledger", "relaxed"),
    [
        pytest.param(
            parties_ledger(parties=9, repeats=3),
            {"counterparties_min": 9},
            id="9-counterparties-12-movements",
        ),
        pytest.param(
            parties_ledger(span=24 * HOUR + MINUTE),
            {"counterparties_window_hours": 25},
            id="over-24h-1min",
        ),
        pytest.param(
            [*parties_ledger(parties=9), mv("cash", 100, DAY + 10 * HOUR)],
            None,
            id="9-plus-no-party",
        ),
    ],
)
def test_A4_5_MANY_COUNTERPARTIES_near_misses_do_not_trip(
    ledger: list[Movement], relaxed: dict[str, object] | None
) -> None:
    """9 counterparties, 10 over a minute more than 24 h, or a movement with no party (A4.5)."""
    near_miss(ledger, MANY_COUNTERPARTIES, relaxed)


def test_A4_5_MANY_COUNTERPARTIES_an_11th_keeps_the_key_and_unrelated_entries_are_left_out() -> (
    None
):
    """A4.5: the pattern grows under the same key; a movement without a party is not in it."""
    ledger = parties_ledger()
    cash = mv("cash", -100, DAY + 30 * MINUTE)
    first = only(run([*ledger[:5], cash, *ledger[5:]]), MANY_COUNTERPARTIES)
    assert "cash" not in first.entry_ids
    eleventh = mv("p10", 100, DAY + 10 * HOUR, PAYERS[10])
    again = only(run([*ledger[:5], cash, *ledger[5:], eleventh]), MANY_COUNTERPARTIES)
    assert again.dedupe_key == first.dedupe_key
    assert again.entry_ids == (*first.entry_ids, "p10")
    assert run([*ledger, eleventh, mv("atm", -100, DAY + 11 * HOUR)]) == []


# --- JUST_UNDER_THRESHOLD --------------------------------------------------------------------


def structuring(first: float, second: float, apart: dt.timedelta = 3 * 24 * HOUR) -> list[Movement]:
    return [mv("s1", first, DAY, non_counter=False), mv("s2", -second, DAY + apart)]


@pytest.mark.parametrize(
    ("first", "second"), [(49_000, 45_000), (45_000, 45_000), (46_000, 49_000)]
)
def test_A4_5_JUST_UNDER_THRESHOLD_trips_on_two_round_amounts_in_the_band(
    first: float, second: float
) -> None:
    """Whole thousands from 45,000 to 49,000 yuan, in or out, twice in 7 days (A4.5)."""
    finding = only(run(structuring(first, second)), JUST_UNDER_THRESHOLD)
    assert rules(run(structuring(first, second))) == [JUST_UNDER_THRESHOLD]
    assert finding.entry_ids == ("s1", "s2")
    assert finding.freeze is False
    assert finding.dedupe_key == "JUST_UNDER_THRESHOLD:acct-1:s1"
    assert "50,000.00 yuan reporting threshold" in finding.summary


@pytest.mark.parametrize(
    ("ledger", "relaxed"),
    [
        pytest.param(
            structuring(44_000, 49_000), {"structuring_band_percent": 12}, id="44000-below-band"
        ),
        pytest.param(
            structuring(49_500, 49_000), {"structuring_round_fen": 50_000}, id="49500-not-round"
        ),
        pytest.param(
            structuring(50_000, 49_000),
            {"structuring_threshold_fen": 5_000_001},
            id="50000-at-the-threshold",
        ),
        pytest.param(
            structuring(49_000, 49_000, 7 * 24 * HOUR + MINUTE), None, id="7-days-1-minute"
        ),
        pytest.param(structuring(49_000, 44_999.99), None, id="one-only"),
    ],
)
def test_A4_5_JUST_UNDER_THRESHOLD_near_misses_do_not_trip(
    ledger: list[Movement], relaxed: dict[str, object] | None
) -> None:
    """A4.5: below the band, not round, at the threshold, or too far apart."""
    near_miss(ledger, JUST_UNDER_THRESHOLD, relaxed)


def test_A4_5_JUST_UNDER_THRESHOLD_a_third_keeps_the_key() -> None:
    """A4.5: structuring continues under the first key; an ordinary payment is not in it."""
    ledger = [*structuring(49_000, 48_000), mv("rent", -3_000, DAY + 4 * 24 * HOUR, "landlord")]
    third = mv("s3", 47_000, DAY + 5 * 24 * HOUR)
    first = only(run(ledger[:2]), JUST_UNDER_THRESHOLD)
    again = only(run([*ledger, third]), JUST_UNDER_THRESHOLD)
    assert again.dedupe_key == first.dedupe_key
    assert again.entry_ids == ("s1", "s2", "s3")
    assert run([*ledger, third, mv("fee", -10, DAY + 6 * 24 * HOUR)]) == []


# --- all rules -------------------------------------------------------------------------------


def test_A4_5_rules_are_enumerated_and_documented_with_their_freeze_default() -> None:
    assert RULES == (
        SMALL_CREDITS_THEN_SWEEP,
        NIGHT_BURST,
        LARGE_SOON_AFTER_OPENING,
        MANY_COUNTERPARTIES,
        JUST_UNDER_THRESHOLD,
    )
    assert {r: DEFAULTS.freezes(r) for r in RULES} == {
        SMALL_CREDITS_THEN_SWEEP: True,
        NIGHT_BURST: False,
        LARGE_SOON_AFTER_OPENING: False,
        MANY_COUNTERPARTIES: True,
        JUST_UNDER_THRESHOLD: False,
    }
    doc = monitoring.__doc__ or ""
    assert all(rule in doc for rule in RULES)
    assert dt.timedelta(days=7) == LOOKBACK


def test_A4_5_evaluating_again_gives_the_same_findings_and_the_new_movement_may_be_in_history() -> (
    None
):
    ledger = sweep_ledger()
    assert run(ledger) == run(ledger)
    assert evaluate(OLD, ledger, ledger[-1], DEFAULTS) == run(ledger)


# --- Thresholds.from_env ---------------------------------------------------------------------


def env(overrides: object) -> dict[str, str]:
    return {"SSCARD_BANK_MONITORING": json.dumps(overrides)}


def test_A4_5_thresholds_default_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSCARD_BANK_MONITORING", raising=False)
    assert Thresholds.from_env() == DEFAULTS
    assert Thresholds.from_env({"SSCARD_BANK_MONITORING": "  "}) == DEFAULTS
    monkeypatch.setenv("SSCARD_BANK_MONITORING", '{"night_freeze": true}')
    assert Thresholds.from_env().night_freeze is True


def test_A4_5_thresholds_are_overridden_by_name_and_change_what_trips() -> None:
    tuned = Thresholds.from_env(env({"sweep_min_small_credits": 9, "sweep_freeze": False}))
    assert (tuned.sweep_min_small_credits, tuned.sweep_freeze) == (9, False)
    assert tuned.night_burst_min_movements == DEFAULTS.night_burst_min_movements
    finding = only(
        run(sweep_ledger(credits=9, swept_yuan=4_500), thresholds=tuned), SMALL_CREDITS_THEN_SWEEP
    )
    assert finding.freeze is False


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"nigth_freeze": True}, "nigth_freeze"),
        ({"sweep_min_small_credits": "ten"}, "sweep_min_small_credits"),
        ({"sweep_min_small_credits": 9.5}, "sweep_min_small_credits"),
        ({"counterparties_min": True}, "counterparties_min"),
        ({"night_freeze": 1}, "night_freeze"),
        ({"counterparties_min": 0}, "counterparties_min"),
        ({"opening_large_fen": -1}, "opening_large_fen"),
        ({"sweep_min_percent": 101}, "sweep_min_percent"),
        ({"structuring_band_percent": 100}, "structuring_band_percent"),
        ({"night_end_hour": 25}, "night_end_hour"),
        ({"night_start_hour": 5}, "night_end_hour"),
        ({"structuring_window_days": 8}, "structuring_window_days"),
        ({"sweep_within_minutes": 6 * 24 * 60 + 1}, "sweep_within_minutes"),
        ([1, 2], "SSCARD_BANK_MONITORING"),
    ],
)
def test_A4_5_thresholds_refuse_bad_configuration_naming_the_key(
    overrides: object, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        Thresholds.from_env(env(overrides))


def test_A4_5_thresholds_refuse_configuration_that_is_not_json() -> None:
    with pytest.raises(ValueError, match="SSCARD_BANK_MONITORING"):
        Thresholds.from_env({"SSCARD_BANK_MONITORING": "night_freeze=true"})


def test_A4_5_a_night_may_wrap_past_midnight() -> None:
    late = Thresholds(night_start_hour=23, night_end_hour=5)
    ledger = night_ledger(start=NIGHT - 90 * MINUTE, span=HOUR)
    assert run(ledger) == []
    assert rules(run(ledger, thresholds=late)) == [NIGHT_BURST]


# --- properties over any ledger --------------------------------------------------------------

AMOUNTS = st.sampled_from([100, 500, 500.01, 4_000, 45_000, 49_000, 49_500, 50_000, 123_456.78])


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[AccountProfile, list[Movement]]:
    count = draw(st.integers(min_value=1, max_value=40))
    end = draw(st.sampled_from([DAY + 6 * 24 * HOUR, NIGHT + 59 * MINUTE]))
    span = draw(st.sampled_from([60, 24 * 60, 7 * 24 * 60]))  # minutes
    offsets = draw(st.lists(st.integers(0, span), min_size=count, max_size=count))
    ledger = []
    for i, offset in enumerate(sorted(offsets, reverse=True)):
        amount = draw(st.sampled_from([100, 500])) if draw(st.booleans()) else draw(AMOUNTS)
        amount *= draw(st.sampled_from([1, 1, -1]))
        party = draw(st.sampled_from(["", *PAYERS[:12]]))
        ledger.append(mv(f"e{i}", amount, end - offset * MINUTE, party))
    opened = end - draw(st.integers(min_value=0, max_value=10)) * 24 * HOUR
    return AccountProfile("6222020000000000001", opened), ledger


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledgers())
def test_A4_5_findings_hold_the_new_movement_and_summaries_no_long_numbers(
    case: tuple[AccountProfile, list[Movement]],
) -> None:
    """Every finding involves the new movement, names only movements of the ledger, each once,
    in booking order; its key is rule:account:anchor; its summary has no run of more than 6
    digits and no counterparty (A4.5)."""
    profile, ledger = case
    by_id = {m.entry_id: m for m in ledger}
    ids = set(by_id)
    for finding in run(ledger, profile):
        assert finding.rule in RULES
        assert ledger[-1].entry_id in finding.entry_ids
        assert set(finding.entry_ids) <= ids
        assert len(set(finding.entry_ids)) == len(finding.entry_ids)
        times = [by_id[e].booked_at for e in finding.entry_ids]
        assert times == sorted(times)
        assert finding.dedupe_key.startswith(f"{finding.rule}:{profile.account_id}:")
        assert not re.search(r"\d{7}", finding.summary)
        assert not any(p in finding.summary for p in PAYERS)
        assert finding.freeze == DEFAULTS.freezes(finding.rule)
