"""What every typed client port to another sscard service shares.

A service calls another with its own credential (channel INTERNAL, role `service`), minted from
the shared secret and renewed before it expires; every call has a deadline; a refusal comes
back as the DomainError the other side raised (reason and rule intact), and a transport failure
as an UNAVAILABLE DomainError that sagas and relays retry.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from services.platform.auth import Channel, Role, mint_token
from services.platform.config import ServiceConfig
from services.platform.errors import DomainError, Kind
from services.platform.grpc_errors import from_rpc_error, is_retryable

M = TypeVar("M", bound=Message)

DEFAULT_DEADLINE = 5.0


class ServiceCredential:
    """This service's own bearer credential, renewed well before it expires."""

    def __init__(self, config: ServiceConfig) -> None:
        self._secret = config.auth_secret
        self._caller = f"{config.name}-service"
        self._ttl = dt.timedelta(seconds=config.token_ttl_seconds)
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = dt.datetime.min.replace(tzinfo=dt.UTC)

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            if now >= self._renew_at:
                self._token = mint_token(
                    self._secret,
                    self._caller,
                    Channel.INTERNAL,
                    roles={Role.SERVICE},
                    ttl=self._ttl,
                )
                self._renew_at = now + self._ttl / 2
            return (("authorization", f"Bearer {self._token}"),)


def open_channel(target: str) -> grpc.Channel:
    """A channel that spreads calls over every address the target resolves to."""
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        ],
    )


def call(
    method: Callable[..., M],
    request: Message,
    credential: ServiceCredential,
    deadline: float = DEFAULT_DEADLINE,
) -> M:
    """Call another service; refusals and transport failures come back as DomainErrors."""
    try:
        return method(request, metadata=credential.metadata(), timeout=deadline)
    except grpc.RpcError as exc:
        if is_retryable(exc):
            code = exc.code().name
            raise DomainError(
                "DEPENDENCY_UNAVAILABLE",
                f"a dependency did not answer ({code}); try again",
                kind=Kind.UNAVAILABLE,
                metadata={"code": code},
            ) from exc
        raise from_rpc_error(exc) from exc
