"""Configuration of a service process, read from environment variables.

Every setting has a documented default (README, "Configuration") so that ``make run`` works on
a fresh checkout; secrets default to files under ``var/`` that the local supervisor creates.
``<SERVICE>`` below is IDENTITY, CARD, BANK or TRANSIT.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.platform.calendar import SHIPPED_CALENDAR_FILE, WorkingDayCalendar
from services.platform.clock import Clock, SharedTestClock, SystemClock
from services.platform.inbound import REQUEST_BYTES

SERVICES = ("identity", "card", "bank", "transit")
DEFAULT_PORTS = {"identity": 50051, "card": 50052, "bank": 50053, "transit": 50054}
DEFAULT_METRICS_PORTS = {"identity": 9051, "card": 9052, "bank": 9053, "transit": 9054}
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENVIRONMENTS = ("development", "production")
REPO_ROOT = Path(__file__).resolve().parents[2]
VAR_DIR = REPO_ROOT / "var"


class ConfigError(Exception):
    """A setting is missing or malformed; the process refuses to start."""


# How often a process looks for changes to the files it re-reads without a restart: the trust
# directory, the client registry, and its certificate, key and trust bundle.
TRUST_RELOAD_SECONDS = 2.0


@dataclass(frozen=True)
class TlsFiles:
    """Mutual TLS of one process: the CA bundle it trusts, its certificate and private key, and
    how often it looks whether they changed (``SSCARD_TRUST_RELOAD_SECONDS``)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    reload_seconds: float = TRUST_RELOAD_SECONDS


@dataclass(frozen=True)
class ServiceConfig:
    """Everything one service process needs to start."""

    name: str
    host: str
    port: int
    db_url: str
    workers: int
    threads: int
    grace_seconds: float
    drain_seconds: float
    max_response_bytes: int
    max_request_bytes: int
    client_max_calls: int
    trust_dir: Path
    client_registry: Path
    trust_reload_seconds: float
    signing_key_file: Path | None
    token_file: Path | None
    token_ttl_seconds: int
    idempotency_ttl_hours: int
    audit_anchor_seconds: float
    audit_anchor_file: Path
    environment: str
    test_clock_file: str | None
    calendar_file: str
    log_level: str
    log_format: str
    metrics_port: int
    health_port: int  # 0: no plaintext health-only listener
    tls: TlsFiles | None  # None: plaintext (development only, SSCARD_TLS=off)
    # Where to write the bound port once listening (for a supervisor that asked for port 0).
    port_file: Path | None
    env: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def secret(self, name: str, default_file: Path, size: int | None = None) -> bytes:
        """A secret of this service (``SSCARD_<NAME>`` or ``SSCARD_<NAME>_FILE``), of ``size``
        bytes when given."""
        return read_secret(self.env, name, default_file, size)

    def pii_key(self) -> bytes:
        """The 32-byte master key of this service's PII cipher (``SSCARD_<SERVICE>_PII_KEY``)."""
        return self.secret(f"{self.name.upper()}_PII_KEY", VAR_DIR / f"{self.name}-pii.key", 32)

    def audit_key(self) -> bytes:
        """The 32-byte key signing this service's audit anchors (``SSCARD_<SERVICE>_AUDIT_KEY``):
        required in every environment, and in none the key of anything else."""
        return self.secret(f"{self.name.upper()}_AUDIT_KEY", VAR_DIR / f"{self.name}-audit.key", 32)

    def calendar(self) -> WorkingDayCalendar:
        """The working-day calendar of ``SSCARD_CALENDAR_FILE``."""
        try:
            return WorkingDayCalendar.from_file(self.calendar_file)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"SSCARD_CALENDAR_FILE: {_one_line(exc)}") from exc

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def clock(self) -> Clock:
        """The suite's clock: the shared test clock only when configured, else wall time."""
        if self.test_clock_file:
            return SharedTestClock(self.test_clock_file)
        return SystemClock()

    @property
    def client_id(self) -> str:
        """This service's id in the client registry."""
        return f"{self.name}-service"

    @property
    def issuer(self) -> str:
        """The issuer a development service signs its own credential as."""
        return f"sscard-{self.name}"

    def target(self, service: str) -> str:
        """Address of another service, for clients."""
        return target_of(service, self.env)


def _env(env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key, "").strip()
    return value or default


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def int_setting(
    env: Mapping[str, str], key: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    """A whole-number setting; a malformed or out-of-range value is a ConfigError naming it."""
    raw = _env(env, key, str(default))
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a whole number, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key} must be at most {maximum}, got {value}")
    return value


