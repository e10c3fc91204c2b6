"""Traces (OpenTelemetry): one trace follows a request through every service it reaches.

Every server runs ``ServerTracer`` outermost: it continues the W3C trace context
(``traceparent``) a call carries, or starts a trace, and serves the call in a SERVER span.
Every channel to another service goes through ``ClientTracer`` (``traced``), which sends the
current context along in a CLIENT span. A saga keeps the ``traceparent`` of the call that started
it (``current_traceparent``) and runs each later step in a span under it (``resumed``), so its
steps join the caller's trace whichever worker, replica or restarted process runs them.

Spans are always made (log lines carry their trace id); they leave the process only when the
standard variables ask for it: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``) or
``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``), with every other ``OTEL_*`` variable
(headers, protocol options, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, sampler) read by
the OpenTelemetry SDK itself. ``OTEL_SDK_DISABLED=true`` turns tracing off altogether.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.platform.interceptors import OPEN_PREFIXES

_tracer = trace.get_tracer("sscard")
# A saga stores W3C trace context whatever OTEL_PROPAGATORS says: its column is a traceparent.
_W3C = TraceContextTextMapPropagator()


def configure(service: str, env: Mapping[str, str]) -> None:
    """Install this process's tracer provider, exporting as the ``OTEL_*`` variables say."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": f"sscard-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    processor = _exporting(env)
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)


def _exporting(env: Mapping[str, str]) -> SpanProcessor | None:
    chosen = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if chosen == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if chosen == "otlp" or (not chosen and endpoint):
        # Imported only when used: the exporter brings its own gRPC channel and protobufs.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return BatchSpanProcessor(OTLPSpanExporter())
    return None  # unset or "none": spans stay in the process (log lines carry their ids)


def current_traceparent() -> str:
    """The current trace context as a W3C ``traceparent`` header value ("" outside a trace)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent", "")


@contextmanager
def resumed(traceparent: str, name: str, **attributes: str | int) -> Iterator[None]:
    """Run the enclosed work in a span whose parent is ``traceparent`` (a new trace without)."""
    parent = _W3C.extract({"traceparent": traceparent}) if traceparent else otel_context.Context()
    with _tracer.start_as_current_span(name, context=parent, attributes=attributes):
        yield


# --- server side --------------------------------------------------------------------------------


class _MetadataGetter(Getter[Mapping[str, str]]):
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_GETTER = _MetadataGetter()


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _end(span: trace.Span, code: grpc.StatusCode | None, failed: bool) -> None:
    if code is None:
        code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
    span.end()


class ServerTracer(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Serves each call in a SERVER span continuing the caller's trace context."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        headers = {
            key: value for key, value in details.invocation_metadata or () if isinstance(value, str)
        }
        wrap = _unary if not handler.response_streaming else _streaming
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(handler.request_streaming, handler.response_streaming)]
        behaviour = (
            handler.unary_unary
            or handler.stream_unary
            or handler.unary_stream
            or handler.stream_stream
        )
        if behaviour is None:
            return handler
        return make(
            wrap(method, propagate.extract(headers, getter=_GETTER), behaviour),
            handler.request_deserializer,
            handler.response_serializer,
        )


def _server_span(method: str, parent: otel_context.Context) -> trace.Span:
    return _tracer.start_span(
        method.lstrip("/"),
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes=_rpc_attributes(method),
    )


def _unary(method: str, parent: otel_context.Context, behaviour: Callable[..., Any]) -> Any:
    def traced(request: Any, context: grpc.ServicerContext) -> Any:
        span = _server_span(method, parent)
        failed = True
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False):
                response = behaviour(request, context)
            failed = False
            return response
        finally:
            _end(span, context.code(), failed)  # type: ignore[attr-defined]

    return traced


def _streaming(method: str, parent: otel_context.Context, behaviour: Callable[..., Any]) -> Any:
    def traced(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        span = _server_span(method, parent)
        failed = True
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False):
                yield from behaviour(request, context)
            failed = False
        finally:
            _end(span, context.code(), failed)  # type: ignore[attr-defined]

    return traced


# --- client side --------------------------------------------------------------------------------


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class ClientTracer(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Each outgoing call in a CLIENT span, its context sent along as ``traceparent``."""

    def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        method = str(details.method)
        span = _tracer.start_span(
            method.lstrip("/"), kind=trace.SpanKind.CLIENT, attributes=_rpc_attributes(method)
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = [*(details.metadata or ()), *carrier.items()]
        outgoing = _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        try:
            outcome = continuation(outgoing, request)
        except Exception:
            _end(span, None, True)
            raise
        outcome.add_done_callback(lambda done: _end(span, done.code(), False))
        return outcome

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._call(continuation, details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._call(continuation, details, request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._call(continuation, details, requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._call(continuation, details, requests)


def traced(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` with every call sent in a CLIENT span carrying the trace context."""
    return grpc.intercept_channel(channel, ClientTracer())
