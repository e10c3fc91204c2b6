"""Caller credentials.

Every call carries ``authorization: Bearer <token>``: a signed token whose claims name the
``caller`` (system or person at a counter), the ``channel`` (rules.md, "channels"), the
``outlet_id``, ``bank_code`` and ``operator_id`` where they apply, and ``roles``. The services
never trust a channel named in a request body. Verification is one pluggable piece
(``TokenVerifier``); HS256 with a configured secret is the implementation here.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Protocol

import jwt

from services.platform.errors import DomainError, Kind

ISSUER = "sscard"


class Channel(enum.StrEnum):
    """Where a call comes from; names match ``sscard.common.v1.Channel``."""

    ONLINE = "ONLINE"
    DISTRICT_OUTLET = "DISTRICT_OUTLET"
    BANK_BRANCH = "BANK_BRANCH"
    HOTLINE = "HOTLINE"
    BANK_HOTLINE = "BANK_HOTLINE"
    TRANSIT_OUTLET = "TRANSIT_OUTLET"
    TRANSIT_APP = "TRANSIT_APP"
    PARK_OUTLET = "PARK_OUTLET"
    INTERNAL = "INTERNAL"


class Role(enum.StrEnum):
    """What a caller may do beyond its channel."""

    SERVICE = "service"  # another sscard service
    REGISTRY = "registry"  # the HR / medical-insurance data feed
    OPS = "ops"  # operations dashboards
    COUNTER = "counter"  # an operator serving a person (outlet, branch, hotline, app)
    EMPLOYER = "employer"  # an employer acting for its employees (caller = its credit code)


@dataclass(frozen=True)
class Caller:
    """The verified identity of whoever made the current call."""

    caller: str
    channel: Channel
    roles: frozenset[Role] = field(default_factory=frozenset)
    outlet_id: str = ""
    bank_code: str = ""
    operator_id: str = ""

    def has_any(self, *roles: Role) -> bool:
        return any(r in self.roles for r in roles)


def unauthenticated(message: str) -> DomainError:
    return DomainError("UNAUTHENTICATED", message, kind=Kind.UNAUTHENTICATED)


def require_role(caller: Caller, *roles: Role) -> None:
    """Refuse with PERMISSION_DENIED unless the caller has one of ``roles``."""
    if not caller.has_any(*roles):
        allowed = ", ".join(r.value for r in roles)
        raise DomainError(
            "ROLE_NOT_ALLOWED",
            f"this operation needs one of the roles: {allowed}",
            kind=Kind.PERMISSION,
        )


class TokenVerifier(Protocol):
    """Turns a bearer token into a Caller, or raises an UNAUTHENTICATED DomainError."""

    def verify(self, token: str) -> Caller: ...


class HS256Verifier:
    """Verifies HS256-signed tokens issued by ``mint_token`` with the shared secret."""

    def __init__(self, secret: bytes, leeway_seconds: int = 30) -> None:
        self._secret = secret
        self._leeway = leeway_seconds

    def verify(self, token: str) -> Caller:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=ISSUER,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "caller", "channel"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthenticated("the credential has expired") from exc
        except jwt.PyJWTError as exc:
            raise unauthenticated("the credential is not valid") from exc
        try:
            channel = Channel(claims["channel"])
            roles = frozenset(Role(r) for r in claims.get("roles", []))
        except (ValueError, TypeError) as exc:
            raise unauthenticated("the credential names an unknown channel or role") from exc
        return Caller(
            caller=str(claims["caller"]),
            channel=channel,
            roles=roles,
            outlet_id=str(claims.get("outlet_id", "")),
            bank_code=str(claims.get("bank_code", "")),
            operator_id=str(claims.get("operator_id", "")),
        )


def mint_token(
    secret: bytes,
    caller: str,
    channel: Channel,
    *,
    roles: frozenset[Role] | set[Role] = frozenset(),
    outlet_id: str = "",
    bank_code: str = "",
    operator_id: str = "",
    ttl: dt.timedelta = dt.timedelta(hours=1),
    now: dt.datetime | None = None,
) -> str:
    """Issue a signed credential (for development tools, tests and service-to-service calls)."""
    issued = now or dt.datetime.now(dt.UTC)
    claims = {
        "iss": ISSUER,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "caller": caller,
        "channel": channel.value,
        "roles": sorted(r.value for r in roles),
        "outlet_id": outlet_id,
        "bank_code": bank_code,
        "operator_id": operator_id,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


_CURRENT: contextvars.ContextVar[Caller] = contextvars.ContextVar("sscard_caller")


def current_caller() -> Caller:
    """The caller of the call being served (set by the server's call guard)."""
    try:
        return _CURRENT.get()
    except LookupError as exc:
        raise unauthenticated("no credential") from exc


def bind_caller(caller: Caller) -> contextvars.Token[Caller]:
    return _CURRENT.set(caller)


def unbind_caller(token: contextvars.Token[Caller]) -> None:
    _CURRENT.reset(token)
