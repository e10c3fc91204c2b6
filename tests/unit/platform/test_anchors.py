"""Audit anchors read back from a file, and logged whole (README, "Audit trail")."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

from services.platform import logs
from services.platform.anchors import read, sign

KEY = b"k" * 32
AT = dt.datetime(2027, 1, 4, 9, tzinfo=dt.UTC)
# A hash holding a run of digits that reads like a mobile number: masking would change it.
HASH = "ab13812345678" + "c" * 51


def _line(service: str = "bank", key: bytes = KEY) -> str:
    return json.dumps(sign(key, service, AT, [(0, 3, HASH)]))


def test_an_anchor_reads_back_and_a_changed_one_does_not() -> None:
    good = _line()
    moved = good.replace('3, "ab', '2, "ab')
    reading = read([good, moved, _line(key=b"x" * 32), _line("card"), "[1, 2]"], KEY, "bank")
    assert [(a.line, a.heads) for a in reading.anchors] == [(1, ((0, 3, HASH),))]
    assert reading.bad == (
        "anchor line 2 does not match its signature (forged or edited)",
        "anchor line 3 does not match its signature (forged or edited)",
        "anchor line 4 anchors card, not bank",
        "anchor line 5 is not an anchor (altered)",
    )
    assert reading.torn == ()


def test_lines_a_crash_cut_short_are_torn_wherever_they_are() -> None:
    good = _line()
    reading = read([good[:30], good, "", good[:-1]], KEY, "bank")
    assert reading.torn == (1, 4)
    assert [a.line for a in reading.anchors] == [2] and reading.bad == ()


def test_the_log_keeps_an_anchor_unmasked_and_still_masks_the_message() -> None:
    anchor = sign(KEY, "bank", AT, [(0, 3, HASH)])
    for fmt in ("json", "text"):
        out = io.StringIO()
        handler = logs.handler("bank", fmt, out)
        record = logging.LogRecord("sscard.audit", logging.INFO, "", 0, "for 13812345678", (), None)
        record.anchor = anchor
        handler.handle(record)
        text = out.getvalue()
        assert "for 138****5678" in text, fmt
        if fmt == "json":
            logged = json.loads(text)["anchor"]
        else:
            logged = json.loads(text.split("anchor=")[1])
        assert logged == anchor, fmt
        assert read([json.dumps(logged)], KEY, "bank").anchors
