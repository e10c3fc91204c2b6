"""Logging set-up: one line per record, identifiers masked, the call's context on every line.

``SSCARD_LOG_FORMAT=json`` (the default) writes JSON lines with time, level, service, logger,
message and, inside a call, method, request id, trace id (also in a saga's steps), client id,
channel and, where known, outcome and reason; ``text`` writes the same as one readable line for
a terminal. The call context lives in a contextvar that the call observer sets for every call,
so every line logged while serving a call carries it; the caller comes from the call guard's
bound credential. Both formats mask ID and phone numbers in the whole rendered line.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from dataclasses import dataclass, replace
from typing import Any, TextIO

from opentelemetry import trace

from services.platform import auth
from services.platform.masking import RedactingFormatter, redact

# Fields a record may carry through ``extra=``; they are part of every line that has them.
OUTCOME = "outcome"
REASON = "reason"
# An audit anchor (``anchors``), logged whole and unmasked: only lanes, numbers, hashes, a time
# and the service, and masking could turn a run of digits in a hash into something else.
ANCHOR = "anchor"


@dataclass(frozen=True)
class CallContext:
    """The call being served: set by the call observer, read by every log line."""

    service: str
    method: str
    request_id: str


_CALL: contextvars.ContextVar[CallContext] = contextvars.ContextVar("sscard_call")


def bind_call(context: CallContext) -> contextvars.Token[CallContext]:
    return _CALL.set(context)


def unbind_call(token: contextvars.Token[CallContext]) -> None:
    _CALL.reset(token)


def note_request_id(request_id: object) -> None:
    """The request id, once the call guard has read the request, for the call's later lines."""
    call = _CALL.get(None)
    if call is not None and isinstance(request_id, str) and request_id:
        _CALL.set(replace(call, request_id=request_id))


def _trace_id() -> str:
    """The current span's trace id in hex (``tracing``), or "" outside any trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


class CallFields(logging.Filter):
    """Stamps the call's context and caller on each record when it is logged."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        call = _CALL.get(None)
        caller = auth.bound_caller()
        record.service = call.service if call else self._service
        record.method = call.method if call else ""
        record.request_id = call.request_id if call else ""
        record.client_id = (caller.client_id or caller.caller) if caller else ""
        record.channel = caller.channel.value if caller else ""
        record.trace_id = _trace_id()
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    line: dict[str, Any] = {
        "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
            timespec="milliseconds"
        ),
        "level": record.levelname,
        "service": getattr(record, "service", ""),
        "logger": record.name,
        "message": record.getMessage(),
    }
    for key in ("method", "request_id", "trace_id", "client_id", "channel", OUTCOME, REASON):
        value = getattr(record, key, "")
        if value:
            line[key] = value
    return line


def _anchor(record: logging.LogRecord) -> str:
    anchor = getattr(record, ANCHOR, None)
    return json.dumps(anchor, separators=(",", ":")) if anchor is not None else ""


class JsonFormatter(logging.Formatter):
    """One JSON object per line; identifiers masked everywhere, the traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        line = _fields(record)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        text = redact(json.dumps(line, ensure_ascii=False))
        anchor = _anchor(record)
        return f'{text[:-1]}, "{ANCHOR}": {anchor}}}' if anchor else text


class TextFormatter(RedactingFormatter):
    """The same fields as one readable line, for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = _fields(record)
        head = f"{line.pop('time')} {line.pop('level'):<7} {line.pop('service')} "
        head += f"{line.pop('logger')}: {line.pop('message')}"
        tail = " ".join(f"{key}={value}" for key, value in line.items())
        record.message = f"{head}  [{tail}]" if tail else head
        text = record.message
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        anchor = _anchor(record)
        return redact(text) + (f" {ANCHOR}={anchor}" if anchor else "")


def handler(service: str, fmt: str = "json", stream: TextIO | None = None) -> logging.Handler:
    """A handler writing ``fmt`` lines for ``service`` to ``stream`` (stderr by default)."""
    out = logging.StreamHandler(sys.stderr if stream is None else stream)
    out.addFilter(CallFields(service))
    out.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return out


def configure(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send every log record to stderr in ``fmt``."""
    root = logging.getLogger()
    root.handlers[:] = [handler(service, fmt)]
    root.setLevel(level)
    # Alembic announces its dialect on every readiness check; only its warnings matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)
