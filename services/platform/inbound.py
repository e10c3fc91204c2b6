"""What the call guard admits, and how it reads a request it has admitted.

* Size: every request message must fit ``SSCARD_MAX_REQUEST_BYTES`` (1 MiB: the largest
  single-card request, an Apply with a 512 KiB photo, is about 0.5 MiB). It is the server's
  receive limit, so grpc core refuses a larger message itself, RESOURCE_EXHAUSTED without an
  ErrorInfo, before any handler runs (docs/errors.md). The bulk methods (ImportPersons,
  ApplyBatch) are client streams: a batch of any size arrives as messages that each fit, and
  its total is bounded by its count of records or applicants.
* Memory: grpc core reads a request message whole, up to the receive limit, before the guard
  can look at it, so one admitted call holds at most one request's worth at a time. A call
  refused at the door (no or a bad credential, a method its roles may not call, its client over
  the admission limit) is never read: what the transport holds of its body is the HTTP/2
  flow-control window, freed when the call is refused. So a service's memory under hostile
  calls is bounded by admitted calls (``SSCARD_CLIENT_MAX_CALLS`` per client) times the request
  limit.
* Bytes that do not decode as the method's request are the caller's error
  (INVALID_ARGUMENT ``MALFORMED_REQUEST``), not an exception of the server.
* Admission: each client (the credential's ``client_id``) has at most
  ``SSCARD_CLIENT_MAX_CALLS`` calls admitted at once, counted from the moment its credential is
  verified until its call ends; one more is refused RESOURCE_EXHAUSTED ``CLIENT_OVER_LIMIT``
  with a RetryInfo, so one client cannot take every thread and queue slot of a service.

The guard verifies the credential and admission from the call's headers, before the request is
read (grpcio runs interceptors on the call's metadata alone); a refused call's body is never
read, let alone decoded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from services.platform.errors import DomainError, Kind

# The default request limit (``SSCARD_MAX_REQUEST_BYTES``).
REQUEST_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = 1
# A client with as many calls in progress as it is admitted (``Admission``).
OVER_LIMIT = "CLIENT_OVER_LIMIT"


@dataclass(frozen=True)
class Unreadable:
    """What the request deserializer answers instead of a message it cannot or will not read."""

    reason: str
    message: str
    kind: Kind

    def error(self) -> DomainError:
        return DomainError(self.reason, self.message, kind=self.kind)


MALFORMED = Unreadable(
    "MALFORMED_REQUEST", "the request is not a message of this method", Kind.INVALID
)
# Refusals a flood of hostile calls produces: logged counted and summarised, not one per call.
FLOOD_REASONS = (MALFORMED.reason, OVER_LIMIT)


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """The method's deserializer, answering ``MALFORMED`` for a request that does not decode
    (grpcio would log a stack trace and answer INTERNAL)."""

    def decode(data: bytes) -> Any:
        if deserializer is None:
            return data
        try:
            return deserializer(data)
        except DecodeError:
            return MALFORMED

    return decode


class Admission:
    """How many calls each client has admitted at once, within ``per_client``."""

    def __init__(self, per_client: int) -> None:
        self._per_client = per_client
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}

    def enter(self, client: str) -> None:
        with self._lock:
            calls = self._calls.get(client, 0)
            if calls >= self._per_client:
                raise DomainError(
                    OVER_LIMIT,
                    f"this client already has {calls} calls in progress; retry shortly",
                    kind=Kind.EXHAUSTED,
                    retry_after_seconds=RETRY_AFTER_SECONDS,
                )
            self._calls[client] = calls + 1

    def leave(self, client: str) -> None:
        with self._lock:
            calls = self._calls.pop(client, 1) - 1
            if calls > 0:
                self._calls[client] = calls
