"""Suspicious-transaction monitoring of the card's financial account (可疑交易监测, A4.5).

The bank watches every booked movement for the patterns of fraud mule accounts and gambling
fund transfers (涉诈涉赌资金) and raises a finding for review. ``evaluate`` looks at one new
movement together with the account's earlier movements within ``LOOKBACK`` and returns the
findings the new movement takes part in; a pattern that does not involve it is not raised
again. PBOC Order [2016] No. 3 (《金融机构大额交易和可疑交易报告管理办法》), Art. 11, has each
institution set its own transaction monitoring standards; these are the bank's, every one a
field of ``Thresholds`` and configurable in ``SSCARD_BANK_MONITORING``.

Rules (defaults; amounts in yuan, times Beijing time; "within" is inclusive):

======================== =============================================== ====== ================
Rule                     Pattern                                         Freeze Thresholds
======================== =============================================== ====== ================
SMALL_CREDITS_THEN_SWEEP Many small credits, then most of the money goes yes    sweep_*
                         out at once: >= 10 credits of <= 500 each, from
                         >= 5 counterparties, within 24 h; within 2 h of
                         the last of them, debits of >= 80% of what came
                         in and >= 2,000 (快进快出, 分散转入集中转出:
                         the money of many fraud victims collected and
                         passed on).
NIGHT_BURST              >= 5 movements within 60 minutes, all at night  no     night_*
                         (from 00:00 to before 05:00): the rhythm of
                         online gambling top-ups and payouts.
LARGE_SOON_AFTER_OPENING Credits, or debits, totalling >= 50,000 within  no     opening_*
                         7 days of the account opening (a single
                         movement counts alone): accounts opened to be
                         sold or lent (买卖账户) are used at once.
MANY_COUNTERPARTIES      >= 10 distinct counterparties within 24 h, in   yes    counterparties_*
                         either direction: collection and distribution
                         accounts.
JUST_UNDER_THRESHOLD     >= 2 movements within 7 days, each a whole      no     structuring_*
                         number of thousands at most 10% under the
                         50,000 large-value cash threshold of PBOC Order
                         [2016] No. 3, Art. 5 (45,000 to 49,000), in or
                         out: amounts split to stay under reporting
                         (拆分交易).
======================== =============================================== ====== ================

"Freeze" is whether a finding of the rule asks for the account's non-counter business (online
banking, ATM, third-party payment) to be frozen pending review; the counter stays open. A
movement with no counterparty (``""``) never counts as one. Amounts compare by their absolute
value unless a rule speaks of credits or debits.

Each finding names only the movements that make up its pattern and carries a ``dedupe_key``:
the rule, the account and the pattern's anchor, so the same pattern found again on a later
movement is raised once. The anchor is the first sweep debit (SMALL_CREDITS_THEN_SWEEP); the
account's opening, once for credits and once for debits (LARGE_SOON_AFTER_OPENING); otherwise
the first movement of the pattern, where qualifying windows that share a movement make one
pattern. A pattern that continues without a break for longer than ``LOOKBACK`` is raised again
once its first movements leave the history.
Summaries speak in yuan and Beijing time and never name a counterparty or an account.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from services.platform.clock import BEIJING

RULE = "A4.5"  # the rule findings are raised under
ENV_VAR = "SSCARD_BANK_MONITORING"

SMALL_CREDITS_THEN_SWEEP = "SMALL_CREDITS_THEN_SWEEP"
NIGHT_BURST = "NIGHT_BURST"
LARGE_SOON_AFTER_OPENING = "LARGE_SOON_AFTER_OPENING"
MANY_COUNTERPARTIES = "MANY_COUNTERPARTIES"
JUST_UNDER_THRESHOLD = "JUST_UNDER_THRESHOLD"
RULES: tuple[str, ...] = (
    SMALL_CREDITS_THEN_SWEEP,
    NIGHT_BURST,
    LARGE_SOON_AFTER_OPENING,
    MANY_COUNTERPARTIES,
    JUST_UNDER_THRESHOLD,
)

# The caller loads the movements booked within this long before the new one. Every rule's
# window must fit in it; Thresholds refuses longer ones.
LOOKBACK = dt.timedelta(days=7)


@dataclass(frozen=True)
class Movement:
    """One booked ledger entry of the account."""

    entry_id: str
    amount_fen: int  # signed: + credit, - debit
    counterparty: str  # the other party ("" if none)
    non_counter: bool  # online banking, ATM, third-party payment (vs at the counter)
    booked_at: dt.datetime  # timezone-aware


@dataclass(frozen=True)
class AccountProfile:
    account_id: str
    opened_at: dt.datetime  # aware


@dataclass(frozen=True)
class Finding:
    """A pattern found, for review by operations."""

    rule: str  # one of RULES
    summary: str  # for a person in operations; amounts in yuan; no ID/phone/account numbers
    entry_ids: tuple[str, ...]  # the movements that make up the pattern, in booking order
    freeze: bool  # whether the rule is configured to freeze non-counter business pending review
    dedupe_key: str  # rule:account:anchor, the same for the same pattern found again


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the rules; the defaults are the table in the module docstring."""

    # SMALL_CREDITS_THEN_SWEEP. Fraud victims are typically told to transfer small sums, and
    # mule accounts pass them on within hours (快进快出).
    sweep_small_credit_max_fen: int = 50_000  # 500 yuan: the "small" credit
    sweep_min_small_credits: int = 10  # fewer is ordinary (red packets, refunds)
    sweep_min_counterparties: int = 5  # many payers, not one person topping up in pieces
    sweep_credit_window_hours: int = 24  # the credits gather within a day
    sweep_within_minutes: int = 120  # the money leaves within 2 h of the last credit
    sweep_min_percent: int = 80  # "most" of what came in leaves
    sweep_min_fen: int = 200_000  # 2,000 yuan: below that the loss to victims is slight
    sweep_freeze: bool = True  # money is leaving: stop the next sweep online at once
    # NIGHT_BURST. Gambling platforms settle around the clock; people rarely pay at 3 a.m.
    night_start_hour: int = 0  # Beijing hour the night starts (inclusive)
    night_end_hour: int = 5  # Beijing hour it ends (exclusive); may wrap past midnight
    night_burst_min_movements: int = 5  # one or two night payments are ordinary
    night_burst_window_minutes: int = 60  # the burst happens within an hour
    night_freeze: bool = False  # night-shift workers exist: review before freezing
    # LARGE_SOON_AFTER_OPENING. The large-value cash threshold of PBOC Order [2016] No. 3,
    # Art. 5 (50,000 yuan), applied to a new account's turnover.
    opening_period_days: int = 7  # the first week after opening
    opening_large_fen: int = 5_000_000  # 50,000 yuan of credits, or of debits
    opening_freeze: bool = False  # a salary or a house deposit looks the same
    # MANY_COUNTERPARTIES. A personal account deals with few parties a day.
    counterparties_min: int = 10  # distinct counterparties
    counterparties_window_hours: int = 24  # within a day
    counterparties_freeze: bool = True  # collection accounts move many victims' money at once
    # JUST_UNDER_THRESHOLD (拆分交易, structuring).
    structuring_threshold_fen: int = 5_000_000  # 50,000 yuan, PBOC Order [2016] No. 3, Art. 5
    structuring_band_percent: int = 10  # at most 10% under it: 45,000 up to 49,999.99 yuan
    structuring_round_fen: int = 100_000  # whole thousands of yuan: a chosen, not a real, sum
    structuring_min_movements: int = 2  # one is chance, two is a habit
    structuring_window_days: int = 7  # within a week
    structuring_freeze: bool = False  # structuring is reported, the holder is not stopped

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{f.name} must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{f.name} must be a whole number, got {value!r}")
            minimum = 0 if f.name == "night_start_hour" else 1
            if value < minimum:
                raise ValueError(f"{f.name} must be at least {minimum}, got {value}")
        self._at_most("night_start_hour", 23)
        self._at_most("night_end_hour", 24)
        self._at_most("sweep_min_percent", 100)
        self._at_most("structuring_band_percent", 99)
        if self.night_start_hour % 24 == self.night_end_hour % 24:
            raise ValueError("night_end_hour must differ from night_start_hour")
        windows = {
            "sweep_credit_window_hours + sweep_within_minutes": (
                self.sweep_credit_window + self.sweep_within
            ),
            "night_burst_window_minutes": self.night_burst_window,
            "opening_period_days": self.opening_period,
            "counterparties_window_hours": self.counterparties_window,
            "structuring_window_days": self.structuring_window,
        }
        for name, span in windows.items():
            if span > LOOKBACK:
                raise ValueError(f"{name} reach(es) back beyond the {LOOKBACK.days}-day history")

    def _at_most(self, name: str, maximum: int) -> None:
        value = getattr(self, name)
        if value > maximum:
            raise ValueError(f"{name} must be at most {maximum}, got {value}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Thresholds:
        """The defaults, overridden by name by the JSON object in ``SSCARD_BANK_MONITORING``,
        e.g. ``{"sweep_min_small_credits": 8, "night_freeze": true}``. An unknown name or a bad
        value raises ValueError naming it."""
        env = os.environ if env is None else env
        raw = env.get(ENV_VAR, "").strip()
        if not raw:
            return cls()
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{ENV_VAR} is not valid JSON: {exc.msg}") from exc
        if not isinstance(overrides, dict):
            raise ValueError(f"{ENV_VAR} must be a JSON object of threshold names to values")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in overrides:
            if key not in known:
                raise ValueError(f"{ENV_VAR}: unknown threshold {key!r}")
        try:
            return cls(**overrides)
        except ValueError as exc:
            raise ValueError(f"{ENV_VAR}: {exc}") from exc

    def freezes(self, rule: str) -> bool:
        """Whether a finding of ``rule`` asks to freeze non-counter business."""
        return {
            SMALL_CREDITS_THEN_SWEEP: self.sweep_freeze,
            NIGHT_BURST: self.night_freeze,
            LARGE_SOON_AFTER_OPENING: self.opening_freeze,
            MANY_COUNTERPARTIES: self.counterparties_freeze,
            JUST_UNDER_THRESHOLD: self.structuring_freeze,
        }[rule]

    @property
    def sweep_credit_window(self) -> dt.timedelta:
        return dt.timedelta(hours=self.sweep_credit_window_hours)

    @property
    def sweep_within(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.sweep_within_minutes)

    @property
    def night_burst_window(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.night_burst_window_minutes)

    @property
    def opening_period(self) -> dt.timedelta:
        return dt.timedelta(days=self.opening_period_days)

    @property
    def counterparties_window(self) -> dt.timedelta:
        return dt.timedelta(hours=self.counterparties_window_hours)

    @property
    def structuring_window(self) -> dt.timedelta:
        return dt.timedelta(days=self.structuring_window_days)


def evaluate(
    profile: AccountProfile,
    history: Sequence[Movement],
    new: Movement,
    thresholds: Thresholds,
) -> list[Finding]:
    """The findings ``new`` takes part in, given the account's movements within LOOKBACK
    before it (in any order; ``new`` itself may be among them)."""
    by_id = {m.entry_id: m for m in history}
    by_id[new.entry_id] = new
    ledger = sorted(by_id.values(), key=lambda m: (m.booked_at, m.entry_id))
    return [
        *_small_credits_then_sweep(profile, ledger, new, thresholds),
        *_night_burst(profile, ledger, new, thresholds),
        *_large_soon_after_opening(profile, ledger, new, thresholds),
        *_many_counterparties(profile, ledger, new, thresholds),
        *_just_under_threshold(profile, ledger, new, thresholds),
    ]


def _finding(
    rule: str,
    profile: AccountProfile,
    anchor: str,
    movements: Sequence[Movement],
    summary: str,
    thresholds: Thresholds,
) -> Finding:
    return Finding(
        rule=rule,
        summary=summary,
        entry_ids=tuple(m.entry_id for m in movements),
        freeze=thresholds.freezes(rule),
        dedupe_key=f"{rule}:{profile.account_id}:{anchor}",
    )


def _small_credits_then_sweep(
    profile: AccountProfile, ledger: Sequence[Movement], new: Movement, t: Thresholds
) -> list[Finding]:
    findings: list[Finding] = []
    for index, last in enumerate(ledger):
        if not _is_small_credit(last, t):
            continue
        sweep: list[Movement] = []
        for later in ledger[index + 1 :]:
            if later.booked_at - last.booked_at > t.sweep_within or _is_small_credit(later, t):
                break
            if later.amount_fen < 0:
                sweep.append(later)
        if not sweep:
            continue
        credits = [
            m
            for m in ledger[: index + 1]
            if _is_small_credit(m, t) and last.booked_at - m.booked_at <= t.sweep_credit_window
        ]
        if new.entry_id not in {m.entry_id for m in (*credits, *sweep)}:
            continue
        came_in = sum(m.amount_fen for m in credits)
        went_out = -sum(m.amount_fen for m in sweep)
        payers = {m.counterparty for m in credits if m.counterparty}
        if (
            len(credits) >= t.sweep_min_small_credits
            and len(payers) >= t.sweep_min_counterparties
            and went_out >= t.sweep_min_fen
            and went_out * 100 >= came_in * t.sweep_min_percent
        ):
            summary = (
                f"{len(credits)} credits of at most {_yuan(t.sweep_small_credit_max_fen)} yuan"
                f" each, {_yuan(came_in)} yuan in all from {len(payers)} counterparties,"
                f" {_span(credits)}; then {_yuan(went_out)} yuan"
                f" ({went_out * 100 // came_in}%) debited in {len(sweep)} movement(s) by"
                f" {_when(sweep[-1])}, within {t.sweep_within_minutes} minutes of the last"
                " credit (快进快出)"
            )
            movements = sorted([*credits, *sweep], key=lambda m: (m.booked_at, m.entry_id))
            anchor = sweep[0].entry_id
            findings.append(
                _finding(SMALL_CREDITS_THEN_SWEEP, profile, anchor, movements, summary, t)
            )
    return findings


def _is_small_credit(m: Movement, t: Thresholds) -> bool:
    return 0 < m.amount_fen <= t.sweep_small_credit_max_fen


def _night_burst(
    profile: AccountProfile, ledger: Sequence[Movement], new: Movement, t: Thresholds
) -> list[Finding]:
    night = [m for m in ledger if _at_night(m, t)]
    pattern = _pattern_of(
        new, night, t.night_burst_window, lambda ms: len(ms) >= t.night_burst_min_movements
    )
    if not pattern:
        return []
    summary = (
        f"{len(pattern)} movements at night, {_span(pattern)}, at least"
        f" {t.night_burst_min_movements} within {t.night_burst_window_minutes} minutes"
        f" (night is {t.night_start_hour:02d}:00 to {t.night_end_hour:02d}:00 Beijing time)"
    )
    return [_finding(NIGHT_BURST, profile, pattern[0].entry_id, pattern, summary, t)]


def _at_night(m: Movement, t: Thresholds) -> bool:
    hour = m.booked_at.astimezone(BEIJING).hour
    start, end = t.night_start_hour, t.night_end_hour
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end


def _large_soon_after_opening(
    profile: AccountProfile, ledger: Sequence[Movement], new: Movement, t: Thresholds
) -> list[Finding]:
    def early(m: Movement) -> bool:
        return profile.opened_at <= m.booked_at <= profile.opened_at + t.opening_period

    if not early(new):
        return []
    findings: list[Finding] = []
    for direction, sign in (("credited", 1), ("debited", -1)):
        if new.amount_fen * sign <= 0:
            continue
        movements = [m for m in ledger if early(m) and m.amount_fen * sign > 0]
        total = sum(abs(m.amount_fen) for m in movements)
        if total < t.opening_large_fen:
            continue
        summary = (
            f"{_yuan(total)} yuan {direction} in {len(movements)} movement(s), {_span(movements)},"
            f" within {t.opening_period_days} days of the account opening on"
            f" {_when(profile.opened_at)} (threshold {_yuan(t.opening_large_fen)} yuan)"
        )
        anchor = f"opening-{direction}"
        findings.append(_finding(LARGE_SOON_AFTER_OPENING, profile, anchor, movements, summary, t))
    return findings


def _many_counterparties(
    profile: AccountProfile, ledger: Sequence[Movement], new: Movement, t: Thresholds
) -> list[Finding]:
    named = [m for m in ledger if m.counterparty]
    pattern = _pattern_of(
        new,
        named,
        t.counterparties_window,
        lambda ms: len({m.counterparty for m in ms}) >= t.counterparties_min,
    )
    if not pattern:
        return []
    parties = len({m.counterparty for m in pattern})
    summary = (
        f"{parties} distinct counterparties in {len(pattern)} movements, {_span(pattern)}"
        f" (at least {t.counterparties_min} within {t.counterparties_window_hours} h)"
    )
    return [_finding(MANY_COUNTERPARTIES, profile, pattern[0].entry_id, pattern, summary, t)]


def _just_under_threshold(
    profile: AccountProfile, ledger: Sequence[Movement], new: Movement, t: Thresholds
) -> list[Finding]:
    ceiling = t.structuring_threshold_fen

    def just_under(m: Movement) -> bool:
        amount = abs(m.amount_fen)
        in_band = amount * 100 >= ceiling * (100 - t.structuring_band_percent)
        return in_band and amount < ceiling and amount % t.structuring_round_fen == 0

    pattern = _pattern_of(
        new,
        [m for m in ledger if just_under(m)],
        t.structuring_window,
        lambda ms: len(ms) >= t.structuring_min_movements,
    )
    if not pattern:
        return []
    amounts = "; ".join(f"{_yuan(abs(m.amount_fen))} yuan at {_when(m)}" for m in pattern)
    summary = (
        f"{len(pattern)} round amounts just under the {_yuan(ceiling)} yuan reporting"
        f" threshold within {t.structuring_window_days} days (at least"
        f" {t.structuring_min_movements}): {amounts} (拆分交易)"
    )
    return [_finding(JUST_UNDER_THRESHOLD, profile, pattern[0].entry_id, pattern, summary, t)]


def _pattern_of(
    new: Movement,
    candidates: Sequence[Movement],
    window: dt.timedelta,
    qualifies: Callable[[Sequence[Movement]], bool],
) -> list[Movement]:
    """The pattern ``new`` takes part in: the union of the qualifying windows (all candidates
    within ``window`` up to one of them) that share movements with each other, one of which
    holds ``new``; empty if there is none."""
    patterns: list[tuple[int, int]] = []  # index ranges of candidates, inclusive
    first = 0
    for last, movement in enumerate(candidates):
        while movement.booked_at - candidates[first].booked_at > window:
            first += 1
        if not qualifies(candidates[first : last + 1]):
            continue
        if patterns and first <= patterns[-1][1]:
            patterns[-1] = (patterns[-1][0], last)
        else:
            patterns.append((first, last))
    for start, end in patterns:
        members = list(candidates[start : end + 1])
        if any(m.entry_id == new.entry_id for m in members):
            return members
    return []


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def _when(moment: Movement | dt.datetime) -> str:
    at = moment.booked_at if isinstance(moment, Movement) else moment
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _span(movements: Sequence[Movement]) -> str:
    first, last = _when(movements[0]), _when(movements[-1])
    return f"at {first}" if first == last else f"from {first} to {last}"
