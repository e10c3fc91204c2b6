"""The Kubernetes manifests agree with the code: the NetworkPolicy allows exactly the calls the
services make, and the probes ask the health entries the server keeps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.platform import config as settings
from services.platform.server import LIVENESS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CONSOLE_TARGETS = {"card", "bank", "transit"}  # console/config.py


def _calls_in_code(service: str) -> set[str]:
    """The services ``service`` opens channels to (``channel_to(config, "<name>")``)."""
    code = "\n".join(p.read_text() for p in (ROOT / "services" / service).glob("*.py"))
    return set(re.findall(r'channel_to\(config, "([a-z]+)"\)', code))


def _policies() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((K8S / "networkpolicy.yaml").read_text())
    return {doc["metadata"]["name"]: doc for doc in docs}


def _names(peers: list[dict[str, Any]]) -> set[str]:
    return {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for peer in peers
        if "namespaceSelector" not in peer
    }


def test_the_network_policy_allows_exactly_the_calls_the_services_make() -> None:
    policies = _policies()
    calls = {name: _calls_in_code(name) for name in settings.SERVICES}
    calls["console"] = CONSOLE_TARGETS
    assert calls["card"] == {"identity", "bank", "transit"}  # the scan reads the code at all
    for caller, callees in calls.items():
        egress = policies[caller]["spec"]["egress"]
        allowed = {name for rule in egress for name in _names(rule["to"])}
        assert allowed == callees, caller
        for rule in egress:
            (callee,) = _names(rule["to"])
            assert rule["ports"] == [{"protocol": "TCP", "port": settings.DEFAULT_PORTS[callee]}], (
                caller
            )
    for callee in settings.SERVICES:
        grpc_rule = policies[callee]["spec"]["ingress"][0]
        assert grpc_rule["ports"] == [{"protocol": "TCP", "port": settings.DEFAULT_PORTS[callee]}]
        expected = {caller for caller, callees in calls.items() if callee in callees}
        assert _names(grpc_rule["from"]) == expected, callee


@pytest.mark.parametrize("service", settings.SERVICES)
def test_each_deployment_names_exactly_the_services_it_calls(service: str) -> None:
    docs = yaml.safe_load_all((K8S / f"{service}.yaml").read_text())
    (deployment,) = (doc for doc in docs if doc["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    targets = {
        m.group(1).lower()
        for var in container["env"]
        if (m := re.fullmatch(r"SSCARD_([A-Z]+)_TARGET", var["name"]))
    }
    assert targets == _calls_in_code(service)


def test_everything_else_is_denied_both_ways() -> None:
    deny = _policies()["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("service", settings.SERVICES)
def test_liveness_probes_ask_the_liveness_entry_and_readiness_the_database_one(
    service: str,
) -> None:
    docs = yaml.safe_load_all((K8S / f"{service}.yaml").read_text())
    (deployment,) = (doc for doc in docs if doc["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS
    assert container["startupProbe"]["grpc"]["service"] == LIVENESS
    assert "service" not in container["readinessProbe"]["grpc"]  # "": database and migrations
