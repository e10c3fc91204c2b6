"""Account classes (A4.5): PBOC's classified management of personal bank accounts (个人银行账户
分类管理) and the limits each class puts on non-counter payments.

A social security card's account is a class I account by default (it is opened in person at
the issuing bank with the holder's identity verified, A4.4); operations may set another class.
Non-counter payments (online banking, ATM, third-party payments) are limited per payment and
per Beijing calendar day; a class III account also has a balance cap. Counter payments are not
limited by class. A limit of ``None`` means none.

Defaults and their source:
- 中国人民银行《关于改进个人银行账户服务 加强账户管理的通知》银发〔2015〕392号: classes I, II
  and III; class II and III accounts may pay out only within limits.
- 中国人民银行《关于加强支付结算管理 防范电信网络新型违法犯罪有关事项的通知》银发〔2016〕302号
  and its 2018 revision (银发〔2018〕16号): class II non-counter payments up to 10,000 yuan a
  day; class III non-counter payments up to 5,000 yuan a day and a balance of at most 2,000 yuan.
  (Annual totals, 200,000 / 100,000 yuan, are kept by the bank's core system, not here.)

``SSCARD_BANK_TIER_LIMITS`` overrides any of them with JSON, e.g.
``{"II": {"single_fen": 500000, "daily_fen": 1000000}, "III": {"balance_cap_fen": 200000}}``;
a limit given as ``null`` or ``0`` means none. ``SSCARD_BANK_DEFAULT_TIER`` (``I``, ``II`` or
``III``) is the class of a new account.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from services.platform.errors import DomainError

RULE = "A4.5"
LIMITS_ENV = "SSCARD_BANK_TIER_LIMITS"
DEFAULT_TIER_ENV = "SSCARD_BANK_DEFAULT_TIER"
YUAN = 100  # fen


class Tier(enum.Enum):
    """An account class; the names of sscard.bank.v1.AccountTier are ``TIER_<value>``."""

    I = "I"  # noqa: E741 - the class is called I
    II = "II"
    III = "III"


@dataclass(frozen=True)
class Limits:
    """One class's limits in fen; None: no limit."""

    single_fen: int | None = None  # one non-counter payment
    daily_fen: int | None = None  # all non-counter payments of one Beijing calendar day
    balance_cap_fen: int | None = None  # the balance


DEFAULT_LIMITS: dict[Tier, Limits] = {
    Tier.I: Limits(),
    Tier.II: Limits(single_fen=10_000 * YUAN, daily_fen=10_000 * YUAN),
    Tier.III: Limits(single_fen=2_000 * YUAN, daily_fen=5_000 * YUAN, balance_cap_fen=2_000 * YUAN),
}


class TierConfigError(ValueError):
    """The tier configuration is malformed; the service refuses to start."""


@dataclass(frozen=True)
class TierPolicy:
    """The limits of every class and the class of a new account."""

    limits: Mapping[Tier, Limits]
    default_tier: Tier = Tier.I

    def of(self, tier: Tier) -> Limits:
        return self.limits[tier]

    @classmethod
    def standard(cls) -> TierPolicy:
        return cls(dict(DEFAULT_LIMITS))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TierPolicy:
        """The defaults, overridden by ``SSCARD_BANK_TIER_LIMITS`` / ``..._DEFAULT_TIER``."""
        limits = dict(DEFAULT_LIMITS)
        raw = env.get(LIMITS_ENV, "").strip()
        if raw:
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise TierConfigError(f"{LIMITS_ENV} is not JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise TierConfigError(f"{LIMITS_ENV} must be a JSON object keyed by I, II, III")
            for name, given in data.items():
                tier = _tier(name, LIMITS_ENV)
                limits[tier] = _override(limits[tier], given, name)
        default = env.get(DEFAULT_TIER_ENV, "").strip()
        return cls(limits, _tier(default, DEFAULT_TIER_ENV) if default else Tier.I)


def _tier(name: str, setting: str) -> Tier:
    try:
        return Tier(name)
    except ValueError as exc:
        raise TierConfigError(f"{setting}: unknown account class {name!r} (I, II or III)") from exc


def _override(base: Limits, given: object, name: str) -> Limits:
    if not isinstance(given, dict):
        raise TierConfigError(f"{LIMITS_ENV}: class {name} must map to an object")
    values: dict[str, int | None] = {}
    for key, value in given.items():
        if key not in ("single_fen", "daily_fen", "balance_cap_fen"):
            raise TierConfigError(f"{LIMITS_ENV}: unknown limit {key!r} for class {name}")
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise TierConfigError(f"{LIMITS_ENV}: {name}.{key} must be a whole number of fen")
        values[key] = value or None
    return replace(base, **values)


def _exceeded(what: str, limit: int, tier: Tier) -> DomainError:
    return DomainError(
        "TIER_LIMIT_EXCEEDED",
        f"{what} of a class {tier.value} account is {limit} fen",
        rule=RULE,
        metadata={"tier": tier.value, "limit": what, "limit_fen": str(limit)},
    )


def check_non_counter(limits: Limits, tier: Tier, amount_fen: int, today_fen: int) -> None:
    """A non-counter payment of ``amount_fen`` after ``today_fen`` already paid today."""
    if limits.single_fen is not None and amount_fen > limits.single_fen:
        raise _exceeded("the single non-counter payment limit", limits.single_fen, tier)
    if limits.daily_fen is not None and today_fen + amount_fen > limits.daily_fen:
        raise _exceeded("the daily non-counter payment limit", limits.daily_fen, tier)


def check_balance(limits: Limits, tier: Tier, balance_after_fen: int) -> None:
    """A credit that would leave ``balance_after_fen`` on the account."""
    if limits.balance_cap_fen is not None and balance_after_fen > limits.balance_cap_fen:
        raise _exceeded("the balance cap", limits.balance_cap_fen, tier)
