"""Who is calling: the verified caller of the call being served.

Every call carries ``authorization: Bearer <token>``: a JWT signed by a named issuer with an
asymmetric key (``trust``), whose client is registered in the client registry. The call guard
turns it into a ``Caller`` only after the issuer's public key, the claims and the client's
registration all agree; the servicer then reads it with ``current_caller()``. The services never
trust a channel named in a request body, nor a claim the registry does not back.
"""

from __future__ import annotations

import contextvars
import enum
from dataclasses import dataclass, field

from services.platform.errors import DomainError, Kind


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
    """What a credential is for. Each client kind may be registered only for some of them."""

    SERVICE = "service"  # one of the suite's own services
    REGISTRY = "registry"  # the HR / medical-insurance data feed
    OPS = "ops"  # operations staff and their console
    COUNTER = "counter"  # an operator serving a person (outlet, branch, hotline, kiosk)
    EMPLOYER = "employer"  # an employer acting for its employees (subject = its credit code)
    PERSON = "person"  # a person acting for themself online or in the transit app
    PORTAL = "portal"  # a people-facing portal's own system (maps a person to their subject)
    FACTORY = "factory"  # the card factory: reports cards produced and mailed
    BANK = "bank"  # a bank core system booking its own accounts' non-counter money


class ClientKind(enum.StrEnum):
    """The kinds of registered client (README, "Integrators")."""

    BANK_CORE = "bank_core"
    CARD_FACTORY = "card_factory"
    KIOSK_FLEET = "kiosk_fleet"
    TRANSIT_APP = "transit_app"
    DISTRICT_OUTLET_SYSTEM = "district_outlet_system"
    PARK_OUTLET_SYSTEM = "park_outlet_system"
    ONLINE_PORTAL = "online_portal"
    HOTLINE = "hotline"
    REGISTRY_FEED = "registry_feed"
    OPS_CONSOLE = "ops_console"
    SSCARD_SERVICE = "sscard_service"


@dataclass(frozen=True)
class KindRules:
    """What a client of one kind may ever be registered for, and how long its tokens may live."""

    channels: frozenset[Channel]
    roles: frozenset[Role]
    max_lifetime_seconds: int


_HOUR = 3600
_DAY = 24 * _HOUR


def _rules(channels: set[Channel], roles: set[Role], lifetime: int = _DAY) -> KindRules:
    return KindRules(frozenset(channels), frozenset(roles), lifetime)


# A registration outside its kind's row is refused when the registry loads. People's sessions
# live at most an hour, systems' credentials at most a day.
KIND_RULES: dict[ClientKind, KindRules] = {
    ClientKind.BANK_CORE: _rules(
        {Channel.BANK_BRANCH, Channel.BANK_HOTLINE, Channel.INTERNAL},
        {Role.COUNTER, Role.BANK, Role.EMPLOYER},
    ),
    ClientKind.CARD_FACTORY: _rules({Channel.INTERNAL}, {Role.FACTORY}),
    ClientKind.KIOSK_FLEET: _rules({Channel.TRANSIT_OUTLET}, {Role.COUNTER}),
    ClientKind.TRANSIT_APP: _rules({Channel.TRANSIT_APP}, {Role.PERSON, Role.PORTAL}, _HOUR),
    ClientKind.DISTRICT_OUTLET_SYSTEM: _rules({Channel.DISTRICT_OUTLET}, {Role.COUNTER}),
    ClientKind.PARK_OUTLET_SYSTEM: _rules({Channel.PARK_OUTLET}, {Role.COUNTER}),
    ClientKind.ONLINE_PORTAL: _rules(
        {Channel.ONLINE}, {Role.PERSON, Role.EMPLOYER, Role.PORTAL}, _HOUR
    ),
    ClientKind.HOTLINE: _rules({Channel.HOTLINE}, {Role.COUNTER}),
    ClientKind.REGISTRY_FEED: _rules({Channel.INTERNAL}, {Role.REGISTRY}),
    ClientKind.OPS_CONSOLE: _rules({Channel.INTERNAL}, {Role.OPS}),
    ClientKind.SSCARD_SERVICE: _rules({Channel.INTERNAL}, {Role.SERVICE}),
}

# Roles whose credentials name someone other than the client itself in ``sub``.
SUBJECT_ROLES = frozenset({Role.PERSON, Role.EMPLOYER})


@dataclass(frozen=True)
class Caller:
    """The verified identity of whoever made the current call.

    ``caller`` is the credential's subject: the client itself for a system, the person's opaque
    id for a person, the employer's credit code for an employer. ``client_id`` is the registered
    client that obtained the credential.
    """

    caller: str
    channel: Channel
    roles: frozenset[Role] = field(default_factory=frozenset)
    outlet_id: str = ""
    bank_code: str = ""
    operator_id: str = ""
    client_id: str = ""
    kind: ClientKind | None = None
    # The thumbprint (x5t#S256) of the client certificate the credential is bound to, if any.
    bound_to: str = ""

    def has_any(self, *roles: Role) -> bool:
        return any(r in self.roles for r in roles)

    @property
    def person_id(self) -> str:
        """The person a PERSON credential was issued to ("" for any other credential)."""
        return self.caller if Role.PERSON in self.roles else ""

    @property
    def scope(self) -> str:
        """Who a request id belongs to: the client, and the person or employer it acts for."""
        client = self.client_id or self.caller
        return client if self.caller == client else f"{client}/{self.caller}"


def unauthenticated(message: str, reason: str = "UNAUTHENTICATED", **metadata: str) -> DomainError:
    return DomainError(reason, message, kind=Kind.UNAUTHENTICATED, metadata=dict(metadata))


def require_role(caller: Caller, *roles: Role) -> None:
    """Refuse with PERMISSION_DENIED unless the caller has one of ``roles``."""
    if not caller.has_any(*roles):
        allowed = ", ".join(r.value for r in roles)
        raise DomainError(
            "ROLE_NOT_ALLOWED",
            f"this operation needs one of the roles: {allowed}",
            kind=Kind.PERMISSION,
        )


_CURRENT: contextvars.ContextVar[Caller] = contextvars.ContextVar("sscard_caller")


def current_caller() -> Caller:
    """The caller of the call being served (set by the server's call guard)."""
    try:
        return _CURRENT.get()
    except LookupError as exc:
        raise unauthenticated("no credential") from exc


def bound_caller() -> Caller | None:
    """The caller of the call being served, or None outside a call (sagas, timers)."""
    return _CURRENT.get(None)


def bind_caller(caller: Caller) -> contextvars.Token[Caller]:
    return _CURRENT.set(caller)


def unbind_caller(token: contextvars.Token[Caller]) -> None:
    _CURRENT.reset(token)
