"""The operations console in a real browser (headless Debian chromium driven by Playwright)
against the real services on SQLite and PostgreSQL: staff sign in, find a card and its saga,
watch a saga get stuck while the bank is down, and resolve a suspicious-transaction alert; a
wrong password and a form without its CSRF token are refused.

The overview's screenshot is kept as docs/console-overview.png (README, "Operations console").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sscard.bank.v1 import ledger_pb2
from tests.cardsuite import Suite, active_card
from tests.console.conftest import STAFF, needs_chromium, reload_until
from tests.console.conftest import browser_sign_in as sign_in
from tests.money import YUAN, ledger, pay_in

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console-overview.png"

pytestmark = needs_chromium


def test_staff_sign_in_and_follow_a_card_to_its_saga(suite: Suite, page: Any, backend: str) -> None:
    card_id, person = active_card(suite)
    sign_in(page)
    page.wait_for_selector("h1:has-text('Overview')")
    assert page.locator(".tile").count() == 5
    if backend == "sqlite":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.fill("input[name=card_id]", card_id)
    page.click("button:has-text('Open')")
    page.wait_for_selector(f"h1:has-text('Card {card_id}')")
    text = page.inner_text("main")
    assert "ACTIVE" in text and person.number[:6] + "********" + person.number[-4:] in text
    assert person.number not in page.content() and "13812345678" not in page.content()

    page.locator("a[href^='/sagas/']").first.click()
    page.wait_for_selector("h1:has-text('Saga')")
    assert "COMPLETED" in page.inner_text(".state")
    assert card_id in page.inner_text("main")


def test_a_saga_stuck_behind_a_stopped_bank_shows_up_as_retrying(suite: Suite, page: Any) -> None:
    person = suite.person()
    suite.bank_server.server.stop(0)  # the bank stops answering
    started = suite.apply(person)
    sign_in(page)
    page.goto("/sagas?active=1&min_retries=1")
    reload_until(page, started.card_id)
    row = page.locator("tr", has_text=started.card_id)
    assert "RUNNING" in row.inner_text() and "DEPENDENCY_UNAVAILABLE" in row.inner_text()


def test_A4_5_an_analyst_resolves_an_alert_with_a_note(suite: Suite, page: Any) -> None:
    """合作银行应……加强可疑交易监测,避免社会保障卡被利用转移涉诈涉赌等违法资金。"""
    card_id, _ = active_card(suite)
    for n in range(12):  # money from many payers within a day: an alert that freezes
        pay_in(suite, card_id, 600 * YUAN, payer=f"payer-{n}")
    sign_in(page)
    page.goto("/alerts?status=ALERT_OPEN")
    row = page.locator("tr", has_text=card_id)
    row.locator("button:has-text('Take it')").click()
    page.locator("tr", has_text=card_id).locator("a:has-text('Resolve')").click()
    page.fill("textarea[name=note]", "payroll of a small employer, checked with the branch")
    page.check("input[name=confirm]")
    page.click("button:has-text('Resolve alert')")
    assert "resolved" in page.inner_text("p.notice")

    alerts = ledger(suite).ListAlerts(ledger_pb2.ListAlertsRequest(), metadata=suite.ops).alerts
    (alert,) = [a for a in alerts if a.card_id == card_id]
    assert (alert.status, alert.assignee) == (ledger_pb2.ALERT_STATUS_ALERT_RESOLVED, STAFF)
    assert alert.resolution == "payroll of a small employer, checked with the branch"


def test_a_wrong_password_and_a_form_without_its_csrf_token_are_refused(
    suite: Suite, page: Any
) -> None:
    sign_in(page, password="not the password")
    assert "Wrong user name or password" in page.inner_text("main")
    page.goto("/alerts")
    assert page.url.endswith("/login?next=/alerts")

    sign_in(page)
    page.goto("/cards")
    page.evaluate(
        """() => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = '/alerts/any/resolve';
            form.innerHTML = '<input name="note" value="x"><input name="confirm" value="yes">';
            document.body.appendChild(form);
            form.submit();
        }"""
    )
    page.wait_for_selector("h1:has-text('Form refused')")
    assert "Nothing was changed" in page.inner_text("main")
