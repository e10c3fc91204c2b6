"""The call observer: the outermost server interceptor of every sscard service.

For every call it binds the call's context (service, method; the call guard adds the request
id once it has read the request) for the log lines
written while serving it, and counts the call by status code and times it for /metrics. It
changes no answer: the call guard inside it decides those. Health checks and reflection pass
through unobserved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from services.platform import logs
from services.platform.interceptors import OPEN_PREFIXES
from services.platform.metrics import ServiceMetrics


def _code(context: grpc.ServicerContext, failed: bool) -> str:
    code = context.code()  # type: ignore[attr-defined]
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return str(code.name)


class CallObserver(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Call context for the logs, request counts and latencies for the metrics."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(method, handler.stream_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler

    def _unary(self, method: str, behaviour: Callable[..., Any]) -> Any:
        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            token = logs.bind_call(logs.CallContext(self._metrics.service, method, ""))
            failed = True
            try:
                response = behaviour(request, context)
                failed = False
                return response
            finally:
                logs.unbind_call(token)
                self._metrics.observe(method, _code(context, failed), time.perf_counter() - started)

        return observed

    def _stream(self, method: str, behaviour: Callable[..., Any]) -> Any:
        def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            token = logs.bind_call(logs.CallContext(self._metrics.service, method, ""))
            failed = True
            try:
                yield from behaviour(request, context)
                failed = False
            finally:
                logs.unbind_call(token)
                self._metrics.observe(method, _code(context, failed), time.perf_counter() - started)

        return observed
