"""Signing keys and credentials: what an issuer does (development tools, tests and services).

An issuer signs with an Ed25519 private key kept in a PEM file that only it reads; it publishes
the public half in its JWKS document (``<trust dir>/<issuer>.jwks.json``), where the services
find it by ``kid`` (the key's RFC 7638 thumbprint). Rotation: ``rotate`` makes a new key,
publishes it beside the old one and signs with it from then on; ``retire`` removes the old
public key once no token it signed can still be alive (at most 24 hours).

A credential may be bound to its client's TLS certificate (RFC 8705): ``mint(certificate=...)``
adds ``cnf: {"x5t#S256": <thumbprint>}``, and a service then accepts it only over a connection
presenting that certificate.

A service obtains its own credential from a ``CredentialSource``: in production a token file
that the deployment keeps fresh (the service holds no key that can sign); in development and
tests a signing key of its own issuer, refused in production.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.platform.auth import Channel, Role
from services.platform.tls import ClientTls, thumbprint
from services.platform.trust import AUDIENCE, CONFIRMATION, THUMBPRINT


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    """The public JWK of ``key``, its ``kid`` the RFC 7638 thumbprint."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = _b64(hashlib.sha256(canonical).digest())
    return {**members, "kid": kid, "alg": "EdDSA", "use": "sig"}


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def _write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(pem)
    temporary.chmod(0o600)
    temporary.replace(path)


def jwks_path(trust_dir: Path, issuer: str) -> Path:
    return trust_dir / f"{issuer}.jwks.json"


def _published(trust_dir: Path, issuer: str) -> list[dict[str, Any]]:
    path = jwks_path(trust_dir, issuer)
    if not path.exists():
        return []
    keys: list[dict[str, Any]] = json.loads(path.read_text())["keys"]
    return keys


def _publish_keys(trust_dir: Path, issuer: str, keys: Iterable[dict[str, Any]]) -> None:
    trust_dir.mkdir(parents=True, exist_ok=True)
    path = jwks_path(trust_dir, issuer)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"keys": list(keys)}, indent=2) + "\n")
    temporary.replace(path)


def ensure_issuer(key_file: Path, trust_dir: Path, issuer: str) -> None:
    """Create ``issuer``'s key pair unless it exists, and make sure its public key is published."""
    if not key_file.exists():
        _write_private_key(key_file, Ed25519PrivateKey.generate())
    jwk = public_jwk(load_private_key(key_file))
    keys = _published(trust_dir, issuer)
    if jwk["kid"] not in {k.get("kid") for k in keys}:
        _publish_keys(trust_dir, issuer, [*keys, jwk])


def rotate(key_file: Path, trust_dir: Path, issuer: str) -> str:
    """A new signing key for ``issuer``, published beside the old one; returns its kid."""
    key = Ed25519PrivateKey.generate()
    jwk = public_jwk(key)
    _publish_keys(trust_dir, issuer, [*_published(trust_dir, issuer), jwk])
    _write_private_key(key_file, key)  # sign with the new key only once it is published
    return jwk["kid"]


def retire(trust_dir: Path, issuer: str, kid: str) -> bool:
    """Stop trusting one of ``issuer``'s keys; False if it was not published."""
    keys = _published(trust_dir, issuer)
    kept = [k for k in keys if k.get("kid") != kid]
    if len(kept) == len(keys):
        return False
    _publish_keys(trust_dir, issuer, kept)
    return True


class Signer:
    """Signs credentials as ``issuer`` with the key in ``key_file`` (re-read when it changes)."""

    def __init__(self, issuer: str, key_file: Path) -> None:
        self.issuer = issuer
        self._file = key_file
        self._lock = threading.Lock()
        self._stamp = -1
        self._key: Ed25519PrivateKey | None = None
        self._kid = ""
        self._load()

    def _load(self) -> tuple[Ed25519PrivateKey, str]:
        stamp = self._file.stat().st_mtime_ns
        with self._lock:
            if stamp != self._stamp or self._key is None:
                self._key = load_private_key(self._file)
                self._kid = public_jwk(self._key)["kid"]
                self._stamp = stamp
            return self._key, self._kid

    def mint(
        self,
        client_id: str,
        channel: Channel,
        *,
        roles: Iterable[Role] = (),
        subject: str = "",
        bank_code: str = "",
        outlet_id: str = "",
        operator_id: str = "",
        ttl: dt.timedelta = dt.timedelta(hours=1),
        now: dt.datetime | None = None,
        certificate: bytes | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A credential for ``client_id`` (``subject``: the person or employer it acts for),
        bound to ``certificate`` (PEM: the client's TLS certificate) when one is given."""
        key, kid = self._load()
        issued = now or dt.datetime.now(dt.UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": subject or client_id,
            "client_id": client_id,
            "iat": int(issued.timestamp()),
            "exp": int((issued + ttl).timestamp()),
            "jti": secrets.token_hex(8),
            "channel": channel.value,
            "roles": sorted(Role(r).value for r in roles),
        }
        for name, value in (
            ("bank_code", bank_code),
            ("outlet_id", outlet_id),
            ("operator_id", operator_id),
        ):
            if value:
                claims[name] = value
        if certificate is not None:
            claims[CONFIRMATION] = {THUMBPRINT: thumbprint(certificate)}
        claims.update(extra or {})
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


class CredentialSource(Protocol):
    """Where a service's own bearer credential comes from."""

    def token(self) -> str: ...


class SigningSource:
    """Development and tests: the service signs its own credential with its own issuer's key
    (the operations console, role ``ops``, with the development issuer's, naming the staff
    operator it acts for), bound to its own certificate (``bound_to``) when it speaks TLS: the
    certificate of the moment, so a renewed certificate gets a credential of its own at once."""

    def __init__(
        self,
        signer: Signer,
        client_id: str,
        ttl: dt.timedelta,
        roles: frozenset[Role] = frozenset({Role.SERVICE}),
        bound_to: ClientTls | None = None,
        operator_id: str = "",
    ) -> None:
        self._signer = signer
        self._own = bound_to
        self._certificate: bytes | None = None
        self._client_id = client_id
        self._ttl = ttl
        self._roles = roles
        self._operator_id = operator_id
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = dt.datetime.min.replace(tzinfo=dt.UTC)

    def token(self) -> str:
        now = dt.datetime.now(dt.UTC)
        certificate = self._own.certificate if self._own is not None else None
        with self._lock:
            if now >= self._renew_at or certificate != self._certificate:
                self._token = self._signer.mint(
                    self._client_id,
                    Channel.INTERNAL,
                    roles=self._roles,
                    ttl=self._ttl,
                    certificate=certificate,
                    operator_id=self._operator_id,
                )
                self._certificate = certificate
                self._renew_at = now + self._ttl / 2
            return self._token


class TokenFileSource:
    """Production: a credential the deployment writes to a file and renews (re-read on change)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp = -1
        self._token = ""
        self._lock = threading.Lock()

    def token(self) -> str:
        stamp = self._path.stat().st_mtime_ns
        with self._lock:
            if stamp != self._stamp:
                self._token = self._path.read_text().strip()
                self._stamp = stamp
            return self._token
