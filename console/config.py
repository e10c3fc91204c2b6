"""The console's settings, read from environment variables (README, "Operations console").

SSCARD_CONSOLE_HOST / _PORT            where it listens (127.0.0.1:8080)
SSCARD_CONSOLE_TOKEN_FILE              production: its credential, renewed by the deployment
SSCARD_CONSOLE_SIGNING_KEY_FILE        development only: the key it signs its credential
                                       with (var/keys/sscard-dev.pem, issuer sscard-dev)
SSCARD_CONSOLE_USERS_FILE              the local staff users (var/console-users.json)
SSCARD_CONSOLE_SESSION_KEY[_FILE]      the key that signs session cookies
                                       (var/console-session.key)
SSCARD_<SERVICE>_TARGET / _HOST / _PORT  the services it calls, as for the services
SSCARD_TLS_CA_FILE, SSCARD_CONSOLE_TLS_CERT_FILE / _KEY_FILE
                                       mutual TLS to the services (var/tls/ca.pem,
                                       var/tls/ops-console.pem / .key); its credential is
                                       bound to its certificate
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.platform import config as settings
from services.platform.auth import Role
from services.platform.clients import client_tls
from services.platform.clock import Clock, SharedTestClock, SystemClock
from services.platform.config import ConfigError, TlsFiles
from services.platform.tls import ClientTls
from services.platform.tokens import CredentialSource, Signer, SigningSource, TokenFileSource

CLIENT_ID = "ops-console"
DEV_ISSUER = "sscard-dev"
PREFIX = "SSCARD_CONSOLE_"


@dataclass(frozen=True)
class ConsoleConfig:
    host: str
    port: int
    environment: str
    token_file: Path | None
    signing_key_file: Path | None
    users_file: Path
    session_key: bytes
    test_clock_file: str | None
    tls: TlsFiles | None = None
    targets: dict[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.environment == "production"

    def credential(self, operator: str = "") -> CredentialSource:
        """A token file the deployment renews, else (development) a credential the console
        signs itself as the ``ops-console`` client of the development issuer, naming the staff
        ``operator`` it acts for (the services' audit trails record them). The token file names
        no operator: the console's own log line of each action does."""
        if self.token_file is not None:
            return TokenFileSource(self.token_file)
        if self.signing_key_file is None or not self.signing_key_file.exists():
            raise ConfigError(
                f"console: no credential: set {PREFIX}TOKEN_FILE "
                "(`make run` creates the development key under var/keys/)"
            )
        signer = Signer(DEV_ISSUER, self.signing_key_file)
        return SigningSource(
            signer,
            CLIENT_ID,
            dt.timedelta(minutes=30),
            roles=frozenset({Role.OPS}),
            bound_to=self.client_tls(),
            operator_id=operator,
        )

    def client_tls(self) -> ClientTls | None:
        """Its side of mutual TLS to the services (None: plaintext, development only)."""
        return client_tls(self.tls)

    def clock(self) -> Clock:
        """The suite's clock: the shared test clock only when configured, else wall time."""
        return SharedTestClock(self.test_clock_file) if self.test_clock_file else SystemClock()


def load(env: Mapping[str, str] | None = None) -> ConsoleConfig:
    env = os.environ if env is None else env
    environment = env.get("SSCARD_ENVIRONMENT", "").strip() or "development"
    production = environment == "production"
    token_file = env.get(PREFIX + "TOKEN_FILE", "").strip()
    key_file = env.get(PREFIX + "SIGNING_KEY_FILE", "").strip()
    if production and key_file:
        raise ConfigError(
            f"{PREFIX}SIGNING_KEY_FILE must not be set in production: the console holds no key "
            f"that can sign; give it {PREFIX}TOKEN_FILE"
        )
    if production and not token_file:
        raise ConfigError(f"{PREFIX}TOKEN_FILE is required in production")
    test_clock_file = env.get("SSCARD_TEST_CLOCK_FILE", "").strip() or None
    if production and test_clock_file:
        raise ConfigError("SSCARD_TEST_CLOCK_FILE must not be set in production")
    port_text = env.get(PREFIX + "PORT", "").strip() or "8080"
    if not port_text.isdigit():
        raise ConfigError(f"{PREFIX}PORT must be a port number, got {port_text!r}")
    return ConsoleConfig(
        host=env.get(PREFIX + "HOST", "").strip() or "127.0.0.1",
        port=int(port_text),
        environment=environment,
        token_file=Path(token_file) if token_file else None,
        signing_key_file=None
        if token_file
        else Path(key_file or settings.VAR_DIR / "keys" / f"{DEV_ISSUER}.pem"),
        users_file=Path(
            env.get(PREFIX + "USERS_FILE", "").strip() or settings.VAR_DIR / "console-users.json"
        ),
        session_key=settings.read_secret(
            env, "CONSOLE_SESSION_KEY", settings.VAR_DIR / "console-session.key"
        ),
        test_clock_file=test_clock_file,
        tls=settings.tls_files(env, CLIENT_ID, PREFIX, environment),
        targets={name: settings.target_of(name, env) for name in ("card", "bank", "transit")},
    )
