"""The call guard: the one server interceptor every sscard service runs.

For every call except health checks and reflection it verifies the caller credential (missing,
expired, forged, outside its client's registration or, over mutual TLS, presented over another
certificate than the one it is bound to: UNAUTHENTICATED / PERMISSION_DENIED),
asks the authorization matrix (``access``) whether the credential's roles may call the method,
admits the call within its client's limit and only then reads the request, refusing one that
does not decode (``inbound``; one over the request limit grpc core refuses itself), makes the
caller available to the servicer through ``auth.current_caller()``, refuses text carrying NUL
characters in any request message, of a stream too (no field of the suite accepts them, and
PostgreSQL cannot store them) and a value the database cannot hold,
answers a lost database connection UNAVAILABLE (retryable with the same request_id), turns a
``DomainError`` into the rich status of ``grpc_errors``, turns anything unexpected into INTERNAL
with a log reference and no exception text, and logs one line per refused call (a flood of
malformed or over-limit calls: a line when it starts and a counted summary a minute).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from services.platform import access, auth, inbound, logs
from services.platform.auth import Caller
from services.platform.errors import DomainError, FieldViolation, Kind
from services.platform.faultlog import FailureLog
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
    """Authentication, admission, error mapping and call logging for one service.

    The credential, the method's roles and the client's admission are checked on the call's
    headers, before its request is read (``inbound``): every method is served as one that
    reads its request stream itself, so a refused call's body is never read. Each method's
    guarded handler is built once, on its first call, and serves every later one.
    """

    def __init__(self, verifier: Verifier, error_domain: str, calls_per_client: int) -> None:
        self._verifier = verifier
        self._domain = error_domain
        self._admission = inbound.Admission(calls_per_client)
        self._floods = {
            reason: FailureLog(log, f"{error_domain} callers", level=logging.INFO)
            for reason in inbound.FLOOD_REASONS
        }
        # The guarded handler of each method served so far (a method's handler never changes).
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = details.method
        try:
            return self._handlers[method]
        except KeyError:
            pass
        handler = continuation(details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler  # an unknown method is not remembered: callers name any they like
        guarded = self._guarded(method, handler)
        self._handlers[method] = guarded
        return guarded

    def _guarded(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        streams = handler.response_streaming
        behaviour = (
            (handler.unary_stream or handler.stream_stream)
            if streams
            else (handler.unary_unary or handler.stream_unary)
        )
        if behaviour is None:  # a handler without a behaviour serves nothing: UNIMPLEMENTED
            return None
        decode = inbound.tolerant(handler.request_deserializer)
        unary = not handler.request_streaming
        if streams:
            return grpc.stream_stream_rpc_method_handler(
                self._guard_stream(method, behaviour, unary), decode, handler.response_serializer
            )
        return grpc.stream_unary_rpc_method_handler(
            self._guard(method, behaviour, unary), decode, handler.response_serializer
        )

    def _admit(self, method: str, metadata: Any) -> Caller | Exception:
        """The verified caller, admitted; or why not (raised when the call is served)."""
        try:
            caller = self._verifier.verify(_bearer(metadata))
            access.authorize(method, caller)
            self._admission.enter(_client(caller))
        except Exception as exc:  # refused as a mapped status, never from the poller thread
            return exc
        return caller

    def _over_its_certificate(
        self, admitted: Caller | Exception, context: grpc.ServicerContext
    ) -> Caller | Exception:
        """The admitted caller if its credential is bound to the certificate the call came over
        (the connection is known only once the call is served); else why not."""
        if isinstance(admitted, Exception) or not self._verifier.binds_certificates:
            return admitted
        try:
            self._verifier.check_certificate(admitted, _peer_certificate(context))
        except DomainError as exc:
            self._admission.leave(_client(admitted))
            return exc
        return admitted

    @contextmanager
    def _entered(self, admitted: Caller | Exception) -> Iterator[None]:
        if isinstance(admitted, Exception):
            raise admitted
        token = auth.bind_caller(admitted)
        try:
            yield
        finally:
            auth.unbind_caller(token)
            self._admission.leave(_client(admitted))

    def _refuse(self, method: str, context: grpc.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, grpc.RpcError):  # the caller went away while its request was read
            return
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
            if (flood := self._floods.get(exc.reason)) is not None:
                flood.failure(exc.reason)
            else:
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

    def _guard(self, method: str, behaviour: Callable[..., Any], unary: bool) -> Any:
        def guarded(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            admitted = self._over_its_certificate(
                self._admit(method, context.invocation_metadata()), context
            )
            try:
                with self._entered(admitted):
                    try:
                        response = behaviour(_arguments(requests, unary), context)
                    except Exception as exc:  # mapped (and logged) while the caller is bound
                        self._refuse(method, context, exc)
                        raise
            except Exception as exc:
                if exc is admitted:  # refused at the door: every failure leaves mapped
                    self._refuse(method, context, exc)
                raise
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s OK %.1fms", method, (time.perf_counter() - started) * 1000)
            return response

        return guarded

    def _guard_stream(self, method: str, behaviour: Callable[..., Any], unary: bool) -> Any:
        def guarded(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            admitted = self._over_its_certificate(
                self._admit(method, context.invocation_metadata()), context
            )
            try:
                with self._entered(admitted):
                    try:
                        yield from behaviour(_arguments(requests, unary), context)
                    except Exception as exc:
                        self._refuse(method, context, exc)
                        raise
            except Exception as exc:
                if exc is admitted:
                    self._refuse(method, context, exc)
                raise

        return guarded


def _peer_certificate(context: grpc.ServicerContext) -> bytes | None:
    """The client certificate (PEM) the call's connection presented; None over plaintext."""
    presented: Any = context.auth_context().get("x509_pem_cert", ())
    return next(iter(presented), None)


def _client(caller: Caller) -> str:
    return caller.client_id or caller.caller


def _readable(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, inbound.Unreadable):
            raise request.error()
        _check_text(request)
        yield request


def _arguments(requests: Iterator[Any], unary: bool) -> Any:
    """What the method's behaviour takes: its one request, read now, or its request stream."""
    if not unary:
        return _readable(requests)
    request = next(requests, inbound.MALFORMED)  # a unary call must carry one message
    if isinstance(request, inbound.Unreadable):
        raise request.error()
    _check_text(request)
    logs.note_request_id(getattr(request, "request_id", ""))
    return request
