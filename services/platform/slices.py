"""Slicing a bulk client stream (ImportPersons, ApplyBatch) so that each message fits.

A service refuses a request message over its request limit (``SSCARD_MAX_REQUEST_BYTES``, 1 MiB
by default) before reading it (``inbound``), so a batch of any size travels as a stream of
slices. ``slices`` cuts one whole request along its repeated field: the first message keeps the
other fields (the header: batch_id, or request_id, employer, bank and branch), every message
carries as many items as fit in ``limit`` (and at most ``most``, where a caller measured a
count that suits it). An item larger than the limit on its own travels alone, and the service
refuses it. The examples in other languages (examples/) do the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.platform.inbound import REQUEST_BYTES

M = TypeVar("M", bound=Message)


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def slices(request: M, limit: int = REQUEST_BYTES, most: int | None = None) -> Iterator[M]:
    """The messages of a client stream carrying ``request`` whole, each within ``limit``."""
    fields = [
        f
        for f in request.DESCRIPTOR.fields
        if f.is_repeated and f.type == FieldDescriptor.TYPE_MESSAGE
    ]
    if len(fields) != 1:
        raise ValueError(f"{request.DESCRIPTOR.name} has no single repeated field to slice")
    field = fields[0]
    tag = _varint_size(field.number << 3 | 2)
    current = type(request)()
    current.CopyFrom(request)
    current.ClearField(field.name)
    size, count = current.ByteSize(), 0
    for item in getattr(request, field.name):
        item_size = item.ByteSize()
        cost = tag + _varint_size(item_size) + item_size
        if (size and size + cost > limit) or count == most:
            yield current
            current, size, count = type(request)(), 0, 0
        getattr(current, field.name).append(item)
        size += cost
        count += 1
    yield current
