"""The one mapping between domain errors and gRPC statuses, both ways.

Servers: ``to_status`` turns a ``DomainError`` into a ``google.rpc.Status`` with ``ErrorInfo``
(reason, domain ``<service>.sscard``, metadata ``rule``), ``BadRequest`` field violations and,
when a retry after a while may succeed, ``RetryInfo``.
Clients: ``from_rpc_error`` reads those details back into a ``DomainError`` so a caller can act
on the reason and rule, and ``is_retryable`` says whether a failure is transport-level.
"""

from __future__ import annotations

from typing import cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.platform.errors import DomainError, FieldViolation, Kind
from services.platform.masking import redact

CODES: dict[Kind, grpc.StatusCode] = {
    Kind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Kind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Kind.PERMISSION: grpc.StatusCode.PERMISSION_DENIED,
    Kind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Kind.CONFLICT: grpc.StatusCode.ABORTED,
    Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Kind.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
KINDS = {code: kind for kind, code in CODES.items()}

RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
)


def to_status(error: DomainError, domain: str) -> grpc.Status:
    """The rich status for a refusal; messages are masked once more as a safety net."""
    code = CODES[error.kind]
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=domain)
    if error.rule:
        info.metadata["rule"] = error.rule
    for key, value in error.metadata.items():
        info.metadata[key] = redact(value)
    details: list[Message] = [info]
    if error.retry_after_seconds:
        details.append(
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=error.retry_after_seconds)
            )
        )
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=redact(v.description), reason=v.reason
                    )
                    for v in error.violations
                ]
            )
        )
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    status = status_pb2.Status(code=code.value[0], message=redact(error.message), details=packed)
    result: grpc.Status = rpc_status.to_status(status)
    return result


def internal_status(reference: str) -> grpc.Status:
    """What a caller sees of an unexpected failure: a reference to the log, nothing more."""
    status = status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error (reference {reference})"
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


def from_rpc_error(failure: grpc.RpcError) -> DomainError:
    """A refusal from another service as a DomainError carrying its reason and rule."""
    error = cast(grpc.Call, failure)  # the RpcError a call raises is also its Call
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name
    reason, rule, metadata, retry_after = code.name, "", {}, 0
    violations: list[FieldViolation] = []
    status = rpc_status.from_call(error)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
                metadata = dict(info.metadata)
                rule = metadata.pop("rule", "")
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.seconds
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [
                    FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations
                ]
    kind = KINDS.get(code, Kind.UNAVAILABLE)
    return DomainError(
        reason,
        message,
        kind=kind,
        rule=rule,
        violations=tuple(violations),
        metadata=metadata,
        retry_after_seconds=retry_after,
    )


def is_retryable(failure: grpc.RpcError) -> bool:
    """Transport-level failures worth retrying with the same request_id."""
    return cast(grpc.Call, failure).code() in RETRYABLE
