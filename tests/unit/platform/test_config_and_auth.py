"""Configuration, the shared test clock, credentials and masking, without a server."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from services.platform import config as settings
from services.platform import tokens
from services.platform.auth import Channel, ClientKind, Role
from services.platform.clients import credential_source
from services.platform.clock import SharedTestClock
from services.platform.errors import DomainError, Kind
from services.platform.masking import (
    RedactingFormatter,
    mask_account,
    mask_document_number,
    mask_phone,
    redact,
)
from services.platform.trust import TrustError, Verifier, _Reloading
from tests.trust import TEST_ISSUER, TestTrust


class TestConfiguration:
    def test_defaults_give_the_documented_ports_and_sqlite_files(self) -> None:
        config = settings.load("card", {})
        assert config.address == "127.0.0.1:50052"
        assert config.db_url.endswith("var/card.db")
        assert config.idempotency_ttl_hours >= 24

    def test_a_database_url_variable_switches_the_service_to_postgresql(self) -> None:
        url = "postgresql+psycopg://postgres@127.0.0.1:5432/bank"
        assert settings.load("bank", {"SSCARD_BANK_DB_URL": url}).db_url == url

    def test_the_test_clock_is_off_unless_configured(self) -> None:
        assert type(settings.load("identity", {}).clock()).__name__ == "SystemClock"

    def test_production_refuses_the_test_clock(self, tmp_path: Path) -> None:
        env = {
            "SSCARD_ENVIRONMENT": "production",
            "SSCARD_IDENTITY_TOKEN_FILE": str(tmp_path / "identity.token"),
            "SSCARD_TEST_CLOCK_FILE": str(tmp_path / "c"),
        }
        with pytest.raises(settings.ConfigError, match="SSCARD_TEST_CLOCK_FILE"):
            settings.load("identity", env)

    def test_idempotency_keys_are_kept_at_least_a_day(self) -> None:
        with pytest.raises(settings.ConfigError):
            settings.load("identity", {"SSCARD_IDEMPOTENCY_TTL_HOURS": "2"})


class TestTrustConfiguration:
    def test_the_trust_directory_and_client_registry_default_to_the_development_files(
        self,
    ) -> None:
        config = settings.load("card", {})
        assert config.trust_dir == settings.VAR_DIR / "trust"
        assert config.client_registry == settings.REPO_ROOT / "deploy" / "clients.toml"
        assert (config.client_id, config.issuer) == ("card-service", "sscard-card")

    def test_the_trust_directory_and_client_registry_are_configurable(self, tmp_path: Path) -> None:
        env = {
            "SSCARD_TRUST_DIR": str(tmp_path / "trust"),
            "SSCARD_CLIENT_REGISTRY": str(tmp_path / "clients.toml"),
        }
        config = settings.load("bank", env)
        assert config.trust_dir == tmp_path / "trust"
        assert config.client_registry == tmp_path / "clients.toml"

    def test_in_development_a_service_signs_its_own_credential_with_its_own_key(
        self, tmp_path: Path
    ) -> None:
        assert settings.load("bank", {}).signing_key_file == (
            settings.VAR_DIR / "keys" / "bank-service.pem"
        )
        key = tmp_path / "bank.pem"
        config = settings.load("bank", {"SSCARD_BANK_SIGNING_KEY_FILE": str(key)})
        assert (config.signing_key_file, config.token_file) == (key, None)

    def test_a_token_file_replaces_the_signing_key(self, tmp_path: Path) -> None:
        token = tmp_path / "transit.token"
        config = settings.load("transit", {"SSCARD_TRANSIT_TOKEN_FILE": str(token)})
        assert (config.signing_key_file, config.token_file) == (None, token)

    def test_production_requires_a_token_file(self, tmp_path: Path) -> None:
        env = {"SSCARD_ENVIRONMENT": "production"}
        with pytest.raises(settings.ConfigError, match="SSCARD_CARD_TOKEN_FILE"):
            credential_source(settings.load("card", env))
        token = tmp_path / "card.token"
        token.write_text("header.claims.signature\n")
        config = settings.load("card", {**env, "SSCARD_CARD_TOKEN_FILE": str(token)})
        assert (config.signing_key_file, config.token_file) == (None, token)
        assert credential_source(config).token() == "header.claims.signature"

    def test_production_refuses_a_signing_key(self, tmp_path: Path) -> None:
        env = {
            "SSCARD_ENVIRONMENT": "production",
            "SSCARD_CARD_TOKEN_FILE": str(tmp_path / "card.token"),
            "SSCARD_CARD_SIGNING_KEY_FILE": str(tmp_path / "card.pem"),
        }
        with pytest.raises(settings.ConfigError, match="SSCARD_CARD_SIGNING_KEY_FILE"):
            settings.load("card", env)


def test_the_shared_test_clock_moves_every_reader_together(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    mover, reader = SharedTestClock(path), SharedTestClock(path)
    before = reader.now()
    mover.advance(dt.timedelta(days=16))
    moved = reader.now() - before
    assert dt.timedelta(days=16) <= moved < dt.timedelta(days=16, minutes=1)


def _refusal(verifier: Verifier, token: str) -> DomainError:
    with pytest.raises(DomainError) as excinfo:
        verifier.verify(token)
    return excinfo.value


def test_the_shared_test_clock_is_set_to_an_instant_whatever_the_day(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    start = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    SharedTestClock(path).set(start)
    assert dt.timedelta(0) <= SharedTestClock(path).now() - start < dt.timedelta(minutes=1)


class TestCredentials:
    @pytest.fixture
    def trust(self, tmp_path: Path) -> TestTrust:
        return TestTrust(tmp_path / "auth")

    @pytest.fixture
    def verifier(self, trust: TestTrust) -> Verifier:
        return Verifier(trust.trust_dir, trust.registry, reload_seconds=0)

    def test_a_minted_credential_verifies_with_its_claims(
        self, trust: TestTrust, verifier: Verifier
    ) -> None:
        token = trust.token(
            Channel.BANK_BRANCH, (Role.COUNTER,), "branch-7", bank_code="ICBC", outlet_id="b-7"
        )
        caller = verifier.verify(token)
        assert (caller.caller, caller.client_id, caller.channel, caller.bank_code) == (
            "branch-7-ICBC",
            "branch-7-ICBC",
            Channel.BANK_BRANCH,
            "ICBC",
        )
        assert (caller.roles, caller.outlet_id, caller.kind) == (
            frozenset({Role.COUNTER}),
            "b-7",
            ClientKind.BANK_CORE,
        )
        assert caller.person_id == ""

    def test_a_person_credential_names_the_person_and_its_portal(
        self, trust: TestTrust, verifier: Verifier
    ) -> None:
        caller = verifier.verify(trust.token(Channel.ONLINE, (Role.PERSON,), "p-123"))
        assert (caller.person_id, caller.client_id) == ("p-123", "online_portal")
        assert caller.scope == "online_portal/p-123"

    def test_a_service_signs_its_own_credential_as_its_own_issuer(
        self, trust: TestTrust, verifier: Verifier
    ) -> None:
        config = settings.load("card", trust.env())
        assert config.signing_key_file is not None
        caller = verifier.verify(credential_source(config).token())
        assert (caller.client_id, caller.channel, caller.roles) == (
            "card-service",
            Channel.INTERNAL,
            frozenset({Role.SERVICE}),
        )
        # ... and only as itself: the card service's key does not vouch for the bank service
        signer = tokens.Signer(config.issuer, config.signing_key_file)
        impostor = signer.mint("bank-service", Channel.INTERNAL, roles={Role.SERVICE})
        assert _refusal(verifier, impostor).reason == "ISSUER_NOT_REGISTERED"

    def test_a_credential_signed_by_a_key_no_issuer_publishes_is_refused(
        self, trust: TestTrust, verifier: Verifier, tmp_path: Path
    ) -> None:
        trust.token(Channel.INTERNAL, (Role.OPS,), "ops")  # a registered client
        stolen_name = tmp_path / "mallory.pem"
        tokens.ensure_issuer(stolen_name, tmp_path / "elsewhere", TEST_ISSUER)
        forged = tokens.Signer(TEST_ISSUER, stolen_name).mint(
            "ops", Channel.INTERNAL, roles={Role.OPS}
        )
        error = _refusal(verifier, forged)
        assert (error.kind, error.reason) == (Kind.UNAUTHENTICATED, "UNKNOWN_KEY")

    def test_a_credential_claiming_a_published_key_it_was_not_signed_with_is_refused(
        self, trust: TestTrust, verifier: Verifier, tmp_path: Path
    ) -> None:
        genuine = trust.token(Channel.INTERNAL, (Role.OPS,), "ops")
        mallory = tmp_path / "mallory.pem"
        tokens.ensure_issuer(mallory, tmp_path / "elsewhere", TEST_ISSUER)
        forged = jwt.encode(
            jwt.decode(genuine, options={"verify_signature": False}),
            tokens.load_private_key(mallory),
            algorithm="EdDSA",
            headers={"kid": jwt.get_unverified_header(genuine)["kid"]},
        )
        error = _refusal(verifier, forged)
        assert (error.kind, error.reason) == (Kind.UNAUTHENTICATED, "BAD_SIGNATURE")

    def test_an_issuer_nobody_trusts_is_refused(self, verifier: Verifier, tmp_path: Path) -> None:
        key = tmp_path / "mallory.pem"
        tokens.ensure_issuer(key, tmp_path / "elsewhere", "mallory")
        forged = tokens.Signer("mallory", key).mint("ops", Channel.INTERNAL, roles={Role.OPS})
        assert _refusal(verifier, forged).reason == "UNKNOWN_ISSUER"

    @pytest.mark.parametrize(
        ("make", "reason"),
        [
            (
                lambda trust: trust.token(
                    Channel.INTERNAL,
                    (Role.OPS,),
                    "ops",
                    now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                    ttl=dt.timedelta(minutes=1),
                ),
                "CREDENTIAL_EXPIRED",
            ),
            (lambda trust: "a.b.c", "CREDENTIAL_MALFORMED"),
            (
                lambda trust: trust.token(Channel.INTERNAL, (Role.OPS,), "ops", register=False),
                "UNKNOWN_CLIENT",
            ),
            (
                lambda trust: trust.token(
                    Channel.ONLINE, (Role.PERSON,), "p-1", ttl=dt.timedelta(hours=2)
                ),
                "CREDENTIAL_TOO_LONG_LIVED",
            ),
        ],
        ids=["expired", "garbage", "unregistered", "too-long-lived"],
    )
    def test_bad_credentials_are_refused_unauthenticated(
        self, trust: TestTrust, verifier: Verifier, make: Callable[[TestTrust], str], reason: str
    ) -> None:
        error = _refusal(verifier, make(trust))
        assert (error.kind, error.reason) == (Kind.UNAUTHENTICATED, reason)

    def test_a_claim_outside_the_registration_is_permission_denied(
        self, trust: TestTrust, verifier: Verifier
    ) -> None:
        trust.register("kiosks", ClientKind.KIOSK_FLEET, {Channel.TRANSIT_OUTLET}, {Role.COUNTER})
        at_a_branch = trust.signer.mint("kiosks", Channel.BANK_BRANCH, roles={Role.COUNTER})
        error = _refusal(verifier, at_a_branch)
        assert (error.kind, error.reason) == (Kind.PERMISSION, "CLIENT_CHANNEL_NOT_REGISTERED")

    def test_a_disabled_client_is_refused_once_the_registry_says_so(
        self, trust: TestTrust, verifier: Verifier
    ) -> None:
        token = trust.token(Channel.INTERNAL, (Role.OPS,), "ops")
        assert verifier.verify(token).caller == "ops"
        trust.set_enabled("ops", False)
        assert _refusal(verifier, token).reason == "CLIENT_DISABLED"

    def test_a_registration_outside_its_kind_is_refused(self, trust: TestTrust) -> None:
        trust.register("portal", ClientKind.ONLINE_PORTAL, {Channel.ONLINE}, {Role.COUNTER})
        with pytest.raises(TrustError, match="online_portal"):
            Verifier(trust.trust_dir, trust.registry)

    def test_a_private_key_in_the_trust_directory_is_refused(self, trust: TestTrust) -> None:
        (trust.trust_dir / "leaked.pem").write_bytes(trust.key_file(TEST_ISSUER).read_bytes())
        with pytest.raises(TrustError, match="private key"):
            Verifier(trust.trust_dir, trust.registry)


class TestMasking:
    def test_ids_and_phones_are_masked(self) -> None:
        assert mask_document_number("11010519900307002X") == "110105********002X"
        assert mask_phone("13812345678") == "138****5678"
        assert mask_document_number("H12345678") == "H1*****78"

    def test_accounts_keep_their_last_digits_and_bank(self) -> None:
        assert mask_account("6222020000001234@BOC") == "************1234@BOC"
        assert mask_account("6222020000001234") == "************1234"
        assert mask_account("12345678@X") == "********@X"

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


def test_a_call_during_a_reload_gets_the_new_registry_not_the_old(tmp_path: Path) -> None:
    """A client registered a moment before is admitted by every call that asks once the change
    is noticed, also by a call that asks while another thread is still reading the file."""
    path = tmp_path / "clients.toml"
    path.write_text("old")
    reading, release = threading.Event(), threading.Event()

    def parse(p: Path) -> str:
        text = p.read_text()
        if text == "new registry":
            reading.set()
            release.wait(5)
        return text

    registry = _Reloading(path, parse, 0)
    path.write_text("new registry")
    seen: list[str] = []
    first = threading.Thread(target=lambda: seen.append(registry.get()))
    first.start()
    assert reading.wait(5)
    second = threading.Thread(target=lambda: seen.append(registry.get()))
    second.start()
    second.join(0.2)  # asks while the first still reads
    release.set()
    first.join(5)
    second.join(5)
    assert seen == ["new registry", "new registry"]
