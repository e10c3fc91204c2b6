"""A failing activity is logged on each change of state and then summarised, not per attempt."""

from __future__ import annotations

import logging

import pytest

from services.platform.faultlog import FailureLog

log = logging.getLogger("sscard.test.faultlog")


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_a_repeating_failure_is_logged_once_then_summarised_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    failures = FailureLog(log, "relay", every=60.0, now=clock)
    caplog.set_level(logging.INFO)
    for _ in range(500):  # 500 attempts, 0.1 s apart: 50 seconds
        failures.failure("OperationalError")
        clock.seconds += 0.1
    assert _lines(caplog) == ["relay failing: OperationalError"]

    for _ in range(200):  # 20 s more: the summary is due once a minute has passed
        failures.failure("OperationalError")
        clock.seconds += 0.1
    assert _lines(caplog)[1:] == [
        "relay still failing: OperationalError, 600 more times in the last 60s (601 in all)"
    ]
    assert failures.failing == "OperationalError"


def test_a_different_failure_and_the_recovery_are_each_told_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    failures = FailureLog(log, "relay", every=60.0, now=clock)
    caplog.set_level(logging.INFO)
    failures.success()  # working all along: nothing to say
    for reason in ("DATABASE_UNAVAILABLE",) * 3 + ("DEPENDENCY_UNAVAILABLE",) * 4:
        failures.failure(reason)
    failures.success()
    failures.success()
    assert _lines(caplog) == [
        "relay failing: DATABASE_UNAVAILABLE",
        "relay failing: DEPENDENCY_UNAVAILABLE (was DATABASE_UNAVAILABLE)",
        "relay recovered from DEPENDENCY_UNAVAILABLE after 4 failed attempts",
    ]
    assert failures.failing is None


def test_the_stack_trace_comes_only_with_the_first_line(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(log, "relay", now=FakeClock())
    caplog.set_level(logging.INFO)
    for _ in range(3):
        try:
            raise RuntimeError("boom")
        except RuntimeError as exc:
            failures.failure(type(exc).__name__, exc)
    assert [r.exc_info is not None for r in caplog.records if r.name == log.name] == [True]
