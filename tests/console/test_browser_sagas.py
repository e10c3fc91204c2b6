"""Sagas that wait for an operator, handled in a real browser (headless Debian chromium driven
by Playwright) against the real services on SQLite and PostgreSQL: with the bank stopped, an
application's saga gives up retrying and shows up as needing attention; once the bank is back,
staff retry it and watch it complete, or compensate it and watch it end FAILED. Each action is
behind a confirmation, and the card service's audit trail names the console and the staff
member who took it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from services.bank.main import build as build_bank
from services.card import store as card_store
from services.platform.audit import AuditTrail, Entry
from tests.cardsuite import Suite
from tests.console.conftest import STAFF, browser_sign_in, needs_chromium, reload_until
from tests.support import wait_serving

pytestmark = needs_chromium


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    """A saga gives up after two failed tries in a row, so it needs attention within seconds."""
    return {**service_env, "SSCARD_SAGA_MAX_RETRIES": "2"}


def _stuck_saga(suite: Suite, page: Any) -> str:
    """Stop the bank, apply, and open the saga's page once the list shows it needing
    attention; the card id."""
    person = suite.person()
    suite.bank_server.server.stop(0)
    card_id = suite.apply(person).card_id
    browser_sign_in(page)
    page.goto("/sagas?state=NEEDS_ATTENTION")
    reload_until(page, card_id)
    row = page.locator("tr", has_text=card_id)
    assert "NEEDS_ATTENTION" in row.inner_text() and "DEPENDENCY_UNAVAILABLE" in row.inner_text()
    row.locator("a[href^='/sagas/']").click()
    page.wait_for_selector("h1:has-text('Saga')")
    return card_id


def _reload_until_state(page: Any, state: str, timeout: float = 30) -> None:
    """Reload the saga's page (as staff would) until its state is ``state``."""
    deadline = time.monotonic() + timeout
    while page.inner_text(".state") != state:
        assert time.monotonic() < deadline, f"the saga is still {page.inner_text('.state')}"
        time.sleep(0.5)
        page.reload()


def _bank_back(start_service: Callable[..., Any]) -> None:
    bank = start_service("bank", build_bank, migrate=False)
    wait_serving(bank.channel)


def _audit(suite: Suite, card_id: str, method: str) -> Entry:
    with Session(suite.card_server.deps.db.engine) as session:
        rows = AuditTrail(card_store.metadata).rows(session, card_id=card_id)
    [found] = [r.item for r in rows if r.item.method == method]
    return found


def test_staff_retry_a_saga_stuck_behind_a_stopped_bank_once_it_is_back(
    suite: Suite, page: Any, start_service: Callable[..., Any]
) -> None:
    card_id = _stuck_saga(suite, page)
    assert "NEEDS_ATTENTION" in page.inner_text(".state")
    _bank_back(start_service)

    page.click("a:has-text('Retry now')")
    page.wait_for_selector("h1:has-text('Retry now')")
    page.click("button:has-text('Retry the saga now')")  # not confirmed: nothing happens
    assert page.locator("input[name=confirm]:invalid").count() == 1
    page.check("input[name=confirm]")
    page.click("button:has-text('Retry the saga now')")
    assert "Retry asked for" in page.inner_text("p.notice")
    _reload_until_state(page, "COMPLETED")
    assert page.locator("tr.step-step_done").count() == 5  # each with the time it was done

    entry = _audit(suite, card_id, "RetrySaga")
    assert (entry.client_id, entry.operator_id, entry.outcome) == ("ops-console", STAFF, "OK")


def test_staff_compensate_a_stuck_saga_and_it_ends_failed(suite: Suite, page: Any) -> None:
    card_id = _stuck_saga(suite, page)  # the bank stays down: its steps were never done

    page.click("a:has-text('Compensate')")
    page.wait_for_selector("h1:has-text('Compensate')")
    assert "cannot be taken back" in page.inner_text("main")
    page.check("input[name=confirm]")
    page.click("button:has-text('Undo the saga')")
    assert "Compensation asked for" in page.inner_text("p.notice")
    _reload_until_state(page, "FAILED")
    assert "OPERATOR_COMPENSATED" in page.inner_text("main")
    assert page.locator("tr.step-step_undone").count() == 2  # reserve_issuance, record_verified
    assert page.locator("a:has-text('Retry now')").count() == 0

    entry = _audit(suite, card_id, "CompensateSaga")
    assert (entry.client_id, entry.operator_id, entry.outcome) == ("ops-console", STAFF, "OK")
