"""A client follows its certificate files: once they are renewed, new calls present the new
certificate with a credential bound to it, and a call under way at the swap finishes on the
connection it started on. Over real gRPC, mutual TLS both ways."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest

from services.platform import tls
from services.platform.clients import open_channel
from services.platform.config import TlsFiles
from services.platform.tokens import Signer, SigningSource, ensure_issuer

PEER = "/sscard.test.Peer/Certificate"


class Peer:
    """A server answering each call with the certificate its client presented; a call asking
    ``wait`` is held until ``release`` is set."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()

    def certificate(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if request == b"wait":
            self.holding.set()
            self.release.wait(10)
        presented: Any = context.auth_context()["x509_pem_cert"][0]
        return bytes(presented)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """The trust bundle both sides read: the first CA's certificate to begin with."""
    tls.ensure_ca(tmp_path / "ca.pem", tmp_path / "ca.key")
    path = tmp_path / "bundle.pem"
    path.write_bytes((tmp_path / "ca.pem").read_bytes())
    return path


@pytest.fixture
def peer(tmp_path: Path, bundle: Path) -> Iterator[tuple[Peer, int]]:
    files = TlsFiles(bundle, tmp_path / "peer.pem", tmp_path / "peer.key", reload_seconds=0)
    tls.issue(
        tmp_path / "ca.pem",
        tmp_path / "ca.key",
        files.cert_file,
        files.key_file,
        "peer",
        tls.LOCAL_HOSTS,
    )
    answering = Peer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.unary_unary_rpc_method_handler(answering.certificate)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("sscard.test.Peer", {"Certificate": handler})]
    )
    port = server.add_secure_port("127.0.0.1:0", tls.server_credentials(files))
    server.start()
    yield answering, port
    answering.release.set()
    server.stop(0)


def bound_to(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return str(claims["cnf"]["x5t#S256"])


def test_new_calls_present_the_renewed_certificate_and_a_call_under_way_finishes(
    tmp_path: Path, bundle: Path, peer: tuple[Peer, int]
) -> None:
    answering, port = peer
    own_files = TlsFiles(bundle, tmp_path / "own.pem", tmp_path / "own.key", reload_seconds=0)
    tls.issue(
        tmp_path / "ca.pem",
        tmp_path / "ca.key",
        own_files.cert_file,
        own_files.key_file,
        "card-service",
    )
    old_certificate = own_files.cert_file.read_bytes()
    own = tls.client_tls(own_files)
    ensure_issuer(tmp_path / "issuer.pem", tmp_path / "trust", "sscard-card")
    signer = Signer("sscard-card", tmp_path / "issuer.pem")
    credential = SigningSource(signer, "card-service", dt.timedelta(hours=1), bound_to=own)
    with open_channel(f"127.0.0.1:{port}", own) as channel:
        ask = channel.unary_unary(PEER)
        assert ask(b"", timeout=5) == old_certificate
        assert bound_to(credential.token()) == tls.thumbprint(old_certificate)
        under_way = ask.future(b"wait", timeout=20)
        assert answering.holding.wait(10)

        # Rotation to a new CA: the bundle trusts both while clients move over; the client's
        # new key and certificate are the new CA's.
        new_ca, new_ca_key = tmp_path / "new-ca.pem", tmp_path / "new-ca.key"
        tls.ensure_ca(new_ca, new_ca_key, "next CA")
        bundle.write_bytes(bundle.read_bytes() + new_ca.read_bytes())
        tls.issue(new_ca, new_ca_key, own_files.cert_file, own_files.key_file, "card-service")
        new_certificate = own_files.cert_file.read_bytes()

        assert ask(b"", timeout=5) == new_certificate
        assert bound_to(credential.token()) == tls.thumbprint(new_certificate)
        answering.release.set()
        assert under_way.result(timeout=10) == old_certificate


def test_a_half_written_certificate_keeps_the_last_good_one(
    tmp_path: Path, bundle: Path, peer: tuple[Peer, int]
) -> None:
    _, port = peer
    own_files = TlsFiles(bundle, tmp_path / "own.pem", tmp_path / "own.key", reload_seconds=0)
    tls.issue(
        tmp_path / "ca.pem",
        tmp_path / "ca.key",
        own_files.cert_file,
        own_files.key_file,
        "card-service",
    )
    certificate = own_files.cert_file.read_bytes()
    with open_channel(f"127.0.0.1:{port}", tls.client_tls(own_files)) as channel:
        ask = channel.unary_unary(PEER)
        assert ask(b"", timeout=5) == certificate
        own_files.cert_file.write_text("-----BEGIN CERTIFICATE-----\n")
        assert ask(b"", timeout=5) == certificate
