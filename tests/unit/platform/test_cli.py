"""`sscard call` finds a method in any service of a domain's contracts (the bank has three)."""

from __future__ import annotations

import pytest

from services.platform.cli import _method


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
