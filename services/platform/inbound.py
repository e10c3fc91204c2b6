"""What the call guard admits, and how it reads a request it has admitted.

* Size: only the bulk methods (``BULK_METHODS``) may send a request up to the bulk limit
  (``SSCARD_MAX_MESSAGE_BYTES``); every other method's request must fit
  ``SSCARD_MAX_REQUEST_BYTES`` (1 MiB: the largest single-card request, an Apply with a 512 KiB
  photo, is about 0.5 MiB). A larger one is refused before it is decoded.
* Memory: grpc core reads a request message whole, up to the server's receive limit, before
  the guard can look at its size, so the receive limit (``Limits.receive_limit``) is what bounds
  the memory one admitted call can take: the request limit on a server without bulk methods
  (bank, transit), the bulk limit only on one with them (identity, card). A call refused at the
  door (no or a bad credential, a method its roles may not call, its client over the admission
  limit) is never read: what the transport holds of its body is the HTTP/2 flow-control window,
  freed when the call is refused. So a service's memory under hostile calls is bounded by
  admitted calls (``SSCARD_CLIENT_MAX_CALLS`` per client) times its receive limit.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from services.platform.errors import DomainError, Kind

BULK_METHODS = frozenset(
    {
        "/sscard.identity.v1.IdentityService/ImportPersons",
        "/sscard.card.v1.CardService/ApplyBatch",
    }
)
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
TOO_LARGE = Unreadable(
    "REQUEST_TOO_LARGE", "the request is larger than this method accepts", Kind.EXHAUSTED
)
# Refusals a flood of hostile calls produces: logged counted and summarised, not one per call.
FLOOD_REASONS = (MALFORMED.reason, TOO_LARGE.reason, OVER_LIMIT)


@dataclass(frozen=True)
class Limits:
    """Request size limits and the per-client admission limit of one service."""

    request_bytes: int
    bulk_bytes: int
    calls_per_client: int

    def request_limit(self, method: str) -> int:
        return self.bulk_bytes if method in BULK_METHODS else self.request_bytes

    def receive_limit(self, services: Iterable[str]) -> int:
        """The largest message the transport of a server of ``services`` reads: the bulk limit
        only where one of them has a bulk method."""
        served = set(services)
        bulk = any(method.split("/")[1] in served for method in BULK_METHODS)
        return self.bulk_bytes if bulk else self.request_bytes


def tolerant(deserializer: Callable[[bytes], Any] | None, limit: int) -> Callable[[bytes], Any]:
    """The method's deserializer, answering ``Unreadable`` for an oversized or malformed request
    (grpcio would log a stack trace and answer INTERNAL)."""

    def decode(data: bytes) -> Any:
        if len(data) > limit:
            return TOO_LARGE
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
