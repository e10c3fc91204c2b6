"""Configuration, the shared test clock, credentials and masking, without a server."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import secrets
from pathlib import Path

import pytest

from services.platform import config as settings
from services.platform.auth import Channel, HS256Verifier, Role, mint_token
from services.platform.clock import SharedTestClock
from services.platform.errors import DomainError
from services.platform.masking import RedactingFormatter, mask_document_number, mask_phone, redact

SECRET = secrets.token_bytes(32)
ENV = {"SSCARD_AUTH_SECRET": base64.b64encode(SECRET).decode()}


class TestConfiguration:
    def test_defaults_give_the_documented_ports_and_sqlite_files(self) -> None:
        config = settings.load("card", ENV)
        assert config.address == "127.0.0.1:50052"
        assert config.db_url.endswith("var/card.db")
        assert config.idempotency_ttl_hours >= 24

    def test_a_database_url_variable_switches_the_service_to_postgresql(self) -> None:
        url = "postgresql+psycopg://postgres@127.0.0.1:5432/bank"
        assert settings.load("bank", {**ENV, "SSCARD_BANK_DB_URL": url}).db_url == url

    def test_the_test_clock_is_off_unless_configured(self) -> None:
        assert type(settings.load("identity", ENV).clock()).__name__ == "SystemClock"

    def test_production_refuses_the_test_clock(self, tmp_path: Path) -> None:
        env = {
            **ENV,
            "SSCARD_ENVIRONMENT": "production",
            "SSCARD_TEST_CLOCK_FILE": str(tmp_path / "c"),
        }
        with pytest.raises(settings.ConfigError):
            settings.load("identity", env)

    def test_a_service_will_not_start_without_its_secret(self) -> None:
        with pytest.raises(settings.ConfigError, match="SSCARD_AUTH_SECRET"):
            settings.load("identity", {"SSCARD_AUTH_SECRET_FILE": "/nonexistent/auth.secret"})

    def test_idempotency_keys_are_kept_at_least_a_day(self) -> None:
        with pytest.raises(settings.ConfigError):
            settings.load("identity", {**ENV, "SSCARD_IDEMPOTENCY_TTL_HOURS": "2"})


def test_the_shared_test_clock_moves_every_reader_together(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    mover, reader = SharedTestClock(path), SharedTestClock(path)
    before = reader.now()
    mover.advance(dt.timedelta(days=16))
    moved = reader.now() - before
    assert dt.timedelta(days=16) <= moved < dt.timedelta(days=16, minutes=1)


def test_the_shared_test_clock_is_set_to_an_instant_whatever_the_day(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    start = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    SharedTestClock(path).set(start)
    assert dt.timedelta(0) <= SharedTestClock(path).now() - start < dt.timedelta(minutes=1)


class TestCredentials:
    def test_a_minted_credential_verifies_with_its_claims(self) -> None:
        token = mint_token(
            SECRET, "branch-7", Channel.BANK_BRANCH, roles={Role.COUNTER}, bank_code="ICBC"
        )
        caller = HS256Verifier(SECRET).verify(token)
        assert (caller.caller, caller.channel, caller.bank_code) == (
            "branch-7",
            Channel.BANK_BRANCH,
            "ICBC",
        )
        assert caller.roles == {Role.COUNTER}

    @pytest.mark.parametrize(
        "token",
        [
            mint_token(b"y" * 32, "x", Channel.ONLINE),
            mint_token(
                SECRET,
                "x",
                Channel.ONLINE,
                now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                ttl=dt.timedelta(minutes=1),
            ),
            "a.b.c",
        ],
        ids=["forged", "expired", "garbage"],
    )
    def test_bad_credentials_are_refused_unauthenticated(self, token: str) -> None:
        with pytest.raises(DomainError) as excinfo:
            HS256Verifier(SECRET).verify(token)
        assert excinfo.value.reason == "UNAUTHENTICATED"


class TestMasking:
    def test_ids_and_phones_are_masked(self) -> None:
        assert mask_document_number("11010519900307002X") == "110105********002X"
        assert mask_phone("13812345678") == "138****5678"
        assert mask_document_number("H12345678") == "H1*****78"

    def test_free_text_is_redacted(self) -> None:
        text = redact("id 11010519900307002X phone 13812345678 order 12")
        assert text == "id 110105********002X phone 138****5678 order 12"

    def test_log_lines_and_tracebacks_are_redacted(self) -> None:
        formatter = RedactingFormatter("%(message)s")
        try:
            raise ValueError("bad 11010519900307002X")
        except ValueError as exc:
            record = logging.LogRecord(
                "t",
                logging.ERROR,
                __file__,
                1,
                "call %s",
                ("13812345678",),
                (ValueError, exc, None),
            )
        line = formatter.format(record)
        assert "13812345678" not in line and "11010519900307002X" not in line
        assert "138****5678" in line
