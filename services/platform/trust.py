"""Issuers, the client registry, and credential verification.

* **Issuers** are known by their public keys only: one JWKS document per issuer in the trust
  directory (``<issuer>.jwks.json``; the file's stem is the ``iss`` claim). A token names its
  key with ``kid``; an issuer may publish several keys at once, so keys rotate without downtime
  (publish the new key, sign with it, retire the old one after the longest token lifetime).
  A private key in the trust directory is refused: services never hold a key that can sign.
* **The client registry** (a TOML file, ``deploy/clients.toml`` in development) says who each
  client is, which issuers may vouch for it, and exactly which channels, roles, bank and
  outlets it may use. A claim outside that is PERMISSION_DENIED naming the mismatch.
* Both files are re-read when they change (checked every ``reload_seconds``), so operations add,
  change and disable a client, or rotate a key, without restarting a service. A file that does
  not parse leaves the last good version in force and is logged.

* **Certificate binding** (RFC 8705): when the service speaks mutual TLS, every credential must
  carry ``cnf: {"x5t#S256": ...}``, the thumbprint of the client certificate it was issued to,
  and is accepted only over a connection presenting that certificate: a credential copied off
  one client's machine is useless over another client's certificate. Every kind of client is
  bound, a person's or employer's credential to the portal, app or bank system that relays it.
  One relay is allowed: one of the suite's own services passing on the credential of the call it
  serves (the bank forwards a counter's activation to the card service), known by its
  certificate's common name, which the CA issues as the client id.

Verified credentials are cached until the token expires, with the registry's admission of them:
a change of keys or of the registry empties the cache, so a disabled client is refused as soon
as the registry is re-read.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import jwt

from services.platform.auth import (
    KIND_RULES,
    SUBJECT_ROLES,
    Caller,
    Channel,
    ClientKind,
    Role,
    unauthenticated,
)
from services.platform.errors import DomainError, Kind
from services.platform.tls import common_name, thumbprint
from services.platform.watch import FileWatch

log = logging.getLogger("sscard.trust")

AUDIENCE = "sscard"
ALGORITHMS = ("EdDSA", "ES256")
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub")
LEEWAY_SECONDS = 30
CONFIRMATION = "cnf"  # RFC 7800
THUMBPRINT = "x5t#S256"  # RFC 8705: SHA-256 of the client certificate's DER, base64url
NOT_BOUND = "CREDENTIAL_NOT_BOUND_TO_CERTIFICATE"
_CACHE_LIMIT = 50_000


class TrustError(Exception):
    """A trust file is malformed or holds what it must not (a private key)."""


T = TypeVar("T")


class _Reloading(Generic[T]):
    """A value parsed from a file or folder, parsed again when it changes (``FileWatch``)."""

    def __init__(self, path: Path, parse: Callable[[Path], T], reload_seconds: float) -> None:
        self._path = path
        self._parse = parse
        self._lock = threading.Lock()
        self._watch = FileWatch([path], reload_seconds)
        self._value = parse(path)  # a bad file at start is a configuration error

    def get(self) -> T:
        # Under the lock from the look at the files to the parse: a call that asks while another
        # parses a change it noticed waits for the new value instead of taking the old one (with
        # a reload period of 0, a client registered a moment before was refused that way).
        with self._lock:
            if self._watch.changed():
                try:
                    self._value = self._parse(self._path)
                    log.info("reloaded %s", self._path)
                except (TrustError, OSError, ValueError) as exc:
                    log.error("kept the previous %s: %s", self._path.name, exc)
            return self._value


# --- issuers ------------------------------------------------------------------------------


def _load_issuers(folder: Path) -> dict[str, dict[str, jwt.PyJWK]]:
    if not folder.is_dir():
        raise TrustError(f"the trust directory {folder} does not exist")
    issuers: dict[str, dict[str, jwt.PyJWK]] = {}
    for path in sorted(folder.iterdir()):
        text = path.read_text() if path.is_file() else ""
        if "PRIVATE KEY" in text:
            raise TrustError(f"{path.name} holds a private key; the trust directory is public keys")
        if not path.name.endswith(".jwks.json"):
            continue
        try:
            document = json.loads(text)
            keys = document["keys"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TrustError(f"{path.name} is not a JWKS document") from exc
        issuer = path.name.removesuffix(".jwks.json")
        found: dict[str, jwt.PyJWK] = {}
        for entry in keys:
            if not isinstance(entry, dict) or "kid" not in entry:
                raise TrustError(f"{path.name}: every key needs a kid")
            if "d" in entry:
                raise TrustError(f"{path.name}: key {entry['kid']} is private; publish public keys")
            try:
                found[str(entry["kid"])] = jwt.PyJWK(entry)
            except jwt.PyJWKError as exc:
                raise TrustError(f"{path.name}: key {entry['kid']} is not usable: {exc}") from exc
        issuers[issuer] = found
    return issuers


# --- the client registry ------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """One registered integrator."""

    client_id: str
    name: str
    kind: ClientKind
    issuers: frozenset[str]
    channels: frozenset[Channel]
    roles: frozenset[Role]
    bank_code: str = ""
    outlets: tuple[str, ...] = ()
    enabled: bool = True

    def outlet_allowed(self, outlet_id: str) -> bool:
        return any(fnmatch.fnmatchcase(outlet_id, pattern) for pattern in self.outlets)


def _strings(entry: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TrustError(f"{where}: {key} must be a list of strings")
    return value


def parse_client(entry: Mapping[str, Any]) -> Client:
    where = f"client {entry.get('id', '?')!r}"
    try:
        client_id = str(entry["id"])
        kind = ClientKind(entry["kind"])
        channels = frozenset(Channel(c) for c in _strings(entry, "channels", where))
        roles = frozenset(Role(r) for r in _strings(entry, "roles", where))
    except KeyError as exc:
        raise TrustError(f"{where}: {exc.args[0]} is required") from exc
    except ValueError as exc:
        raise TrustError(f"{where}: {exc}") from exc
    rules = KIND_RULES[kind]
    if not channels <= rules.channels or not roles <= rules.roles:
        raise TrustError(
            f"{where}: a {kind.value} may use channels "
            f"{sorted(c.value for c in rules.channels)} and roles "
            f"{sorted(r.value for r in rules.roles)}"
        )
    issuers = _strings(entry, "issuers", where)
    if not issuers:
        raise TrustError(f"{where}: name at least one issuer")
    return Client(
        client_id=client_id,
        name=str(entry.get("name", client_id)),
        kind=kind,
        issuers=frozenset(issuers),
        channels=channels,
        roles=roles,
        bank_code=str(entry.get("bank_code", "")),
        outlets=tuple(_strings(entry, "outlets", where)),
        enabled=bool(entry.get("enabled", True)),
    )


def load_registry(path: Path) -> dict[str, Client]:
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TrustError(f"the client registry {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TrustError(f"{path.name}: {exc}") from exc
    clients: dict[str, Client] = {}
    for entry in document.get("client", []):
        client = parse_client(entry)
        if client.client_id in clients:
            raise TrustError(f"client {client.client_id!r} is registered twice")
        clients[client.client_id] = client
    return clients


# --- verification -------------------------------------------------------------------------


def _denied(reason: str, message: str, **metadata: str) -> DomainError:
    return DomainError(reason, message, kind=Kind.PERMISSION, metadata=dict(metadata))


def _claim_invalid(claim: str, expected: str) -> DomainError:
    return unauthenticated(
        f"the credential's {claim!r} claim must be {expected}", "CLAIM_INVALID", claim=claim
    )


def _text(claims: Mapping[str, Any], claim: str, required: bool = False) -> str:
    value = claims.get(claim, "")
    if not isinstance(value, str):
        raise _claim_invalid(claim, "a string")
    if required and not value.strip():
        raise _claim_invalid(claim, "a non-empty string")
    return value


@dataclass(frozen=True)
class _Verified:
    """What a valid signature vouches for; cached until the token expires."""

    issuer: str
    client_id: str
    subject: str
    channel: Channel
    roles: frozenset[Role]
    bank_code: str
    outlet_id: str
    operator_id: str
    bound_to: str
    lifetime: int
    expires: float


@dataclass
class _Cached:
    """A verified credential and, once the registry has admitted it, the caller it makes."""

    verified: _Verified
    caller: Caller | None = None


class Verifier:
    """Turns a bearer token into a Caller, or raises UNAUTHENTICATED / PERMISSION_DENIED."""

    def __init__(
        self,
        trust_dir: Path,
        registry_file: Path,
        reload_seconds: float = 2.0,
        leeway_seconds: int = LEEWAY_SECONDS,
        bind_certificates: bool = False,
    ) -> None:
        """``bind_certificates``: the service speaks mutual TLS, so every credential must be
        bound to the certificate its call comes over (``check_certificate``)."""
        self._bind = bind_certificates
        self._issuers = _Reloading(trust_dir, _load_issuers, reload_seconds)
        self._registry = _Reloading(registry_file, load_registry, reload_seconds)
        self._leeway = leeway_seconds
        self._cache: dict[str, _Cached] = {}
        self._cache_keys: object = None
        self._cache_registry: object = None

    def client(self, client_id: str) -> Client | None:
        return self._registry.get().get(client_id)

    def verify(self, token: str) -> Caller:
        issuers, registry = self._issuers.get(), self._registry.get()
        if issuers is not self._cache_keys or registry is not self._cache_registry:
            # keys or clients changed: verify and admit every token afresh
            self._cache = {}
            self._cache_keys, self._cache_registry = issuers, registry
        cached = self._cache.get(token)
        if cached is None or cached.verified.expires + self._leeway < time.time():
            cached = _Cached(self._check_signature(token, issuers))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache = {}
            self._cache[token] = cached
        if cached.caller is None:  # a refusal is not kept: asked again on the next call
            cached.caller = self._admit(cached.verified)
        return cached.caller

    def _check_signature(self, token: str, issuers: dict[str, dict[str, jwt.PyJWK]]) -> _Verified:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise unauthenticated("the credential is not a JWT", "CREDENTIAL_MALFORMED") from exc
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise _claim_invalid("iss", "the issuer's name")
        keys = issuers.get(issuer)
        if keys is None:
            raise unauthenticated(
                "the credential's issuer is not trusted here", "UNKNOWN_ISSUER", issuer=issuer
            )
        kid = header.get("kid")
        key = keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise unauthenticated(
                "the credential's signing key (kid) is not among its issuer's published keys",
                "UNKNOWN_KEY",
                issuer=issuer,
            )
        if header.get("alg") not in ALGORITHMS or header.get("alg") != key.algorithm_name:
            raise unauthenticated(
                "the credential's algorithm does not match its key (EdDSA or ES256)",
                "CREDENTIAL_MALFORMED",
            )
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],
                audience=AUDIENCE,
                issuer=issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthenticated("the credential has expired", "CREDENTIAL_EXPIRED") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise unauthenticated(
                f"the credential lacks the {exc.claim!r} claim", "CLAIM_MISSING", claim=exc.claim
            ) from exc
        except jwt.InvalidAudienceError as exc:
            raise _claim_invalid("aud", f"{AUDIENCE!r}") from exc
        except jwt.ImmatureSignatureError as exc:
            raise _claim_invalid("iat", "a time not in the future") from exc
        except jwt.InvalidSignatureError as exc:
            raise unauthenticated(
                "the credential's signature does not verify", "BAD_SIGNATURE"
            ) from exc
        except jwt.PyJWTError as exc:
            raise unauthenticated(
                f"the credential is not valid ({type(exc).__name__})", "CREDENTIAL_INVALID"
            ) from exc
        return self._read_claims(issuer, claims)

    def _read_claims(self, issuer: str, claims: Mapping[str, Any]) -> _Verified:
        iat, exp = claims["iat"], claims["exp"]
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise _claim_invalid("iat" if not isinstance(iat, int) else "exp", "whole seconds")
        if iat > time.time() + self._leeway:
            raise _claim_invalid("iat", "a time not in the future")
        subject = _text(claims, "sub", required=True)
        channel_text = _text(claims, "channel", required=True)
        roles_claim = claims.get("roles", [])
        if not isinstance(roles_claim, list) or not all(isinstance(r, str) for r in roles_claim):
            raise _claim_invalid("roles", "a list of strings")
        try:
            channel = Channel(channel_text)
        except ValueError as exc:
            raise _claim_invalid(
                "channel", "one of " + ", ".join(c.value for c in Channel)
            ) from exc
        try:
            roles = frozenset(Role(r) for r in roles_claim)
        except ValueError as exc:
            raise _claim_invalid("roles", "roles from " + ", ".join(r.value for r in Role)) from exc
        return _Verified(
            issuer=issuer,
            client_id=_text(claims, "client_id") or subject,
            subject=subject,
            channel=channel,
            roles=roles,
            bank_code=_text(claims, "bank_code"),
            outlet_id=_text(claims, "outlet_id"),
            operator_id=_text(claims, "operator_id"),
            bound_to=_bound_to(claims),
            lifetime=exp - iat,
            expires=float(exp),
        )

    def _admit(self, v: _Verified) -> Caller:
        """The registry's word on a verified credential, consulted on every call."""
        client = self.client(v.client_id)
        if client is None:
            raise unauthenticated(
                "the credential's client is not registered", "UNKNOWN_CLIENT", client=v.client_id
            )
        if not client.enabled:
            raise unauthenticated(
                "the credential's client is disabled", "CLIENT_DISABLED", client=v.client_id
            )
        if v.issuer not in client.issuers:
            raise unauthenticated(
                "this issuer may not vouch for this client",
                "ISSUER_NOT_REGISTERED",
                client=v.client_id,
                issuer=v.issuer,
            )
        limit = KIND_RULES[client.kind].max_lifetime_seconds
        if v.lifetime > limit:
            raise unauthenticated(
                f"a {client.kind.value} credential may live at most {limit} seconds",
                "CREDENTIAL_TOO_LONG_LIVED",
                max_seconds=str(limit),
            )
        if self._bind and not v.bound_to:
            raise unauthenticated(
                f"the credential is not bound to a client certificate (claim cnf {THUMBPRINT})",
                NOT_BOUND,
                client=v.client_id,
            )
        if v.channel not in client.channels:
            raise _denied(
                "CLIENT_CHANNEL_NOT_REGISTERED",
                f"the client is not registered for channel {v.channel.value}",
                client=client.client_id,
                channel=v.channel.value,
            )
        if extra := v.roles - client.roles:
            names = ",".join(sorted(r.value for r in extra))
            raise _denied(
                "CLIENT_ROLE_NOT_REGISTERED",
                f"the client is not registered for the role(s) {names}",
                client=client.client_id,
                roles=names,
            )
        if v.subject != client.client_id and not (v.roles and v.roles <= SUBJECT_ROLES):
            raise _claim_invalid("sub", "the client's own id unless it names a person or employer")
        if Role.PERSON in v.roles and v.roles != {Role.PERSON}:
            raise _claim_invalid("roles", "only 'person' in a person's credential")
        bank = v.bank_code or client.bank_code
        if client.bank_code and bank != client.bank_code:
            raise _denied(
                "CLIENT_BANK_MISMATCH",
                "the credential names a bank the client is not registered for",
                client=client.client_id,
            )
        if bank and not client.bank_code:
            raise _denied(
                "CLIENT_BANK_MISMATCH",
                "the client is not registered for any bank",
                client=client.client_id,
            )
        if v.outlet_id and not client.outlet_allowed(v.outlet_id):
            raise _denied(
                "CLIENT_OUTLET_NOT_REGISTERED",
                "the client is not registered for this outlet",
                client=client.client_id,
            )
        return Caller(
            caller=v.subject,
            channel=v.channel,
            roles=v.roles,
            outlet_id=v.outlet_id,
            bank_code=bank,
            operator_id=v.operator_id,
            client_id=client.client_id,
            kind=client.kind,
            bound_to=v.bound_to,
        )

    @property
    def binds_certificates(self) -> bool:
        """Whether credentials must be bound to the certificate their call comes over."""
        return self._bind

    def check_certificate(self, caller: Caller, certificate: bytes | None) -> None:
        """Refuse a credential presented over another client certificate (PEM, the one the
        call's connection presented) than the one it is bound to, unless one of the suite's
        own services relays it."""
        if not self._bind:
            return
        if certificate is not None and thumbprint(certificate) == caller.bound_to:
            return
        relay = self.client(common_name(certificate)) if certificate is not None else None
        if relay is not None and relay.enabled and relay.kind is ClientKind.SSCARD_SERVICE:
            return
        raise unauthenticated(
            "the credential is bound to another client certificate than this call's",
            NOT_BOUND,
            client=caller.client_id,
        )


def _bound_to(claims: Mapping[str, Any]) -> str:
    """The certificate thumbprint a credential is bound to ("" when it is not bound)."""
    confirmation = claims.get(CONFIRMATION)
    if confirmation is None:
        return ""
    if not isinstance(confirmation, dict) or not isinstance(confirmation.get(THUMBPRINT), str):
        raise _claim_invalid(CONFIRMATION, f"an object naming the certificate's {THUMBPRINT}")
    return str(confirmation[THUMBPRINT])
