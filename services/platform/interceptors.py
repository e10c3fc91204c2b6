"""The call guard: the one server interceptor every sscard service runs.

For every call except health checks and reflection it verifies the caller credential (missing,
expired, forged or outside its client's registration: UNAUTHENTICATED / PERMISSION_DENIED),
asks the authorization matrix (``access``) whether the credential's roles may call the method,
makes the caller available to the servicer through
``auth.current_caller()``, refuses text carrying NUL characters (no field of the suite accepts
them, and PostgreSQL cannot store them) and a value the database cannot hold, answers a lost
database connection UNAVAILABLE (retryable with the same request_id), turns a
``DomainError`` into the rich status of ``grpc_errors``, turns anything unexpected into INTERNAL
with a log reference and no exception text, and logs one line per call.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from services.platform import access, auth, logs
from services.platform.errors import DomainError, FieldViolation, Kind
from services.platform.grpc_errors import CODES, internal_status, to_status
from services.platform.trust import Verifier

log = logging.getLogger("sscard.calls")

OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        raise auth.unauthenticated("the call carries no credential", "CREDENTIAL_MISSING")
    if len(values) > 1:
        raise auth.unauthenticated(
            "the call carries more than one authorization header", "DUPLICATE_CREDENTIAL"
        )
    value = values[0]
    text = value.decode() if isinstance(value, bytes) else value
    scheme, _, token = text.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise auth.unauthenticated(
            "the authorization header is not a bearer token", "CREDENTIAL_MALFORMED"
        )
    return token.strip()


def _nul_field(message: Message, prefix: str = "") -> str | None:
    """The path of the first text field carrying a NUL character, if any."""
    for field, value in message.ListFields():
        name = prefix + field.name
        items = value if field.is_repeated else (value,)
        if field.type == FieldDescriptor.TYPE_STRING:
            if any("\x00" in item for item in items):
                return name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in items if not isinstance(items, dict) else items.values():
                if isinstance(item, Message) and (found := _nul_field(item, name + ".")):
                    return found
    return None


def _check_text(request: Any) -> None:
    if isinstance(request, Message) and (field := _nul_field(request)) is not None:
        raise DomainError(
            "INVALID_CHARACTERS",
            f"{field} contains a NUL character",
            kind=Kind.INVALID,
            violations=(FieldViolation(field, "must not contain NUL characters", "INVALID"),),
        )


def _database_unavailable() -> DomainError:
    return DomainError(
        "DATABASE_UNAVAILABLE",
        "the service lost its database connection; retry with the same request_id",
        kind=Kind.UNAVAILABLE,
    )


def _not_storable() -> DomainError:
    return DomainError(
        "VALUE_NOT_ACCEPTED",
        "a value in the request is longer or otherwise unlike what its field accepts",
        kind=Kind.INVALID,
    )


class CallGuard(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Authentication, error mapping and call logging for one service."""

    def __init__(self, verifier: Verifier, error_domain: str) -> None:
        self._verifier = verifier
        self._domain = error_domain

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        metadata = details.invocation_metadata
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._guard(method, metadata, handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._guard(method, metadata, handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._guard_stream(method, metadata, handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            self._guard_stream(method, metadata, handler.stream_stream),
            handler.request_deserializer,
            handler.response_serializer,
        )

    def _enter(self, method: str, metadata: Any) -> Any:
        caller = self._verifier.verify(_bearer(metadata))
        access.authorize(method, caller)
        return auth.bind_caller(caller)

    def _refuse(self, method: str, context: grpc.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, DataError):
            log.info("%s: the database refused a value of the request", method)
            exc = _not_storable()
        elif isinstance(exc, OperationalError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        ):
            log.warning("%s: the database connection failed: %s", method, type(exc.orig).__name__)
            exc = _database_unavailable()
        if isinstance(exc, DomainError):
            code = CODES[exc.kind].name
            log.info(
                "%s refused %s %s",
                method,
                code,
                exc.reason,
                extra={logs.OUTCOME: code, logs.REASON: exc.reason},
            )
            context.abort_with_status(to_status(exc, self._domain))
        reference = uuid.uuid4().hex[:12]
        log.error("%s failed, reference %s", method, reference, exc_info=exc)
        context.abort_with_status(internal_status(reference))

    def _guard(self, method: str, metadata: Any, behaviour: Callable[..., Any]) -> Any:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            token = None
            try:
                token = self._enter(method, metadata)
                _check_text(request)
                response = behaviour(request, context)
            except Exception as exc:  # every failure leaves as a mapped status
                self._refuse(method, context, exc)
                raise
            finally:
                if token is not None:
                    auth.unbind_caller(token)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s OK %.1fms", method, (time.perf_counter() - started) * 1000)
            return response

        return guarded

    def _guard_stream(self, method: str, metadata: Any, behaviour: Callable[..., Any]) -> Any:
        def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            token = None
            try:
                token = self._enter(method, metadata)
                yield from behaviour(request, context)
            except Exception as exc:
                self._refuse(method, context, exc)
                raise
            finally:
                if token is not None:
                    auth.unbind_caller(token)

        return guarded
