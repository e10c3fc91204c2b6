"""Masking of personal identifiers for messages and logs.

No message, log line or error detail may carry a full ID number or phone number:
``110105199001010020`` becomes ``110105********002X``-style and ``13812345678`` becomes
``138****5678``. ``redact`` is the safety net the log formatter runs over every line, the
exception text included.
"""

from __future__ import annotations

import logging
import re

_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<!\d)(1\d{2})\d{4}(\d{4})(?!\d)")


def mask_document_number(number: str) -> str:
    """Keep what a clerk needs to tell documents apart, hide the rest.

    18-character numbers keep their 6-digit region and last 4 characters; shorter documents
    keep their first 2 and last 2 characters, and very short ones show nothing.
    """
    n = len(number)
    if n >= 15:
        return number[:6] + "*" * (n - 10) + number[-4:]
    if n >= 7:
        return number[:2] + "*" * (n - 4) + number[-2:]
    return "*" * n


def mask_phone(number: str) -> str:
    """``13812345678`` -> ``138****5678``; anything not 11 characters long is fully hidden."""
    if len(number) == 11:
        return number[:3] + "****" + number[-4:]
    return "*" * len(number)


def mask_account(destination: str) -> str:
    """An account as a notice names it: the number's last 4 characters, the rest hidden, the
    bank kept (``6222020000001234@BOC`` -> ``************1234@BOC``); short ones show nothing."""
    number, at, bank = destination.partition("@")
    shown = "*" * (len(number) - 4) + number[-4:] if len(number) > 8 else "*" * len(number)
    return shown + at + bank


def redact(text: str) -> str:
    """Mask every 18-character ID-like and 11-digit mobile-like run in free text."""
    text = _ID_LIKE.sub(lambda m: m.group(1) + "********" + m.group(2), text)
    return _PHONE.sub(lambda m: m.group(1) + "****" + m.group(2), text)


class RedactingFormatter(logging.Formatter):
    """Formatter that masks identifiers in the whole rendered line, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
