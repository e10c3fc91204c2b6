"""A malformed setting stops a service with one line naming the variable, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.bank.main import build as build_bank
from services.card.main import build as build_card
from services.identity.main import build as build_identity
from services.platform import server
from services.platform.config import ServiceConfig
from services.platform.server import ServiceDeps, run_service
from services.transit.main import build as build_transit

BUILDS: dict[str, Callable[[ServiceConfig], ServiceDeps]] = {
    "identity": build_identity,
    "card": build_card,
    "bank": build_bank,
    "transit": build_transit,
}

# (service, variable, malformed value)
BAD_SETTINGS = [
    ("card", "SSCARD_CARD_PORT", "fifty"),
    ("card", "SSCARD_CARD_PORT", "70000"),
    ("card", "SSCARD_CARD_METRICS_PORT", "-1"),
    ("card", "SSCARD_CARD_WORKERS", "0"),
    ("bank", "SSCARD_BANK_THREADS", "many"),
    ("identity", "SSCARD_SHUTDOWN_GRACE_SECONDS", "soon"),
    ("identity", "SSCARD_DRAIN_SECONDS", "-3"),
    ("transit", "SSCARD_TRUST_RELOAD_SECONDS", "nan"),
    ("identity", "SSCARD_MAX_RESPONSE_BYTES", "1"),
    ("identity", "SSCARD_IDEMPOTENCY_TTL_HOURS", "1.5"),
    ("identity", "SSCARD_SERVICE_TOKEN_TTL_SECONDS", "10"),
    ("identity", "SSCARD_ENVIRONMENT", "prod"),
    ("identity", "SSCARD_LOG_LEVEL", "LOUD"),
    ("identity", "SSCARD_LOG_FORMAT", "xml"),
    ("bank", "SSCARD_BANK_DB_URL", "not a url"),
    ("identity", "SSCARD_IDENTITY_PII_KEY", "not base64!"),
    ("card", "SSCARD_CARD_PII_KEY", "c2hvcnQ="),  # valid base64, 5 bytes
    ("transit", "SSCARD_TRANSIT_AUDIT_KEY", "c2hvcnQ="),
    ("bank", "SSCARD_AUDIT_ANCHOR_SECONDS", "0"),  # anchoring cannot be turned off
    ("card", "SSCARD_CARD_SAGA_WORKERS", "eight"),
    ("card", "SSCARD_SAGA_LEASE_SECONDS", "15s"),
    ("card", "SSCARD_SAGA_MAX_RETRIES", "0"),
    ("card", "SSCARD_SCHEDULER_POLL_SECONDS", "fast"),
    ("card", "SSCARD_CALENDAR_FILE", "/nonexistent/calendar.json"),
    ("bank", "SSCARD_BANK_TIER_LIMITS", "{not json"),
    ("bank", "SSCARD_BANK_MONITORING", "[1, 2]"),
]


class _WouldServe(Exception):
    """Raised instead of serving: the setting under test was accepted."""


@pytest.mark.parametrize(("service", "variable", "value"), BAD_SETTINGS)
def test_a_malformed_setting_is_one_line_naming_it(
    service: str,
    variable: str,
    value: str,
    service_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(os, "environ", {**service_env, variable: value})

    def refuse_to_serve(*_: object) -> None:
        raise _WouldServe(f"{variable}={value!r} was accepted")

    monkeypatch.setattr(server, "create_server", refuse_to_serve)
    with pytest.raises(SystemExit) as exit_:
        run_service(service, BUILDS[service])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # Log records (JSON) may precede it; the error is one plain line naming the setting.
    plain = [line for line in err.splitlines() if not line.startswith("{")]
    assert len(plain) == 1, err
    assert plain[0].startswith(f"{service}: configuration error: ")
    assert variable in plain[0]


def test_a_service_without_its_audit_key_does_not_start(
    service_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every environment needs the key that signs the audit trail's anchors: no file, no
    service."""
    env = dict(service_env)
    env.pop("SSCARD_TRANSIT_AUDIT_KEY")
    env["SSCARD_TRANSIT_AUDIT_KEY_FILE"] = str(tmp_path / "missing.key")
    monkeypatch.setattr(os, "environ", env)
    monkeypatch.setattr(server, "create_server", lambda *_: pytest.fail("it would serve"))
    with pytest.raises(SystemExit) as exit_:
        run_service("transit", build_transit)
    assert exit_.value.code == 2
    assert "SSCARD_TRANSIT_AUDIT_KEY is not set" in capsys.readouterr().err


def test_a_service_process_with_a_bad_setting_exits_with_one_line(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **service_env, "SSCARD_CARD_PII_KEY": "%%%"}
    done = subprocess.run(
        [sys.executable, "-m", "services.card"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "card: configuration error: SSCARD_CARD_PII_KEY is not valid base64"
    ]
    assert "%%%" not in done.stderr


def test_several_workers_without_a_fixed_port_is_one_line(
    service_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {**service_env, "SSCARD_IDENTITY_WORKERS": "2", "SSCARD_IDENTITY_PORT": "0"}
    monkeypatch.setattr(os, "environ", env)
    with pytest.raises(SystemExit) as exit_:
        run_service("identity", build_identity)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "identity: configuration error: SSCARD_IDENTITY_WORKERS=2 needs a fixed "
        "SSCARD_IDENTITY_PORT, not 0"
    ]
