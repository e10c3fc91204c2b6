"""The operations console over the real services, through Starlette's test client: staff sign
in with their password, every form POST needs the session's CSRF token, and no page shows a
full ID or phone number."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from console import config as console_config
from services.platform.clock import BEIJING, SharedTestClock
from services.platform.config import ConfigError
from sscard.bank.v1 import ledger_pb2
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from sscard.transit.v1 import transit_pb2 as tpb
from tests.cardsuite import Suite, active_card, wait_until
from tests.console.conftest import PASSWORD, STAFF, csrf_of, sign_in
from tests.money import YUAN, ledger, pay_in
from tests.scenarios.test_card_endings import record_death
from tests.scenarios.test_transit import top_up


class TestSignIn:
    def test_the_right_password_opens_the_overview(self, client: TestClient) -> None:
        assert client.get("/sagas", follow_redirects=False).headers["location"] == (
            "/login?next=/sagas"
        )
        answer = sign_in(client)
        assert (answer.status_code, answer.headers["location"]) == (303, "/")
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = client.get("/")
        assert page.status_code == 200 and "Sagas under way" in page.text and STAFF in page.text

    @pytest.mark.parametrize("user, password", [(STAFF, "wrong"), ("nobody", PASSWORD)])
    def test_a_wrong_password_or_unknown_user_is_refused(
        self, client: TestClient, user: str, password: str
    ) -> None:
        answer = sign_in(client, password=password, user=user)
        assert answer.status_code == 401 and "Wrong user name or password" in answer.text
        assert client.get("/", follow_redirects=False).status_code == 303  # still signed out

    def test_signing_out_ends_the_session(self, signed_in: TestClient) -> None:
        csrf = csrf_of(signed_in.get("/").text)
        signed_in.post("/logout", data={"csrf": csrf}, follow_redirects=False)
        assert signed_in.get("/", follow_redirects=False).headers["location"] == "/login?next=/"


class TestCsrf:
    def test_a_sign_in_without_the_token_is_refused(self, client: TestClient) -> None:
        answer = client.post("/login", data={"username": STAFF, "password": PASSWORD})
        assert answer.status_code == 403
        assert client.get("/", follow_redirects=False).status_code == 303

    def test_an_action_without_the_sessions_token_changes_nothing(
        self, signed_in: TestClient
    ) -> None:
        for sent in ({}, {"csrf": "forged"}):
            answer = signed_in.post(
                "/alerts/any/resolve", data={**sent, "note": "ok", "confirm": "yes"}
            )
            assert answer.status_code == 403 and "CSRF" in answer.text


class TestSagaActions:
    def test_a_saga_action_needs_the_token_and_a_confirmation_and_a_finished_saga_is_refused(
        self, suite: Suite, signed_in: TestClient
    ) -> None:
        card_id, _ = active_card(suite)
        ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
        saga = ops.ListSagas(pb.ListSagasRequest(card_id=card_id), metadata=suite.ops).sagas[0]
        path = f"/sagas/{saga.saga_id}/compensate"
        form = signed_in.get(path)
        assert form.status_code == 200 and "cannot be taken back" in form.text
        assert signed_in.post(path, data={"confirm": "yes"}).status_code == 403
        unconfirmed = signed_in.post(path, data={"csrf": csrf_of(form.text)})
        assert unconfirmed.status_code == 400 and "Tick the confirmation" in unconfirmed.text
        refused = signed_in.post(path, data={"csrf": csrf_of(form.text), "confirm": "yes"})
        assert refused.status_code == 409 and "SAGA_FINISHED" in refused.text
        assert signed_in.get(f"/sagas/{saga.saga_id}/delete").status_code == 404


class TestMasking:
    def test_a_cards_page_shows_its_document_and_phone_masked_only(
        self, suite: Suite, signed_in: TestClient
    ) -> None:
        card_id, person = active_card(suite)
        page = signed_in.get(f"/cards/{card_id}")
        assert page.status_code == 200
        assert person.number not in page.text and "13812345678" not in page.text
        assert person.number[:6] + "********" + person.number[-4:] in page.text
        assert "138****5678" in page.text
        # the console shows the domain's name of a status, not the contract's prefixed one
        assert "ACTIVE" in page.text and "CARD_STATUS_ACTIVE" not in page.text
        assert "Transit wallet" in page.text

    def test_a_card_that_does_not_exist_is_a_refusal_page_not_a_crash(
        self, signed_in: TestClient
    ) -> None:
        answer = signed_in.get("/cards/no-such-card")
        assert answer.status_code == 404 and "CARD_NOT_FOUND" in answer.text

    def test_output_is_escaped(self, signed_in: TestClient) -> None:
        answer = signed_in.get("/sagas", params={"kind": "<script>alert(1)</script>"})
        assert "<script>alert(1)" not in answer.text and "&lt;script&gt;" in answer.text


def test_the_console_holds_no_signing_key_in_production(tmp_path: Path) -> None:
    env = {
        "SSCARD_ENVIRONMENT": "production",
        "SSCARD_CONSOLE_SIGNING_KEY_FILE": str(tmp_path / "key.pem"),
        "SSCARD_CONSOLE_SESSION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    with pytest.raises(ConfigError, match="TOKEN_FILE"):
        console_config.load(env)
    del env["SSCARD_CONSOLE_SIGNING_KEY_FILE"]
    with pytest.raises(ConfigError, match="TOKEN_FILE"):
        console_config.load(env)
    env["SSCARD_CONSOLE_TOKEN_FILE"] = str(tmp_path / "token")
    assert console_config.load(env).token_file == tmp_path / "token"


class TestPages:
    def test_A16_3_a_refund_waiting_for_a_stopped_bank_is_listed_as_pending(
        self, suite: Suite, signed_in: TestClient
    ) -> None:
        """领取新卡时,旧卡交通出行功能的剩余金额将退还至持卡人指定银行金融账户。

        Operations see money still on its way to a bank, with its amount, on the refunds page
        and counted on the overview."""
        card_id, _ = active_card(suite)
        top_up(suite, card_id, 120 * YUAN)
        suite.bank_server.server.stop(0)  # the bank stops answering
        refund = suite.transit.Refund(
            tpb.RefundRequest(request_id=suite.rid("refund"), card_id=card_id, amount_fen=0),
            metadata=suite.branch(),
        )
        page = signed_in.get("/refunds")
        assert refund.refund_id in page.text and "¥120.00" in page.text
        assert "SENDING" in page.text
        arrived = signed_in.get("/refunds", params={"state": "ARRIVED"})
        assert refund.refund_id not in arrived.text
        overview = signed_in.get("/")
        assert "Transit refunds pending" in overview.text
        assert "unavailable (DEPENDENCY_UNAVAILABLE)" in overview.text  # the bank's alerts

    def test_A4_5_an_alert_is_resolved_only_with_a_note_and_a_confirmation(
        self, suite: Suite, signed_in: TestClient
    ) -> None:
        """合作银行应……加强可疑交易监测,避免社会保障卡被利用转移涉诈涉赌等违法资金。"""
        card_id, _ = active_card(suite)
        for n in range(12):
            pay_in(suite, card_id, 600 * YUAN, payer=f"payer-{n}")
        (alert,) = (
            ledger(suite).ListAlerts(ledger_pb2.ListAlertsRequest(), metadata=suite.ops).alerts
        )
        form = signed_in.get(f"/alerts/{alert.alert_id}/resolve")
        sent = {"csrf": csrf_of(form.text), "request_id": "r1", "note": "checked"}
        assert signed_in.post(f"/alerts/{alert.alert_id}/resolve", data=sent).status_code == 400
        assert (
            signed_in.post(
                f"/alerts/{alert.alert_id}/resolve", data={**sent, "note": "", "confirm": "yes"}
            ).status_code
            == 400
        )
        status = ledger(suite).ListAlerts(ledger_pb2.ListAlertsRequest(), metadata=suite.ops)
        assert status.alerts[0].status == ledger_pb2.ALERT_STATUS_ALERT_OPEN
        for _ in range(2):  # the same form sent twice resolves once
            done = signed_in.post(
                f"/alerts/{alert.alert_id}/resolve",
                data={**sent, "confirm": "yes"},
                follow_redirects=False,
            )
            assert done.status_code == 303
        resolved = ledger(suite).ListAlerts(ledger_pb2.ListAlertsRequest(), metadata=suite.ops)
        assert [(a.status, a.resolution) for a in resolved.alerts] == [
            (ledger_pb2.ALERT_STATUS_ALERT_RESOLVED, "checked")
        ]

    def test_A22_1_a_cards_production_deadline_is_listed_then_flagged_when_missed(
        self, suite: Suite, signed_in: TestClient, test_clock: SharedTestClock
    ) -> None:
        """个人或用人单位首次申领社会保障卡的,发卡合作银行应尽快完成制作,制作时间不超过30个自然日。

        Operations see the card's production deadline while it runs, and the card flagged
        with how late it is once the deadline passed without the card being made."""
        started = suite.apply(suite.person())
        suite.settle(started.card_id)
        pending = signed_in.get("/deadlines", params={"rule": "A22.1"})
        assert started.card_id in pending.text and "A22.1" in pending.text
        test_clock.advance(dt.timedelta(days=33))
        wait_until(lambda: "flagged: " in signed_in.get("/deadlines?state=FIRED&rule=A22.1").text)
        assert started.card_id in signed_in.get("/deadlines?state=FIRED&rule=A22.1").text
        assert started.card_id not in signed_in.get("/deadlines?rule=A22.1").text


def test_A21_2_a_deadline_counted_on_an_estimated_calendar_is_marked_and_explained(
    suite: Suite, signed_in: TestClient, test_clock: SharedTestClock
) -> None:
    """并于10个工作日内完成回收工作: recorded on 24 December 2026, the ten working days run into
    2027, whose holiday schedule the shipped calendar only estimates. The deadlines page marks
    the date and says what to do about it."""
    test_clock.set(dt.datetime(2026, 12, 24, 10, 0, tzinfo=BEIJING))
    person = suite.person()
    started = suite.apply(person)
    suite.settle(started.card_id)
    record_death(suite, person, "death-console")
    wait_until(lambda: started.card_id in signed_in.get("/deadlines?rule=A21.2").text)
    page = signed_in.get("/deadlines", params={"rule": "A21.2"}).text
    assert ">est.</abbr>" in page
    assert "1 deadline(s) below are counted" in page and "sscard calendar load" in page
    assert "deadline(s) below are counted" not in signed_in.get("/deadlines?rule=A22.1").text
