"""Mutual TLS: the one place that turns certificate files into gRPC credentials.

* A service's listener serves TLS and requires a client certificate signed by a CA of the
  trust bundle (``SSCARD_TLS_CA_FILE``). Its certificate, key and trust bundle are read again
  when one of the files changes (looked at every ``SSCARD_TRUST_RELOAD_SECONDS``): grpcio asks
  before every new connection's handshake, so a renewed certificate or bundle takes effect for
  new connections while established ones go on.
* A client (a service calling another, the console, ``sscard call``) presents its own
  certificate and trusts the servers the bundle vouches for. It follows its files too: once they
  change, new calls go over a channel built with the new set (``clients.open_channel``) while
  calls under way finish on the old one, and its credential is bound to the new certificate.
* A credential is bound to its client's certificate (RFC 8705): its ``cnf`` claim carries
  ``x5t#S256``, the base64url SHA-256 of the certificate's DER encoding (``thumbprint``).
* Development certificates: ``ensure_ca`` and ``issue`` make a CA and certificates signed by it
  (``sscard keys init``, ``make run`` and the tests); production brings its own.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.platform.config import ConfigError, TlsFiles
from services.platform.watch import FileWatch

log = logging.getLogger("sscard.tls")

# Names a development service certificate answers to: on this machine, in compose (the service's
# name) and in the cluster (headless Services in namespace sscard).
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@functools.lru_cache(maxsize=1024)
def thumbprint(pem: bytes) -> str:
    """``x5t#S256`` of a PEM certificate: base64url (no padding) SHA-256 of its DER encoding."""
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@functools.lru_cache(maxsize=1024)
def common_name(pem: bytes) -> str:
    """The subject common name of a PEM certificate: the client id the CA issued it to."""
    names = x509.load_pem_x509_certificate(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"the {what} {path} does not exist (`make run` or `sscard keys init` creates "
            "development certificates under var/tls/; SSCARD_TLS=off turns TLS off in development)"
        ) from exc


@dataclass(frozen=True)
class _Material:
    ca: bytes
    cert: bytes
    key: bytes


def _load(files: TlsFiles) -> _Material:
    material = _Material(
        _read(files.ca_file, "CA bundle"),
        _read(files.cert_file, "certificate"),
        _read(files.key_file, "private key"),
    )
    try:
        cert = x509.load_pem_x509_certificate(material.cert)
        key = serialization.load_pem_private_key(material.key, password=None)
        x509.load_pem_x509_certificates(material.ca)
    except ValueError as exc:
        raise ConfigError(f"{files.cert_file.name}: not a PEM certificate, key and bundle") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    if cert.public_key().public_bytes(pem, public) != key.public_key().public_bytes(pem, public):
        raise ConfigError(f"{files.key_file.name} is not the key of {files.cert_file.name}")
    return material


class _Following:
    """A process's certificate, key and trust bundle, read again when one of the files changed
    (looked at every ``files.reload_seconds``); a half-written or mismatched set keeps the last
    good one, logged."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._watch = FileWatch(
            (files.ca_file, files.cert_file, files.key_file), files.reload_seconds
        )
        self.material = _load(files)

    def renewed(self) -> bool:
        """Whether the files now hold another good set than before (then in ``material``)."""
        if not self._watch.changed():
            return False
        with self._lock:
            try:
                material = _load(self._files)
            except (ConfigError, OSError) as exc:  # half written, unreadable: at the next change
                log.error("kept the previous certificate: %s", exc)
                return False
            if material == self.material:
                return False
            self.material = material
        log.info("reloaded the certificate %s and its trust bundle", self._files.cert_file)
        return True


def _server_configuration(material: _Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key, material.cert)], root_certificates=material.ca
    )


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """TLS for a listener: client certificates required, files re-read when they change (grpcio
    asks before each new connection's handshake)."""
    following = _Following(files)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        return _server_configuration(following.material) if following.renewed() else None

    # grpcio takes None from the fetcher as "no change"; its type stubs do not say so.
    fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], fetch)
    return grpc.dynamic_ssl_server_credentials(
        _server_configuration(following.material), fetcher, require_client_authentication=True
    )


@dataclass(frozen=True)
class ClientSide:
    """What a client presents and trusts at one moment: the credentials of a channel and the
    certificate its own bearer credential is bound to."""

    credentials: grpc.ChannelCredentials
    certificate: bytes

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.certificate)


def _client_side(material: _Material) -> ClientSide:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=material.ca, private_key=material.key, certificate_chain=material.cert
    )
    return ClientSide(credentials, material.cert)


class ClientTls:
    """mTLS for a client, following its files: ``current()`` is its own certificate and key and
    the CA bundle it trusts as they are now. A renewed set replaces it (a new ``ClientSide``);
    channels (``clients.open_channel``) and the credential bound to the certificate
    (``tokens.SigningSource``) look here, so they move over together."""

    def __init__(self, files: TlsFiles) -> None:
        self._following = _Following(files)
        self._lock = threading.Lock()
        self._current = _client_side(self._following.material)

    def current(self) -> ClientSide:
        # One lock from the look at the files to the new side: a call that asks while another
        # builds the renewed side waits for it, rather than taking the side before and making
        # a channel swap back to it.
        with self._lock:
            if self._following.renewed():
                self._current = _client_side(self._following.material)
            return self._current

    @property
    def credentials(self) -> grpc.ChannelCredentials:
        return self.current().credentials

    @property
    def certificate(self) -> bytes:
        return self.current().certificate

    @property
    def thumbprint(self) -> str:
        return self.current().thumbprint


def client_tls(files: TlsFiles) -> ClientTls:
    """mTLS for a client: its own certificate and key, and the CA bundle it trusts."""
    return ClientTls(files)


# --- development certificates -------------------------------------------------------------


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    if private:
        temporary.chmod(0o600)
    temporary.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sscard development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def ensure_ca(cert_file: Path, key_file: Path, name: str = "sscard development CA") -> None:
    """A self-signed development CA (ten years) unless ``cert_file`` exists."""
    if cert_file.exists() and key_file.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(key_file, _key_pem(key), private=True)
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM))


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue(
    ca_cert_file: Path,
    ca_key_file: Path,
    cert_file: Path,
    key_file: Path,
    common_name: str,
    hosts: Iterable[str] = (),
    days: int = 365,
) -> None:
    """A certificate for ``common_name`` signed by the CA, usable as client and (with ``hosts``
    as its subject alternative names) as server; replaces the files atomically."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_file.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key_file} is not an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    names = _san(hosts)
    if names:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(
        ca_key, hashes.SHA256()
    )
    # The key first: a reader that sees the new certificate finds its key already in place.
    _write(key_file, _key_pem(key), private=True)
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM))


def service_hosts(name: str) -> tuple[str, ...]:
    """The names a service's certificate answers to: locally, in compose and in the cluster."""
    return (*LOCAL_HOSTS, name, f"{name}.sscard.svc", f"{name}.sscard.svc.cluster.local")
