"""Conversions between protobuf well-known types and Python values, one choice everywhere:
dates are ``google.type.Date`` (unset = all zero), times are ``google.protobuf.Timestamp``."""

from __future__ import annotations

import datetime as dt
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


def enum_name(enum_type: Any, value: int) -> str:
    """The proto enum's value name, or "" for the unspecified (0) or an unknown value: a request
    may carry a number this build does not know, which is bad input, never a crash."""
    return str(enum_type.Name(value)) if value and value in enum_type.values() else ""
