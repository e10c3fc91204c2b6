"""Issuers and a client registry for tests, as a deployment has them.

One test issuer signs the clients' credentials; each service signs its own with a key of its
own issuer. Clients are registered on first use with exactly the claims a test asks for, so a
test states the credential it means and the registry backs it, as the real one would.

With mutual TLS (``mutual_tls``, or ``tls_env`` later) a test CA signs a certificate per
service and one for the tests' client, to which every credential ``token`` mints is bound;
``channel`` and ``listen`` connect and serve (fake services) with them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
from pathlib import Path
from typing import Any

import grpc

from services.platform import tls, tokens
from services.platform.auth import SUBJECT_ROLES, Channel, ClientKind, Role
from services.platform.config import SERVICES, TlsFiles

TEST_ISSUER = "sscard-test"

_KIND_BY_ROLE = {
    Role.SERVICE: ClientKind.SSCARD_SERVICE,
    Role.OPS: ClientKind.OPS_CONSOLE,
    Role.REGISTRY: ClientKind.REGISTRY_FEED,
    Role.FACTORY: ClientKind.CARD_FACTORY,
    Role.BANK: ClientKind.BANK_CORE,
}
_KIND_BY_CHANNEL = {
    Channel.ONLINE: ClientKind.ONLINE_PORTAL,
    Channel.TRANSIT_APP: ClientKind.TRANSIT_APP,
    Channel.BANK_BRANCH: ClientKind.BANK_CORE,
    Channel.BANK_HOTLINE: ClientKind.BANK_CORE,
    Channel.DISTRICT_OUTLET: ClientKind.DISTRICT_OUTLET_SYSTEM,
    Channel.HOTLINE: ClientKind.HOTLINE,
    Channel.TRANSIT_OUTLET: ClientKind.KIOSK_FLEET,
    Channel.PARK_OUTLET: ClientKind.PARK_OUTLET_SYSTEM,
    Channel.INTERNAL: ClientKind.OPS_CONSOLE,
}


def kind_for(channel: Channel, roles: frozenset[Role]) -> ClientKind:
    for role, kind in _KIND_BY_ROLE.items():
        if role in roles:
            return kind
    return _KIND_BY_CHANNEL[channel]


def _toml_list(values: Any) -> str:
    return "[" + ", ".join(json.dumps(str(v)) for v in sorted(values)) + "]"


class TestTrust:
    __test__ = False  # a fixture, not a test class
    """Keys under ``root``: ``keys/`` (private, the issuers') and ``trust/`` (public JWKS)."""

    def __init__(self, root: Path, mutual_tls: bool = False) -> None:
        self.keys = root / "keys"
        self.trust_dir = root / "trust"
        self.registry = root / "clients.toml"
        self.audit = root / "audit"  # each service's audit key and anchor file
        self._lock = threading.Lock()
        self._clients: dict[str, dict[str, Any]] = {}
        tokens.ensure_issuer(self.key_file(TEST_ISSUER), self.trust_dir, TEST_ISSUER)
        for name in SERVICES:
            issuer = f"sscard-{name}"
            tokens.ensure_issuer(self.key_file(issuer), self.trust_dir, issuer)
            self.register(
                f"{name}-service",
                ClientKind.SSCARD_SERVICE,
                {Channel.INTERNAL},
                {Role.SERVICE},
                issuers={issuer},
            )
        self.signer = tokens.Signer(TEST_ISSUER, self.key_file(TEST_ISSUER))
        self.tls_dir = root / "tls"
        self.client_tls: tls.ClientTls | None = None  # set by tls_env
        self._tls_env: dict[str, str] = {}
        if mutual_tls:
            self.tls_env()

    def tls_env(self) -> dict[str, str]:
        """Mutual TLS for the services under test: the test CA, a certificate per service, and
        the tests' client certificate that every credential ``token`` mints is bound to."""
        if self._tls_env:
            return dict(self._tls_env)
        tls.ensure_ca(self.ca_file, self.tls_dir / "ca.key")
        env = {"SSCARD_TLS": "on", "SSCARD_TLS_CA_FILE": str(self.ca_file)}
        for name in SERVICES:
            files = self.certificate(f"{name}-service", tls.service_hosts(name))
            env[f"SSCARD_{name.upper()}_TLS_CERT_FILE"] = str(files.cert_file)
            env[f"SSCARD_{name.upper()}_TLS_KEY_FILE"] = str(files.key_file)
        self.client_tls = tls.client_tls(self.certificate("test-client"))
        self._tls_env = env
        return dict(env)

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    def certificate(self, name: str, hosts: tuple[str, ...] = ()) -> TlsFiles:
        """A certificate signed by the test CA (made once per name)."""
        files = TlsFiles(self.ca_file, self.tls_dir / f"{name}.pem", self.tls_dir / f"{name}.key")
        if not files.cert_file.exists():
            tls.issue(
                self.ca_file, self.tls_dir / "ca.key", files.cert_file, files.key_file, name, hosts
            )
        return files

    def channel(self, target: str) -> grpc.Channel:
        """A channel to a service under test: over the tests' client certificate with TLS on."""
        if self.client_tls is None:
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, self.client_tls.credentials)

    def listen(self, server: grpc.Server, address: str) -> int:
        """Bind a fake service's server as the real one would: with mutual TLS when on."""
        if self.client_tls is None:
            return server.add_insecure_port(address)
        files = self.certificate("fake-service", tls.LOCAL_HOSTS)
        return server.add_secure_port(address, tls.server_credentials(files))

    def key_file(self, issuer: str) -> Path:
        return self.keys / f"{issuer}.pem"

    def env(self) -> dict[str, str]:
        env = {
            "SSCARD_TRUST_DIR": str(self.trust_dir),
            "SSCARD_CLIENT_REGISTRY": str(self.registry),
            "SSCARD_TRUST_RELOAD_SECONDS": "0",
            "SSCARD_TLS": "off",  # unless mutual TLS is on: then tls_env() says so
            **self._tls_env,
        }
        for name in SERVICES:
            upper = name.upper()
            env[f"SSCARD_{upper}_SIGNING_KEY_FILE"] = str(self.key_file(f"sscard-{name}"))
            env[f"SSCARD_{upper}_AUDIT_KEY"] = base64.b64encode(self.audit_key(name)).decode()
            env[f"SSCARD_{upper}_AUDIT_ANCHOR_FILE"] = str(self.anchor_file(name))
        return env

    def audit_key(self, service: str) -> bytes:
        """The key signing ``service``'s audit anchors, made on first use."""
        path = self.audit / f"{service}.key"
        with self._lock:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(secrets.token_bytes(32))
        return path.read_bytes()

    def anchor_file(self, service: str) -> Path:
        return self.audit / f"{service}-anchors.jsonl"

    def register(
        self,
        client_id: str,
        kind: ClientKind,
        channels: set[Channel],
        roles: set[Role],
        *,
        bank_code: str = "",
        outlets: set[str] | None = None,
        issuers: set[str] | None = None,
        enabled: bool = True,
    ) -> None:
        """Register (or widen) a client and write the registry file."""
        with self._lock:
            entry = self._clients.setdefault(
                client_id,
                {
                    "kind": kind,
                    "channels": set(),
                    "roles": set(),
                    "bank_code": bank_code,
                    "outlets": set(),
                    "issuers": set(),
                },
            )
            entry["channels"] |= channels
            entry["roles"] |= roles
            entry["outlets"] |= outlets or set()
            entry["issuers"] |= issuers or {TEST_ISSUER}
            entry["enabled"] = enabled
            self._write()

    def set_enabled(self, client_id: str, enabled: bool) -> None:
        with self._lock:
            self._clients[client_id]["enabled"] = enabled
            self._write()

    def _write(self) -> None:
        lines = []
        for client_id, e in self._clients.items():
            lines += [
                "[[client]]",
                f"id = {json.dumps(client_id)}",
                f"kind = {json.dumps(e['kind'].value)}",
                f"issuers = {_toml_list(e['issuers'])}",
                f"channels = {_toml_list(c.value for c in e['channels'])}",
                f"roles = {_toml_list(r.value for r in e['roles'])}",
                f"bank_code = {json.dumps(e['bank_code'])}",
                f"outlets = {_toml_list(e['outlets'])}",
                f"enabled = {'true' if e['enabled'] else 'false'}",
                "",
            ]
        temporary = self.registry.with_suffix(".tmp")
        temporary.write_text("\n".join(lines))
        temporary.replace(self.registry)

    def token(
        self,
        channel: Channel = Channel.INTERNAL,
        roles: tuple[Role, ...] | set[Role] = (Role.SERVICE,),
        caller: str = "test-client",
        *,
        client_id: str = "",
        bank_code: str = "",
        outlet_id: str = "",
        operator_id: str = "",
        ttl: dt.timedelta = dt.timedelta(minutes=30),
        now: dt.datetime | None = None,
        register: bool = True,
    ) -> str:
        """A credential of a client registered for exactly these claims.

        For a person or employer credential ``caller`` is the subject (the person's id, the
        employer's credit code) and the client is the channel's portal; otherwise ``caller``
        is the client itself (with the bank in its id, as each bank's system is its own).
        """
        role_set = frozenset(roles)
        acts_for = bool(role_set) and role_set <= SUBJECT_ROLES
        kind = kind_for(channel, role_set)
        if not client_id:
            if acts_for:
                client_id = f"{kind.value}-{bank_code}" if bank_code else kind.value
            else:
                client_id = f"{caller}-{bank_code}" if bank_code else caller
        if register:
            self.register(
                client_id,
                kind,
                {channel},
                set(role_set),
                bank_code=bank_code,
                outlets={outlet_id} if outlet_id else set(),
            )
        return self.signer.mint(
            client_id,
            channel,
            roles=role_set,
            subject=caller if acts_for else "",
            bank_code=bank_code,
            outlet_id=outlet_id,
            operator_id=operator_id,
            ttl=ttl,
            now=now,
            certificate=self.client_tls.certificate if self.client_tls is not None else None,
        )
