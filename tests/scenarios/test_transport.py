"""Transport: every listener serves mutual TLS, every credential is bound to its client's
certificate (RFC 8705), production refuses plaintext, and certificates rotate without a
restart. Over real gRPC against the real services, whatever SSCARD_TEST_TLS says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.identity.main import build as build_identity
from services.platform import config as settings
from services.platform import tls
from services.platform.auth import Channel, ClientKind, Role
from services.platform.cli import ensure_dev_secrets, main
from services.platform.config import TlsFiles
from sscard.card.v1 import card_pb2 as pb
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc
from tests.cardsuite import BANK, INSTANT, Suite, rpc_error
from tests.conftest import Running, free_port
from tests.support import refusal, wait_serving
from tests.trust import TestTrust

LIST_EVENTS = identity_pb2.ListPersonEventsRequest()


@pytest.fixture
def mtls(service_env: dict[str, str], trust: TestTrust) -> dict[str, str]:
    """The services under test speak mutual TLS (test CA, certificates under the test's dir)."""
    service_env.update(trust.tls_env())
    return service_env


@pytest.fixture
def identity(mtls: dict[str, str], start_service: Callable[..., Running]) -> Running:
    running = start_service("identity", build_identity)
    wait_serving(running.channel)
    return running


def channel_with(port: int, files: TlsFiles) -> grpc.Channel:
    return grpc.secure_channel(f"127.0.0.1:{port}", tls.client_tls(files).credentials)


def events(channel: grpc.Channel, metadata: Any) -> Any:
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    return stub.ListPersonEvents(LIST_EVENTS, metadata=metadata, timeout=5)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def ops(trust: TestTrust, certificate: bytes | None = None) -> list[tuple[str, str]]:
    """The operations console's credential, bound to the tests' client certificate unless
    another is named."""
    if certificate is None:
        return bearer(trust.token(Channel.INTERNAL, (Role.OPS,), "ops"))
    trust.register("ops", ClientKind.OPS_CONSOLE, {Channel.INTERNAL}, {Role.OPS})
    return bearer(
        trust.signer.mint("ops", Channel.INTERNAL, roles={Role.OPS}, certificate=certificate)
    )


def test_a_card_is_issued_with_every_service_speaking_mutual_tls(
    mtls: dict[str, str], start_service: Callable[..., Any], token: Callable[..., Any]
) -> None:
    """The card service's saga calls identity and bank over mTLS with its own bound credential."""
    suite = Suite(start_service, token)
    person = suite.person()
    started = suite.apply(person, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
    assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED
    assert suite.get(started.card_id).status == pb.CARD_STATUS_READY


def test_a_plaintext_call_is_refused(identity: Running, trust: TestTrust) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{identity.server.port}") as plain:
        error = rpc_error(lambda: events(plain, ops(trust)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_without_a_certificate_is_refused(identity: Running, trust: TestTrust) -> None:
    server_only = grpc.ssl_channel_credentials(root_certificates=trust.ca_file.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{identity.server.port}", server_only) as channel:
        error = rpc_error(lambda: events(channel, ops(trust)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_from_an_unknown_ca_is_refused(
    identity: Running, trust: TestTrust, tmp_path: Path
) -> None:
    rogue_ca, rogue_key = tmp_path / "rogue-ca.pem", tmp_path / "rogue-ca.key"
    tls.ensure_ca(rogue_ca, rogue_key, "rogue CA")
    cert, key = tmp_path / "rogue.pem", tmp_path / "rogue.key"
    tls.issue(rogue_ca, rogue_key, cert, key, "test-client")
    files = TlsFiles(trust.ca_file, cert, key)  # trusts the real servers, presents the rogue's
    with channel_with(identity.server.port, files) as channel:
        error = rpc_error(lambda: events(channel, ops(trust)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_credential_replayed_over_another_clients_certificate_is_refused(
    identity: Running, trust: TestTrust
) -> None:
    stolen = ops(trust)  # bound to the tests' client certificate
    events(identity.channel, stolen)  # its owner uses it
    thief = trust.certificate("thief")  # a certificate of the same CA: a registered integrator's
    with (
        channel_with(identity.server.port, thief) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        events(channel, stolen)
    code, error = refusal(refused)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "CREDENTIAL_NOT_BOUND_TO_CERTIFICATE"


def test_one_of_the_suites_services_may_relay_the_credential_of_the_call_it_serves(
    identity: Running, trust: TestTrust
) -> None:
    """As the bank forwards a counter's activation to the card service: the relaying service
    is known by its certificate, which the CA issued to its client id."""
    counters = ops(trust)
    with channel_with(identity.server.port, trust.certificate("card-service")) as channel:
        events(channel, counters)


def test_a_credential_bound_to_no_certificate_is_refused(
    identity: Running, trust: TestTrust
) -> None:
    trust.register("ops", ClientKind.OPS_CONSOLE, {Channel.INTERNAL}, {Role.OPS})
    unbound = trust.signer.mint("ops", Channel.INTERNAL, roles={Role.OPS})
    with pytest.raises(grpc.RpcError) as refused:
        events(identity.channel, bearer(unbound))
    code, error = refusal(refused)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "CREDENTIAL_NOT_BOUND_TO_CERTIFICATE"


def test_the_server_takes_a_renewed_certificate_and_trust_bundle_without_a_restart(
    identity: Running, trust: TestTrust, mtls: dict[str, str], tmp_path: Path
) -> None:
    """Rotation to a new CA: the server's certificate and bundle are replaced on disk; a new
    connection sees them, the connection made before keeps working."""
    before = identity.channel
    events(before, ops(trust))
    new_ca, new_ca_key = tmp_path / "new-ca.pem", tmp_path / "new-ca.key"
    tls.ensure_ca(new_ca, new_ca_key, "next CA")
    # The bundle trusts both CAs while clients move over; the server's certificate is the new CA's.
    Path(mtls["SSCARD_TLS_CA_FILE"]).write_bytes(trust.ca_file.read_bytes() + new_ca.read_bytes())
    tls.issue(
        new_ca,
        new_ca_key,
        Path(mtls["SSCARD_IDENTITY_TLS_CERT_FILE"]),
        Path(mtls["SSCARD_IDENTITY_TLS_KEY_FILE"]),
        "identity-service",
        tls.service_hosts("identity"),
    )
    client_cert, client_key = tmp_path / "next-client.pem", tmp_path / "next-client.key"
    tls.issue(new_ca, new_ca_key, client_cert, client_key, "test-client")
    # Only the new CA: this client cannot reach a server still presenting the old certificate.
    next_client = tls.client_tls(TlsFiles(new_ca, client_cert, client_key))
    with grpc.secure_channel(f"127.0.0.1:{identity.server.port}", next_client.credentials) as ch:
        events(ch, ops(trust, next_client.certificate))
    events(before, ops(trust))  # the connection made before the rotation goes on


def test_a_service_calls_the_others_with_its_renewed_certificate_without_a_restart(
    mtls: dict[str, str],
    start_service: Callable[..., Running],
    token: Callable[..., Any],
    trust: TestTrust,
    tmp_path: Path,
) -> None:
    """The card service's certificate (also its client certificate) is renewed by a new CA
    while it runs: its sagas go on calling identity and bank, and once identity trusts only the
    new CA (the old one retired there, its connections made anew) they still get through."""
    suite = Suite(start_service, token)
    before = suite.person()
    started = suite.apply(before, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
    assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED

    new_ca, new_ca_key = tmp_path / "new-ca.pem", tmp_path / "new-ca.key"
    tls.ensure_ca(new_ca, new_ca_key, "next CA")
    bundle = Path(mtls["SSCARD_TLS_CA_FILE"])
    bundle.write_bytes(bundle.read_bytes() + new_ca.read_bytes())  # both CAs while moving over
    tls.issue(
        new_ca,
        new_ca_key,
        Path(mtls["SSCARD_CARD_TLS_CERT_FILE"]),
        Path(mtls["SSCARD_CARD_TLS_KEY_FILE"]),
        "card-service",
        tls.service_hosts("card"),
    )
    during = suite.person()
    started = suite.apply(during, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
    assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED

    after = suite.person()
    suite.identity_server.server.stop(0)
    only_new = tmp_path / "only-new-ca.pem"
    only_new.write_bytes(new_ca.read_bytes())
    mtls["SSCARD_TLS_CA_FILE"] = str(only_new)
    start_service("identity", build_identity)  # same port and database, trusts the new CA only
    started = suite.apply(after, metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
    assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED


def test_a_half_written_certificate_keeps_the_last_good_one(
    identity: Running, trust: TestTrust, mtls: dict[str, str]
) -> None:
    Path(mtls["SSCARD_IDENTITY_TLS_CERT_FILE"]).write_text("-----BEGIN CERTIFICATE-----\n")
    late = tls.client_tls(trust.certificate("late"))
    with grpc.secure_channel(f"127.0.0.1:{identity.server.port}", late.credentials) as channel:
        events(channel, ops(trust, late.certificate))


def test_probes_without_a_certificate_read_health_only(
    mtls: dict[str, str], start_service: Callable[..., Running], trust: TestTrust
) -> None:
    """Kubernetes' gRPC probes speak plaintext: the health-only listener answers them, and
    serves nothing else."""
    port = free_port()
    mtls["SSCARD_IDENTITY_HEALTH_PORT"] = str(port)
    start_service("identity", build_identity)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as probe:
        wait_serving(probe)
        answer = health_pb2_grpc.HealthStub(probe).Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        error = rpc_error(lambda: events(probe, ops(trust)))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_production_refuses_plaintext(tmp_path: Path) -> None:
    with pytest.raises(settings.ConfigError, match="SSCARD_TLS=off is refused"):
        settings.load(
            "identity",
            {
                "SSCARD_ENVIRONMENT": "production",
                "SSCARD_TLS": "off",
                "SSCARD_IDENTITY_TOKEN_FILE": "t",
            },
        )
    env = {
        **os.environ,
        "SSCARD_ENVIRONMENT": "production",
        "SSCARD_TLS": "off",
        "SSCARD_IDENTITY_TOKEN_FILE": str(tmp_path / "token"),
    }
    started = subprocess.run(
        [sys.executable, "-m", "services.identity"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert started.stderr.strip().splitlines() == [
        "identity: configuration error: SSCARD_TLS=off is refused when "
        "SSCARD_ENVIRONMENT=production: the services speak mutual TLS only"
    ]


def test_sscard_call_and_token_use_the_development_certificates(
    service_env: dict[str, str],
    start_service: Callable[..., Running],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As after `make run`: `sscard keys init` made a CA and a certificate per service and per
    registered client; `sscard call` connects with the client's certificate and a credential
    bound to it, and `sscard token` binds to it, with no extra flags."""
    var = tmp_path / "var"
    for name, value in (
        ("SSCARD_KEYS_DIR", var / "keys"),
        ("SSCARD_TRUST_DIR", var / "trust"),
        ("SSCARD_TLS_DIR", var / "tls"),
    ):
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("SSCARD_ENVIRONMENT", raising=False)
    monkeypatch.delenv("SSCARD_TLS", raising=False)
    ensure_dev_secrets(var)
    service_env.update(
        {
            "SSCARD_TLS": "on",
            "SSCARD_TLS_CA_FILE": str(var / "tls" / "ca.pem"),
            "SSCARD_IDENTITY_TLS_CERT_FILE": str(var / "tls" / "identity-service.pem"),
            "SSCARD_IDENTITY_TLS_KEY_FILE": str(var / "tls" / "identity-service.key"),
            "SSCARD_TRUST_DIR": str(var / "trust"),
            "SSCARD_CLIENT_REGISTRY": str(settings.REPO_ROOT / "deploy" / "clients.toml"),
        }
    )
    identity = start_service("identity", build_identity)
    target = f"127.0.0.1:{identity.server.port}"
    assert main(["call", "identity", "ListPersonEvents", "{}", "--target", target]) == 0
    assert json.loads(capsys.readouterr().out) == {}
    assert main(["token", "--client", "hr-feed"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    certificate = (var / "tls" / "hr-feed.pem").read_bytes()
    assert claims["cnf"] == {"x5t#S256": tls.thumbprint(certificate)}
