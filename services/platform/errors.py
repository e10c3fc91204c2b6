"""Domain error vocabulary shared by every service.

Pure Python: domain code raises these, and the one error mapping in ``grpc_errors`` turns
them into ``google.rpc.Status`` with ``ErrorInfo`` (reason, rule) and ``BadRequest`` details.
Messages must never carry a full ID number or phone number: mask with ``masking``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Kind(enum.Enum):
    """What sort of refusal an error is; decides the gRPC status code."""

    INVALID = "INVALID"  # malformed input -> INVALID_ARGUMENT
    PRECONDITION = "PRECONDITION"  # wrong state for the rule -> FAILED_PRECONDITION
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION = "PERMISSION"  # channel / role -> PERMISSION_DENIED
    UNAUTHENTICATED = "UNAUTHENTICATED"
    CONFLICT = "CONFLICT"  # concurrency conflict, key in use -> ABORTED
    UNAVAILABLE = "UNAVAILABLE"  # a dependency is down
    EXHAUSTED = "EXHAUSTED"  # a size or rate limit -> RESOURCE_EXHAUSTED


@dataclass(frozen=True)
class FieldViolation:
    """One malformed or missing field of a request (``BadRequest.FieldViolation``)."""

    field: str
    description: str
    reason: str = ""


@dataclass
class DomainError(Exception):
    """A refusal with a stable UPPER_SNAKE reason and, where a rule decides it, the rule ID."""

    reason: str
    message: str
    kind: Kind = Kind.PRECONDITION
    rule: str = ""
    violations: tuple[FieldViolation, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    # When a retry may succeed (an admission limit), after how long: a RetryInfo detail.
    retry_after_seconds: int = 0

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def invalid(
    reason: str, violations: list[FieldViolation] | tuple[FieldViolation, ...], rule: str = ""
) -> DomainError:
    """An INVALID_ARGUMENT refusal listing every malformed field at once."""
    fields = ", ".join(v.field for v in violations)
    return DomainError(
        reason=reason,
        message=f"invalid request: {fields}",
        kind=Kind.INVALID,
        rule=rule,
        violations=tuple(violations),
    )


class Violations:
    """Collects field violations while a request is validated, then raises them together."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field_name: str, description: str, reason: str = "") -> None:
        self.items.append(FieldViolation(field_name, description, reason))

    def raise_if_any(self, reason: str = "INVALID_REQUEST", rule: str = "") -> None:
        if self.items:
            raise invalid(reason, self.items, rule)
