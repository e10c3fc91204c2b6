"""What every typed client port to another sscard service shares.

A service calls another over mutual TLS with its own certificate (``tls``) and its own
credential (client `<name>-service`, channel INTERNAL, role `service`), bound to that
certificate: read from a token file the deployment renews or, in development, signed with the
service's own key (and signed again for a renewed certificate). Every call has a deadline; a
refusal comes back as the DomainError the other side raised (reason and rule intact), and a
transport failure as an UNAVAILABLE DomainError that sagas and relays retry.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from services.platform import tls, tracing
from services.platform.config import ConfigError, ServiceConfig, TlsFiles
from services.platform.errors import DomainError, Kind
from services.platform.grpc_errors import from_rpc_error, is_retryable
from services.platform.inbound import OVER_LIMIT
from services.platform.rotating import RotatingChannel
from services.platform.tokens import CredentialSource, Signer, SigningSource, TokenFileSource

M = TypeVar("M", bound=Message)

DEFAULT_DEADLINE = 5.0

# gRPC tries a call answered UNAVAILABLE up to this many times within its deadline; every call
# that changes something carries a request id, so a repeat is never booked twice.
RETRY_ATTEMPTS = 4
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": RETRY_ATTEMPTS,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)
# A dependency back after an outage is reconnected to within this long.
MAX_RECONNECT_BACKOFF_MS = 3_000


class ServiceCredential:
    """This service's own bearer credential (``tokens.CredentialSource``)."""

    def __init__(self, config: ServiceConfig) -> None:
        self._source = credential_source(config)

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return (("authorization", f"Bearer {self._source.token()}"),)


def credential_source(config: ServiceConfig) -> CredentialSource:
    """A token file the deployment renews, else (development) the service's own signing key."""
    if config.token_file is not None:
        return TokenFileSource(config.token_file)
    if config.environment == "production":
        raise ConfigError(
            f"SSCARD_{config.name.upper()}_TOKEN_FILE is required in production: a service "
            "holds no key that can sign"
        )
    if config.signing_key_file is None or not config.signing_key_file.exists():
        raise ConfigError(
            f"{config.name}: no credential: set SSCARD_{config.name.upper()}_TOKEN_FILE "
            "(`make run` creates development keys under var/)"
        )
    signer = Signer(config.issuer, config.signing_key_file)
    ttl = dt.timedelta(seconds=config.token_ttl_seconds)
    return SigningSource(signer, config.client_id, ttl, bound_to=client_tls(config.tls))


@functools.lru_cache(maxsize=32)
def _client_tls(files: TlsFiles) -> tls.ClientTls:
    return tls.client_tls(files)


def client_tls(files: TlsFiles | None) -> tls.ClientTls | None:
    """A process's client side of mutual TLS (None: plaintext), one per process: its channels
    and the certificate its credential is bound to follow the same files, and move to a renewed
    certificate together."""
    return None if files is None else _client_tls(files)


def channel_to(config: ServiceConfig, service: str) -> grpc.Channel:
    """A service's channel to another: mutual TLS with its own certificate unless TLS is off."""
    return open_channel(config.target(service), client_tls(config.tls))


def open_channel(target: str, own: tls.ClientTls | None = None) -> grpc.Channel:
    """A channel that spreads calls over every address the target resolves to, retries calls
    that found no server, and notices within seconds a server that comes back; mutual TLS with
    ``own`` certificate, following its files (``rotating``; plaintext without: development with
    SSCARD_TLS=off); it carries the trace context of each call (``tracing``)."""
    options = [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]
    channel: grpc.Channel
    if own is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = RotatingChannel(
            target, own, lambda credentials: grpc.secure_channel(target, credentials, options)
        )
    return tracing.traced(channel)


def call(
    method: Callable[..., M],
    request: Message,
    credential: ServiceCredential,
    deadline: float = DEFAULT_DEADLINE,
) -> M:
    """Call another service; refusals and transport failures come back as DomainErrors.

    A callee that has as many of this service's calls in progress as it admits
    (``CLIENT_OVER_LIMIT``) is busy, not refusing: like a transport failure, the call is worth
    repeating later with the same request id, so it comes back UNAVAILABLE too (a saga retries
    it; a caller of this service is told to try again)."""
    try:
        return method(request, metadata=credential.metadata(), timeout=deadline)
    except grpc.RpcError as exc:
        refusal = None if is_retryable(exc) else from_rpc_error(exc)
        if refusal is not None and refusal.reason != OVER_LIMIT:
            raise refusal from exc
        code = exc.code().name
        raise DomainError(
            "DEPENDENCY_UNAVAILABLE",
            f"a dependency did not answer ({code}); try again",
            kind=Kind.UNAVAILABLE,
            metadata={"code": code},
            retry_after_seconds=refusal.retry_after_seconds if refusal else 0,
        ) from exc
