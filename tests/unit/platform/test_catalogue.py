"""docs/errors.md lists every reason the code raises, as the generator writes it; docs/regulation.md
lists every rule ID the code and the tests cite."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from textwrap import dedent

from services.platform import catalogue

ROOT = Path(__file__).resolve().parents[3]
RULE_ID = re.compile(r"A[1-9]\d*\.\d+")  # articles start at 1: A0.x are made-up rules of unit tests
TEST_NAME = re.compile(r"test_A([1-9]\d*)_(\d+)")


def _documented_reasons() -> set[str]:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([A-Z_]+)` \|", text, re.MULTILINE))


def _catalogued_rules() -> set[str]:
    text = (ROOT / "docs" / "regulation.md").read_text(encoding="utf-8")
    return set(re.findall(r"^### (\S+)$", text, re.MULTILINE))


def test_every_reason_raised_in_services_is_in_errors_md() -> None:
    raised = set(catalogue.Catalogue().entries)
    # A plain text search as well, so a reason the walker cannot read is still caught.
    for path in (ROOT / "services").rglob("*.py"):
        raised |= set(re.findall(r"DomainError\(\s*\"([A-Z_]+)\"", path.read_text("utf-8")))
    assert raised - _documented_reasons() == set(), "run `make docs`"


def test_errors_md_is_what_the_generator_writes() -> None:
    assert catalogue.main(["--check"]) == 0, "docs/errors.md is stale: run `make docs`"


def test_every_rule_cited_in_code_and_tests_is_in_regulation_md() -> None:
    cited = {rule for entry in catalogue.Catalogue().entries.values() for rule in entry.rules}
    for folder in ("services", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            source = path.read_text("utf-8")
            cited |= {f"A{a}.{r}" for a, r in TEST_NAME.findall(source)}
            for node in ast.walk(ast.parse(source)):
                value = node.value if isinstance(node, ast.Constant) else None
                if isinstance(value, str) and RULE_ID.fullmatch(value):
                    cited.add(value)
    assert "IDEMPOTENCY" in cited
    assert cited - _catalogued_rules() == set()


def test_reasons_raised_through_helpers_carry_the_callers_rule(tmp_path: Path) -> None:
    """A helper that builds a refusal from its parameters is read at each call, with constants
    of the module and of an imported module resolved."""
    package = tmp_path / "services" / "demo"
    package.mkdir(parents=True)
    (package / "rules.py").write_text('UNLOCK_RULE = "A14.3"\n')
    (package / "card.py").write_text(
        dedent(
            """
            from services.demo import rules
            from services.platform.errors import DomainError, Kind

            LOSS = {"temporary": "A13.2", "formal": "A13.4"}

            def wrong_state(card, action, reason, rule):
                return DomainError(reason, f"cannot {action}", rule=rule)

            def unlock(card):
                raise wrong_state(card, "unlock", "NOT_FORMALLY_LOST", rules.UNLOCK_RULE)

            def pay(card, loss):
                raise DomainError("ACCOUNT_SUSPENDED", "suspended", rule=LOSS[loss])

            def fetch(card):
                raise DomainError("CARD_NOT_FOUND", "no such card", kind=Kind.NOT_FOUND)
            """
        )
    )
    entries = catalogue.Catalogue(tmp_path).entries
    assert sorted(entries) == ["ACCOUNT_SUSPENDED", "CARD_NOT_FOUND", "NOT_FORMALLY_LOST"]
    assert entries["NOT_FORMALLY_LOST"].rules == {"A14.3"}
    assert entries["ACCOUNT_SUSPENDED"].rules == {"A13.2", "A13.4"}
    assert entries["CARD_NOT_FOUND"].kinds == {"NOT_FOUND"}
    assert (
        "| `NOT_FORMALLY_LOST` | FAILED_PRECONDITION | A14.3 |"
        in catalogue.Catalogue(tmp_path).render()
    )
