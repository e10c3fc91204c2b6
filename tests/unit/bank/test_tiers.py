"""Account classes and their limits (services/bank/domain/tiers.py, A4.5): the PBOC defaults,
the configuration that overrides them, and the checks on non-counter payments and balances."""

from __future__ import annotations

import json

import pytest

from services.bank.domain.tiers import (
    DEFAULT_LIMITS,
    Limits,
    Tier,
    TierConfigError,
    TierPolicy,
    check_balance,
    check_non_counter,
)
from services.platform.errors import DomainError

YUAN = 100


def test_A4_5_the_defaults_follow_the_pboc_notices() -> None:
    """A4.5: class I unlimited; II 10,000 yuan a day; III 5,000 a day and 2,000 balance."""
    policy = TierPolicy.standard()
    assert policy.default_tier is Tier.I
    assert policy.of(Tier.I) == Limits()
    assert policy.of(Tier.II).daily_fen == 10_000 * YUAN
    assert (policy.of(Tier.III).daily_fen, policy.of(Tier.III).balance_cap_fen) == (
        5_000 * YUAN,
        2_000 * YUAN,
    )


def test_A4_5_a_non_counter_payment_stays_within_the_single_and_daily_limits() -> None:
    limits = Limits(single_fen=1_000, daily_fen=1_500)
    check_non_counter(limits, Tier.II, 1_000, 500)  # exactly at both limits
    with pytest.raises(DomainError) as single:
        check_non_counter(limits, Tier.II, 1_001, 0)
    assert (single.value.reason, single.value.rule) == ("TIER_LIMIT_EXCEEDED", "A4.5")
    assert single.value.metadata["limit_fen"] == "1000"
    with pytest.raises(DomainError) as daily:
        check_non_counter(limits, Tier.II, 600, 1_000)
    assert daily.value.metadata == {
        "tier": "II",
        "limit": "the daily non-counter payment limit",
        "limit_fen": "1500",
    }
    check_non_counter(Limits(), Tier.I, 10**12, 10**12)  # class I: no class limit


def test_A4_5_a_class_III_balance_has_a_cap() -> None:
    cap = DEFAULT_LIMITS[Tier.III]
    check_balance(cap, Tier.III, 2_000 * YUAN)
    with pytest.raises(DomainError) as excinfo:
        check_balance(cap, Tier.III, 2_000 * YUAN + 1)
    assert excinfo.value.metadata["limit"] == "the balance cap"
    check_balance(DEFAULT_LIMITS[Tier.II], Tier.II, 10**12)


def test_A4_5_limits_and_the_default_class_are_configuration() -> None:
    env = {
        "SSCARD_BANK_TIER_LIMITS": json.dumps(
            {"II": {"single_fen": 300, "daily_fen": None}, "III": {"balance_cap_fen": 0}}
        ),
        "SSCARD_BANK_DEFAULT_TIER": "II",
    }
    policy = TierPolicy.from_env(env)
    assert policy.default_tier is Tier.II
    assert policy.of(Tier.II) == Limits(single_fen=300)
    assert policy.of(Tier.III) == Limits(single_fen=2_000 * YUAN, daily_fen=5_000 * YUAN)
    assert TierPolicy.from_env({}) == TierPolicy.standard()


@pytest.mark.parametrize(
    "env",
    [
        {"SSCARD_BANK_TIER_LIMITS": "not json"},
        {"SSCARD_BANK_TIER_LIMITS": "[]"},
        {"SSCARD_BANK_TIER_LIMITS": '{"IV": {}}'},
        {"SSCARD_BANK_TIER_LIMITS": '{"II": {"weekly_fen": 1}}'},
        {"SSCARD_BANK_TIER_LIMITS": '{"II": {"daily_fen": -1}}'},
        {"SSCARD_BANK_TIER_LIMITS": '{"II": {"daily_fen": "10000"}}'},
        {"SSCARD_BANK_DEFAULT_TIER": "IV"},
    ],
)
def test_malformed_configuration_stops_the_service(env: dict[str, str]) -> None:
    with pytest.raises(TierConfigError):
        TierPolicy.from_env(env)
