"""Branches of the cooperating banks (合作银行服务网点); some issue cards on the spot (即时制卡,
A22.3). A bank is known to the suite once one of its branches is registered (A5.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.platform.errors import DomainError, Kind, Violations

BANK_CODE = re.compile(r"[A-Z][A-Z0-9]{1,15}", re.ASCII)
MAX_BRANCH_ID = 64
MAX_BRANCH_NAME = 100
MAX_ADDRESS = 200


@dataclass(frozen=True)
class Branch:
    bank_code: str
    branch_id: str
    name: str
    instant: bool
    address: str


def check_bank_code(value: str, field: str, violations: Violations) -> None:
    if not BANK_CODE.fullmatch(value):
        violations.add(
            field, "a bank code of 2 to 16 capital letters or digits is required", "BAD_FORMAT"
        )


def check_branch_id(value: str, field: str, violations: Violations) -> None:
    if not value or len(value) > MAX_BRANCH_ID or value != value.strip():
        violations.add(field, f"a branch id of 1 to {MAX_BRANCH_ID} characters is required")


def validate_branch(
    bank_code: str, branch_id: str, name: str, instant: bool, address: str
) -> Branch:
    """A branch as ops registers it; every malformed field is reported at once."""
    v = Violations()
    check_bank_code(bank_code, "branch.bank_code", v)
    check_branch_id(branch_id, "branch.branch_id", v)
    clean_name = " ".join(name.split())
    if not clean_name or len(clean_name) > MAX_BRANCH_NAME:
        v.add("branch.name", f"a name of 1 to {MAX_BRANCH_NAME} characters is required")
    clean_address = " ".join(address.split())
    if len(clean_address) > MAX_ADDRESS:
        v.add("branch.address", f"at most {MAX_ADDRESS} characters", "TOO_LONG")
    v.raise_if_any("INVALID_BRANCH")
    return Branch(bank_code, branch_id, clean_name, instant, clean_address)


def check_same_bank(existing: Branch | None, branch: Branch) -> None:
    """Branch ids are unique across banks: a branch never moves to another bank."""
    if existing is not None and existing.bank_code != branch.bank_code:
        raise DomainError(
            "BRANCH_OF_ANOTHER_BANK",
            f"branch {branch.branch_id} is registered to bank {existing.bank_code}",
            kind=Kind.ALREADY_EXISTS,
        )


def unknown_bank(bank_code: str) -> DomainError:
    return DomainError(
        "UNKNOWN_BANK",
        f"{bank_code} is not a cooperating bank: no branch of it is registered",
        rule="A5.1",
    )


def check_pickup_branch(branch: Branch | None, bank_code: str) -> Branch:
    """A card is collected at a branch of its issuing bank (A7.2)."""
    if branch is None or branch.bank_code != bank_code:
        raise DomainError(
            "UNKNOWN_BRANCH",
            f"the pickup branch is not a registered branch of bank {bank_code}",
            rule="A7.2",
        )
    return branch


def issues_on_the_spot(branch: Branch | None, bank_code: str) -> bool:
    """A22.3: only a branch of the chosen bank flagged instant makes the card on the spot."""
    return branch is not None and branch.bank_code == bank_code and branch.instant
