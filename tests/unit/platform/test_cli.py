"""The `sscard` command: `call` finds a method in any service of a domain's contracts (the bank
has three); `token` and `keys` are the development issuer's tools, refused in production."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.platform.auth import Role
from services.platform.cli import _method, dev_credential, ensure_dev_secrets, main
from services.platform.config import REPO_ROOT
from services.platform.trust import Verifier


@pytest.mark.parametrize(
    ("domain", "name", "full"),
    [
        ("bank", "GetAccount", "sscard.bank.v1.BankService.GetAccount"),
        ("bank", "LedgerService.Credit", "sscard.bank.v1.LedgerService.Credit"),
        (
            "bank",
            "CounterService.ActivateFinancial",
            "sscard.bank.v1.CounterService.ActivateFinancial",
        ),
        ("card", "OpsService.ListDeadlines", "sscard.card.v1.OpsService.ListDeadlines"),
        ("transit", "TopUp", "sscard.transit.v1.TransitService.TopUp"),
    ],
)
def test_a_method_is_found_in_any_service_of_the_domain(domain: str, name: str, full: str) -> None:
    method, request, response = _method(domain, name)
    assert response.DESCRIPTOR is method.output_type
    assert method.full_name == full
    assert request.DESCRIPTOR is method.input_type


def test_an_unknown_service_lists_the_ones_there_are() -> None:
    with pytest.raises(SystemExit) as excinfo:
        _method("bank", "Nope.Call")
    assert "BankService, CounterService, LedgerService" in str(excinfo.value)


def test_sscard_token_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSCARD_ENVIRONMENT", "production")
    with pytest.raises(SystemExit) as excinfo:
        dev_credential("ops-console")
    assert "not minted in production" in str(excinfo.value)


def test_sscard_token_signs_a_registered_clients_credential_the_services_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A development credential for a client of deploy/clients.toml, from the development
    issuer's key, verifies against the published keys; `sscard keys rotate` keeps both valid."""
    monkeypatch.setenv("SSCARD_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("SSCARD_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.delenv("SSCARD_ENVIRONMENT", raising=False)
    ensure_dev_secrets(tmp_path)
    verifier = Verifier(tmp_path / "trust", REPO_ROOT / "deploy" / "clients.toml", 0)
    before = dev_credential("icbc-core", channel="BANK_BRANCH", roles=["counter"])
    caller = verifier.verify(before)
    assert (caller.client_id, caller.bank_code, caller.roles) == (
        "icbc-core",
        "ICBC",
        frozenset({Role.COUNTER}),
    )
    assert main(["keys", "rotate", "sscard-dev"]) == 0
    after = dev_credential("ops-console")
    assert verifier.verify(after).roles == {Role.OPS}
    assert verifier.verify(before).client_id == "icbc-core"  # the old key is still published
    with pytest.raises(SystemExit, match="several channels"):
        dev_credential("icbc-core", roles=["counter"])
