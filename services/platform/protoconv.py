"""Conversions between protobuf well-known types and Python values, one choice everywhere:
dates are ``google.type.Date`` (unset = all zero), times are ``google.protobuf.Timestamp``."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from google.type.date_pb2 import Date

from services.platform.errors import Violations


def to_date(value: dt.date | None) -> Date | None:
    if value is None:
        return None
    return Date(year=value.year, month=value.month, day=value.day)


def from_date(value: Date, field: str, violations: Violations) -> dt.date | None:
    """None for an unset date; a violation for a partial or impossible one."""
    if value.year == 0 and value.month == 0 and value.day == 0:
        return None
    try:
        return dt.date(value.year, value.month, value.day)
    except ValueError:
        violations.add(field, "not a real calendar date (year, month and day are required)")
        return None


def to_timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _prefix(enum_type: Any) -> str:
    """The prefix every non-zero value of a proto enum carries (buf ENUM_VALUE_PREFIX):
    CardStatus -> "CARD_STATUS_"."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", enum_type.DESCRIPTOR.name).upper() + "_"


def enum_name(enum_type: Any, value: int) -> str:
    """The domain's name of a proto enum value, the value's name without its type's prefix
    (CARD_STATUS_ACTIVE -> "ACTIVE"), as the domain and the databases spell it; "" for the
    unspecified (0) or an unknown value: a request may carry a number this build does not
    know, which is bad input, never a crash."""
    if not value or value not in enum_type.values():
        return ""
    return str(enum_type.Name(value)).removeprefix(_prefix(enum_type))


def enum_value(enum_type: Any, name: str) -> Any:
    """The proto enum value of a domain name ("ACTIVE" -> CARD_STATUS_ACTIVE); 0 (unspecified)
    for ""; the one way back from the domain's names to the contract's. Typed as the generated
    stubs' own value type of ``enum_type`` would be (an int)."""
    return enum_type.Value(_prefix(enum_type) + name) if name else 0