def float_setting(env: Mapping[str, str], key: str, default: float) -> float:
    """A non-negative number (e.g. seconds); a malformed value is a ConfigError naming it."""
    raw = _env(env, key, str(default))
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from exc
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{key} must be a finite number not below 0, got {raw!r}")
    return value


def trust_reload_seconds(env: Mapping[str, str]) -> float:
    """``SSCARD_TRUST_RELOAD_SECONDS``: how often changed trust files and certificates are seen."""
    return float_setting(env, "SSCARD_TRUST_RELOAD_SECONDS", TRUST_RELOAD_SECONDS)


def _port(env: Mapping[str, str], key: str, default: int) -> int:
    return int_setting(env, key, default, maximum=65535)


def _anchor_seconds(env: Mapping[str, str]) -> float:
    """How often the audit trail is anchored; anchoring cannot be turned off."""
    seconds = float_setting(env, "SSCARD_AUDIT_ANCHOR_SECONDS", 60.0)
    if seconds <= 0:
        raise ConfigError(
            "SSCARD_AUDIT_ANCHOR_SECONDS must be above 0: the audit trail is always anchored"
        )
    return seconds


def _choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _db_url(env: Mapping[str, str], key: str, default: str) -> str:
    value = _env(env, key, default)
    try:
        make_url(value)
    except ArgumentError:
        # The URL may hold a password: name the setting, never echo the value.
        raise ConfigError(
            f"{key} is not a database URL (e.g. postgresql+psycopg://user:pw@host/db)"
        ) from None
    return value


def _own_credential(
    env: Mapping[str, str], prefix: str, name: str, environment: str
) -> tuple[Path | None, Path | None]:
    """Where the service's own credential comes from: a token file the deployment renews, or
    (development only) a signing key of the service's own issuer."""
    token_file = env.get(prefix + "TOKEN_FILE", "").strip()
    key_file = env.get(prefix + "SIGNING_KEY_FILE", "").strip()
    if environment == "production" and key_file:
        raise ConfigError(
            f"{prefix}SIGNING_KEY_FILE must not be set in production: a service holds no "
            f"key that can sign; give it {prefix}TOKEN_FILE"
        )
    if token_file:
        return None, Path(token_file)
    return Path(key_file or VAR_DIR / "keys" / f"{name}-service.pem"), None


TLS_DIR = VAR_DIR / "tls"


def tls_files(
    env: Mapping[str, str], client_id: str, prefix: str, environment: str
) -> TlsFiles | None:
    """Mutual TLS of a process known as ``client_id``: on unless ``SSCARD_TLS=off``, which
    production refuses. Files: ``SSCARD_TLS_CA_FILE`` and ``<prefix>TLS_CERT_FILE`` /
    ``<prefix>TLS_KEY_FILE``, by default the development ones under var/tls/."""
    mode = _env(env, "SSCARD_TLS", "on").lower()
    if mode not in ("on", "off"):
        raise ConfigError(f"SSCARD_TLS must be on or off, got {mode!r}")
    if mode == "off":
        if environment == "production":
            raise ConfigError(
                "SSCARD_TLS=off is refused when SSCARD_ENVIRONMENT=production: "
                "the services speak mutual TLS only"
            )
        return None
    tls_dir = Path(_env(env, "SSCARD_TLS_DIR", str(TLS_DIR)))
    return TlsFiles(
        ca_file=Path(_env(env, "SSCARD_TLS_CA_FILE", str(tls_dir / "ca.pem"))),
        cert_file=Path(_env(env, prefix + "TLS_CERT_FILE", str(tls_dir / f"{client_id}.pem"))),
        key_file=Path(_env(env, prefix + "TLS_KEY_FILE", str(tls_dir / f"{client_id}.key"))),
        reload_seconds=trust_reload_seconds(env),
    )


def environment_of(env: Mapping[str, str]) -> str:
    return _choice(
        "SSCARD_ENVIRONMENT", _env(env, "SSCARD_ENVIRONMENT", "development"), ENVIRONMENTS
    )


def target_of(service: str, env: Mapping[str, str] | None = None) -> str:
    """``host:port`` of a service: ``SSCARD_<SERVICE>_TARGET``, else its host and port."""
    env = os.environ if env is None else env
    prefix = f"SSCARD_{service.upper()}_"
    explicit = env.get(prefix + "TARGET", "").strip()
    if explicit:
        return explicit
    host = _env(env, prefix + "HOST", "127.0.0.1")
    return f"{host}:{_port(env, prefix + 'PORT', DEFAULT_PORTS[service])}"


