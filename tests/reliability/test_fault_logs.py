"""Log discipline under faults: a background loop whose dependency is down says so once, not
once per attempt."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from services.platform import config as settings
from services.platform.server import ServiceDeps
from services.transit.main import build as build_transit
from tests.cardsuite import wait_until


def _unreachable(url: str) -> str:
    """The same kind of database, one that does not exist."""
    if url.startswith("sqlite"):
        return "sqlite:////nonexistent-directory/transit.db"
    return make_url(url).set(database="sscard_no_such_database").render_as_string(False)


def test_the_refund_relay_with_its_database_down_logs_the_failure_once_not_per_attempt(
    start_service: Callable[..., Any],
    service_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    service_env["SSCARD_TRANSIT_DB_URL"] = _unreachable(service_env["SSCARD_TRANSIT_DB_URL"])
    attempts: list[None] = []

    def build(config: settings.ServiceConfig) -> ServiceDeps:
        deps = build_transit(config)
        relay = next(chore for _, chore in deps.maintenance if "RefundRelay" in chore.__qualname__)

        def relay_pass() -> object:
            attempts.append(None)
            return relay()

        relay_pass.__qualname__ = relay.__qualname__
        deps.maintenance = [(0.005, relay_pass)]  # the relay, as often as the machine allows
        return deps

    caplog.set_level(logging.INFO)
    start_service("transit", build, migrate=False)
    deadline = time.monotonic() + 60
    while len(attempts) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(attempts) >= 100  # the relay kept trying

    relay_lines = [r for r in caplog.records if "RefundRelay" in r.getMessage()]
    first = relay_lines[0].getMessage()
    assert first == "transit: RefundRelay.run failing: OperationalError"
    assert len(relay_lines) <= 2  # the failure, then at most a summary a minute
    assert [r for r in caplog.records if r.exc_info] == relay_lines[:1]  # one stack trace in all
    database_checks = [r for r in caplog.records if "database check" in r.getMessage()]
    assert len(database_checks) <= 2


def test_an_anchor_file_that_cannot_be_written_is_logged_once_without_a_stack_trace(
    start_service: Callable[..., Any],
    service_env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The audit anchor loop, tried again and again on a file it cannot create, says so once,
    with what the system said, and recovers when it can write (README, "Audit trail")."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    service_env["SSCARD_TRANSIT_AUDIT_ANCHOR_FILE"] = str(blocker / "anchors.jsonl")
    service_env["SSCARD_AUDIT_ANCHOR_SECONDS"] = "0.01"
    caplog.set_level(logging.INFO)
    start_service("transit", build_transit)
    time.sleep(1.0)  # about a hundred attempts
    lines = [r for r in caplog.records if "audit anchoring" in r.getMessage()]
    assert [r.getMessage() for r in lines] == [
        "transit: audit anchoring failing: FileExistsError (File exists)"
    ]
    assert not any(r.exc_info for r in lines)
    blocker.unlink()
    wait_until(lambda: (blocker / "anchors.jsonl").exists())
    recovered = "transit: audit anchoring recovered from FileExistsError (File exists)"
    wait_until(lambda: any(r.getMessage().startswith(recovered) for r in caplog.records))
