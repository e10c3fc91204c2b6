"""What the client examples in other languages (examples/node, examples/go) are given to run
against the suite's real services: one credential per role in a file, the certificate each is
bound to when mutual TLS is on, and each service's address."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.platform.auth import Channel, Role
from tests.cardsuite import BANK, Suite
from tests.trust import TestTrust


def example_env(
    start_service: Callable[..., Any],
    token: Callable[..., Any],
    trust: TestTrust,
    tmp_path: Path,
    branch: str,
) -> dict[str, str]:
    suite = Suite(start_service, token)
    credentials = {
        "OPS": suite.ops,
        "REGISTRY": token(roles=(Role.REGISTRY,), caller="hr-feed"),
        "BRANCH": suite.at(Channel.BANK_BRANCH, bank_code=BANK, outlet_id=branch),
        "KIOSK": suite.at(Channel.TRANSIT_OUTLET, outlet_id="YKT-0815"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    env["SSCARD_BRANCH"] = branch
    if trust.client_tls is None:
        env["SSCARD_TLS"] = "off"
    else:  # every credential the tests mint is bound to the tests' client certificate; it is
        # named per credential, as a client holding one certificate per credential names them
        files = trust.certificate("test-client")
        env["SSCARD_TLS_CA_FILE"] = str(trust.ca_file)
        for name in credentials:
            env[f"SSCARD_TLS_CERT_{name}_FILE"] = str(files.cert_file)
            env[f"SSCARD_TLS_KEY_{name}_FILE"] = str(files.key_file)
    for name, metadata in credentials.items():
        file = tmp_path / f"{name.lower()}.jwt"
        file.write_text(dict(metadata)["authorization"].removeprefix("Bearer ") + "\n")
        env[f"SSCARD_TOKEN_{name}_FILE"] = str(file)
    for name, running in (
        ("IDENTITY", suite.identity_server),
        ("CARD", suite.card_server),
        ("BANK", suite.bank_server),
        ("TRANSIT", suite.transit_server),
    ):
        env[f"SSCARD_{name}_TARGET"] = f"127.0.0.1:{running.server.port}"
    return env


def assert_the_walk(lines: list[str]) -> None:
    """What every example prints of its walk: the person registered, the application watched to
    its end through a lost stream with no event lost or repeated, the card active, the top-up
    booked once, and the two refusals decoded."""
    assert lines[0] == "registered: 1 person"
    assert re.fullmatch(r"applied: card card-\w+, saga saga-\w+", lines[1])
    events = [int(m[1]) for line in lines if (m := re.match(r"event (\d+): ", line))]
    assert events == list(range(1, len(events) + 1)), "an event was lost or repeated"
    assert "stream lost after sequence 1; resuming" in lines
    assert [line for line in lines if line.startswith("event ")][-1].endswith(
        "SAGA_STATE_COMPLETED completed"
    )
    assert "card status: CARD_STATUS_ACTIVE" in lines
    assert "balance: 50.00 yuan (5000 fen)" in lines
    assert "malformed: INVALID_ARGUMENT INVALID_DOCUMENT rule A4.1" in lines
    assert any(line.startswith("  field applicant.document.number: ") for line in lines)
    assert "second card: FAILED_PRECONDITION ALREADY_HAS_CARD rule A4.2" in lines
    assert lines[-1] == "done"