def read_secret(
    env: Mapping[str, str], name: str, default_file: Path, size: int | None = None
) -> bytes:
    """A secret from ``SSCARD_<NAME>`` (base64) or the file ``SSCARD_<NAME>_FILE`` names, of
    ``size`` bytes when given. Messages name the setting, never the secret."""
    inline = env.get(f"SSCARD_{name}", "").strip()
    where = f"SSCARD_{name}"
    if inline:
        data = inline.encode()
    else:
        path = Path(_env(env, f"SSCARD_{name}_FILE", str(default_file)))
        where = f"SSCARD_{name}_FILE ({path})"
        try:
            data = path.read_bytes().strip()
        except FileNotFoundError as exc:
            raise ConfigError(
                f"secret SSCARD_{name} is not set and {path} does not exist "
                "(`make run` creates development secrets under var/)"
            ) from exc
        except OSError as exc:
            raise ConfigError(f"{where} cannot be read: {exc.strerror}") from exc
    try:
        secret = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} is not valid base64") from None
    if size is not None and len(secret) != size:
        raise ConfigError(f"{where} must decode to {size} bytes, got {len(secret)}")
    return secret


def load(name: str, env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Read one service's configuration."""
    if name not in SERVICES:
        raise ConfigError(f"unknown service {name!r}")
    env = os.environ if env is None else env
    prefix = f"SSCARD_{name.upper()}_"
    environment = environment_of(env)
    test_clock_file = env.get("SSCARD_TEST_CLOCK_FILE", "").strip() or None
    if test_clock_file and environment == "production":
        raise ConfigError(
            "SSCARD_TEST_CLOCK_FILE must not be set when SSCARD_ENVIRONMENT=production"
        )
    ttl_hours = int_setting(env, "SSCARD_IDEMPOTENCY_TTL_HOURS", 48, minimum=24)
    signing_key_file, token_file = _own_credential(env, prefix, name, environment)
    port_file = env.get(prefix + "PORT_FILE", "").strip()
    anchors = VAR_DIR / "audit" / f"{name}-anchors.jsonl"
    return ServiceConfig(
        name=name,
        host=_env(env, prefix + "HOST", "127.0.0.1"),
        port=_port(env, prefix + "PORT", DEFAULT_PORTS[name]),
        db_url=_db_url(env, prefix + "DB_URL", f"sqlite:///{VAR_DIR / (name + '.db')}"),
        workers=int_setting(env, prefix + "WORKERS", 1, minimum=1),
        threads=int_setting(env, prefix + "THREADS", 8, minimum=1),
        grace_seconds=float_setting(env, "SSCARD_SHUTDOWN_GRACE_SECONDS", 5.0),
        drain_seconds=float_setting(env, "SSCARD_DRAIN_SECONDS", 5.0),
        max_response_bytes=int_setting(
            env, "SSCARD_MAX_RESPONSE_BYTES", 32 * 1024 * 1024, minimum=1024
        ),
        max_request_bytes=int_setting(env, "SSCARD_MAX_REQUEST_BYTES", REQUEST_BYTES, minimum=1024),
        client_max_calls=int_setting(env, "SSCARD_CLIENT_MAX_CALLS", 32, minimum=1),
        trust_dir=Path(_env(env, "SSCARD_TRUST_DIR", str(VAR_DIR / "trust"))),
        client_registry=Path(
            _env(env, "SSCARD_CLIENT_REGISTRY", str(REPO_ROOT / "deploy" / "clients.toml"))
        ),
        trust_reload_seconds=trust_reload_seconds(env),
        signing_key_file=signing_key_file,
        token_file=token_file,
        token_ttl_seconds=int_setting(env, "SSCARD_SERVICE_TOKEN_TTL_SECONDS", 3600, minimum=60),
        idempotency_ttl_hours=ttl_hours,
        audit_anchor_seconds=_anchor_seconds(env),
        audit_anchor_file=Path(_env(env, prefix + "AUDIT_ANCHOR_FILE", str(anchors))),
        environment=environment,
        test_clock_file=test_clock_file,
        calendar_file=_env(env, "SSCARD_CALENDAR_FILE", str(SHIPPED_CALENDAR_FILE)),
        log_level=_choice(
            "SSCARD_LOG_LEVEL", _env(env, "SSCARD_LOG_LEVEL", "INFO").upper(), LOG_LEVELS
        ),
        log_format=_choice(
            "SSCARD_LOG_FORMAT", _env(env, "SSCARD_LOG_FORMAT", "json").lower(), LOG_FORMATS
        ),
        metrics_port=_port(env, prefix + "METRICS_PORT", DEFAULT_METRICS_PORTS[name]),
        port_file=Path(port_file) if port_file else None,
        health_port=_port(env, prefix + "HEALTH_PORT", 0),
        tls=tls_files(env, f"{name}-service", prefix, environment),
        env=dict(env),
    )
