"""Operations: what the services tell an operator through /metrics and their log lines, and the
alerting rules and dashboard shipped for them (README, "Operations: metrics and logs")."""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.request
from collections.abc import Iterator

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.platform import config as settings
from services.platform import logs
from services.platform.auth import Channel
from sscard.card.v1 import card_pb2 as pb
from tests.cardsuite import Suite, reason_rule, rpc_error
from tests.conftest import free_port

DEPLOY = settings.REPO_ROOT / "deploy"
APPLY = "/sscard.card.v1.CardService/Apply"
GET_CARD = "/sscard.card.v1.CardService/GetCard"


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    """The suite's environment with /metrics served by every service."""
    for name in settings.SERVICES:
        service_env[f"SSCARD_{name.upper()}_METRICS_PORT"] = str(free_port())
    return service_env


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found[(name, frozenset(labels.items()))]


def test_metrics_count_calls_by_code_and_show_what_an_operator_watches(suite: Suite) -> None:
    """An accepted application and a lookup of a card that does not exist are counted by
    status code and timed; the card service shows the production deadline the application
    started, no unfinished saga once it has run, and the idempotency key it stored."""
    person = suite.person()
    started = suite.apply(person)
    suite.settle(started.card_id)
    rpc_error(
        lambda: suite.card.GetCard(pb.GetCardRequest(card_id="no-such-card"), metadata=suite.ops)
    )

    card = samples(scrape(suite.card_server.server.metrics.port))
    assert value(card, "sscard_rpc_requests_total", service="card", method=APPLY, code="OK") == 1
    assert (
        value(card, "sscard_rpc_requests_total", service="card", method=GET_CARD, code="NOT_FOUND")
        == 1
    )
    assert value(card, "sscard_rpc_duration_seconds_count", service="card", method=APPLY) == 1
    assert value(card, "sscard_idempotency_keys", service="card") == 1
    assert value(card, "sscard_metrics_database_up", service="card") == 1
    deadlines = {
        labels: count
        for (name, labels), count in card.items()
        if name == "sscard_card_deadlines_pending"
    }
    production = [
        count for labels, count in deadlines.items() if ("kind", "production_overdue") in labels
    ]
    assert production == [1]
    assert not any(name == "sscard_card_sagas" for name, _ in card)
    assert value(card, "sscard_card_saga_oldest_running_seconds") == 0

    bank = samples(scrape(suite.bank_server.server.metrics.port))
    assert value(bank, "sscard_bank_alerts_unresolved", status="OPEN") == 0
    transit = samples(scrape(suite.transit_server.server.metrics.port))
    assert value(transit, "sscard_transit_refunds_pending") == 0


def _metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\bsscard_[a-z0-9_]+", expression))


def test_alert_rules_and_dashboard_name_only_metrics_the_services_serve(suite: Suite) -> None:
    """Every metric an alerting rule or a dashboard panel queries is one the services serve."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert all(rule.get("alert") for group in rules["groups"] for rule in group["rules"])
    dashboard = json.loads((DEPLOY / "grafana" / "sscard.json").read_text())
    expressions += [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    named = set().union(*(_metric_names(e) for e in expressions))

    served: set[str] = set()
    for running in (
        suite.identity_server,
        suite.card_server,
        suite.bank_server,
        suite.transit_server,
    ):
        served |= _metric_names(scrape(running.server.metrics.port))
    assert named, "the rules and panels name no metric"
    assert named <= served, f"not served: {sorted(named - served)}"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log line of the in-process services, as JSON lines."""
    out = io.StringIO()
    handler = logs.handler("tests", "json", out)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def _lines(out: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_a_state_change_and_a_refusal_are_json_lines_with_caller_request_and_outcome(
    suite: Suite, log_lines: io.StringIO
) -> None:
    """An accepted application logs one JSON line naming the service, method, request id,
    client, channel and outcome; a refused application logs the caller, request id and
    reason (here: a mobile number that is no number); no line carries the applicant's full ID
    number or mobile number."""
    person = suite.person()
    suite.apply(person, request_id="apply-logged")
    refused = rpc_error(lambda: suite.apply(person, request_id="apply-again", mobile="1234"))
    reason, _ = reason_rule(refused)

    lines = _lines(log_lines)
    committed = [
        line
        for line in lines
        if line.get("request_id") == "apply-logged" and line.get("outcome") == "OK"
    ]
    assert len(committed) == 1
    assert committed[0]["service"] == "card"
    assert committed[0]["method"] == APPLY
    assert committed[0]["level"] == "INFO"
    assert committed[0]["channel"] == Channel.ONLINE.value
    assert committed[0]["client_id"]
    assert {"time", "logger", "message"} <= committed[0].keys()

    refusals = [
        line
        for line in lines
        if line.get("request_id") == "apply-again" and line.get("reason") == reason
    ]
    assert refusals
    assert all(line["client_id"] == committed[0]["client_id"] for line in refusals)
    assert all(line["method"] == APPLY for line in refusals)

    text = log_lines.getvalue()
    assert person.number not in text
    assert "13812345678" not in text


def test_text_format_is_one_readable_line_with_the_same_fields() -> None:
    """``SSCARD_LOG_FORMAT=text`` writes a terminal line carrying the call's fields, masked."""
    out = io.StringIO()
    logger = logging.getLogger("sscard.test-text")
    handler = logs.handler("card", "text", out)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    token = logs.bind_call(logs.CallContext("card", APPLY, "r-1"))
    try:
        logger.info("applicant 110105199003070012 called from 13812345678", extra={"outcome": "OK"})
    finally:
        logs.unbind_call(token)
        logger.removeHandler(handler)
    line = out.getvalue().strip()
    assert line.count("\n") == 0
    assert "card sscard.test-text: applicant 110105********0012" in line
    assert "138****5678" in line
    assert f"method={APPLY}" in line and "request_id=r-1" in line and "outcome=OK" in line
    assert not line.startswith("{")


def test_log_format_setting_refuses_an_unknown_format() -> None:
    with pytest.raises(settings.ConfigError, match="SSCARD_LOG_FORMAT"):
        settings.load("card", {"SSCARD_LOG_FORMAT": "xml"})
    assert settings.load("card", {"SSCARD_LOG_FORMAT": "text"}).log_format == "text"
    assert settings.load("card", {}).metrics_port == 9052
