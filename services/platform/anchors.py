"""Anchors of the audit trail, kept outside the database.

The hash chain (``audit``) shows a row changed by someone who did not also recompute every
later hash of its lane; someone who can write the database can. An anchor is what the chain is
checked against: the head (number and hash) of every lane at one moment, with the time and the
service, signed with the service's audit key (HMAC-SHA256, ``SSCARD_<SERVICE>_AUDIT_KEY``), a key
kept apart from the database and from any key that can sign credentials. A service writes one
when it starts, every ``SSCARD_AUDIT_ANCHOR_SECONDS`` while its trail grows, and once more when
it stops, after the calls in flight have finished; each goes to an append-only JSON-lines file
(``SSCARD_<SERVICE>_AUDIT_ANCHOR_FILE``) and, the same object, to the log as the field
``anchor``, so a log pipeline keeps a copy off the host.

``verify`` then finds what a rewrite of the database cannot hide: an anchored row whose hash
changed (its lane was rewritten and rehashed), an anchored row that is gone (the lane's tail was
deleted), and an anchor whose signature does not match (forged or edited). A line that is not
JSON at all is a write cut off (a crash, a full disk) and is reported as torn, not as tampering;
deleting whole lines is not detected here, which is why the copies must leave the host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from services.platform import logs
from services.platform.audit import AuditTrail, Break
from services.platform.clock import Clock
from services.platform.db import Database, as_utc

log = logging.getLogger("sscard.audit")

Head = tuple[int, int, str]  # lane, number of its last row, that row's hash


def _signed_part(service: str, at: str, heads: Sequence[Head]) -> bytes:
    body = {"service": service, "at": at, "heads": [list(h) for h in heads]}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(key: bytes, service: str, at: dt.datetime, heads: Sequence[Head]) -> dict[str, Any]:
    """The anchor of ``heads`` as a JSON object: service, time (UTC, microseconds), heads and
    ``mac``, the HMAC-SHA256 under ``key`` of the canonical encoding of the other three."""
    when = as_utc(at).isoformat(timespec="microseconds")
    mac = hmac.new(key, _signed_part(service, when, heads), hashlib.sha256).hexdigest()
    return {"service": service, "at": when, "heads": [list(h) for h in heads], "mac": mac}


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and its newline with one write, then fsync: a crash leaves the line whole
    or cut short, never interleaved with another. A line cut short by an earlier crash is ended
    first, so the new one starts on a line of its own."""
    data = (line + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class Anchoring:
    """Writes a service's anchors: ``anchor()`` reads every lane's head and, when any moved since
    this process last anchored, appends a signed anchor to the file and logs it."""

    def __init__(
        self,
        service: str,
        trail: AuditTrail,
        db: Database,
        clock: Clock,
        key: bytes,
        path: Path,
        interval: float,
    ) -> None:
        self.service, self.interval, self.path = service, interval, path
        self._trail, self._db, self._clock, self._key = trail, db, clock, key
        self._lock = threading.Lock()
        self._last: tuple[Head, ...] | None = None

    def anchor(self) -> bool:
        """Anchor the current heads; False when nothing moved since the last anchor."""
        with self._lock:
            with self._db.reader() as session, session.begin():
                heads = tuple(self._trail.heads(session))
            if heads == self._last:
                return False
            anchor = sign(self._key, self.service, self._clock.now(), heads)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_line(self.path, json.dumps(anchor, separators=(",", ":")))
            self._last = heads
            log.info(
                "audit trail anchored: %d rows in %d lanes",
                sum(seq for _, seq, _ in heads),
                len(heads),
                extra={logs.ANCHOR: anchor},
            )
            return True


@dataclass(frozen=True)
class Anchor:
    """One anchor read back, and the line it came from."""

    line: int
    at: str
    heads: tuple[Head, ...]


@dataclass(frozen=True)
class Reading:
    """An anchor file read back: the anchors whose signatures hold, the lines that are forged,
    altered or another service's (``bad``), and the lines a cut-off write left (``torn``)."""

    anchors: tuple[Anchor, ...]
    bad: tuple[str, ...]
    torn: tuple[int, ...]


def _heads(value: Any) -> tuple[Head, ...]:
    if not isinstance(value, list):
        raise ValueError("heads")
    heads: list[Head] = []
    for head in value:
        lane, seq, digest = head  # a head of another shape raises ValueError or TypeError
        if not (isinstance(lane, int) and isinstance(seq, int) and isinstance(digest, str)):
            raise ValueError("head")
        heads.append((lane, seq, digest))
    return tuple(heads)


def read(lines: Iterable[str], key: bytes, service: str) -> Reading:
    """Check every line of an anchor file (or of the ``anchor`` fields a log pipeline kept)."""
    anchors: list[Anchor] = []
    bad: list[str] = []
    torn: list[int] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            found = json.loads(text)
        except ValueError:
            torn.append(number)
            continue
        try:
            if not isinstance(found, Mapping):
                raise ValueError("not an object")
            at, heads, mac = str(found["at"]), _heads(found["heads"]), str(found["mac"])
            signed = _signed_part(str(found["service"]), at, heads)
        except (KeyError, TypeError, ValueError):
            bad.append(f"anchor line {number} is not an anchor (altered)")
            continue
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            bad.append(f"anchor line {number} does not match its signature (forged or edited)")
        elif found["service"] != service:
            bad.append(f"anchor line {number} anchors {found['service']}, not {service}")
        else:
            anchors.append(Anchor(number, at, heads))
    return Reading(tuple(anchors), tuple(bad), tuple(torn))


def check(trail: AuditTrail, session: Session, anchors: Sequence[Anchor]) -> tuple[Break, ...]:
    """Every anchored head must still be on its lane's chain with the hash it had. For each lane,
    the first anchored row that is not: changed (the lane was rewritten, somewhere after the last
    anchored row that still matches) or gone (the lane's tail was deleted)."""
    wanted: dict[tuple[int, int], list[tuple[str, Anchor]]] = {}
    for anchor in anchors:
        for lane, seq, digest in anchor.heads:
            if seq > 0:  # an empty lane anchors nothing
                wanted.setdefault((lane, seq), []).append((digest, anchor))
    last: dict[int, int] = {}
    found: dict[tuple[int, int], str] = {}
    for lane, seq, digest in trail.links(session):
        last[lane] = seq
        if (lane, seq) in wanted:
            found[(lane, seq)] = digest
    breaks: dict[int, Break] = {}
    matched: dict[int, int] = {}
    for (lane, seq), expected in sorted(wanted.items()):
        if lane in breaks:
            continue
        for digest, anchor in expected:
            when = f"the anchor of {anchor.at} (line {anchor.line})"
            if (lane, seq) not in found:
                end = last.get(lane, 0)
                breaks[lane] = Break(
                    lane, end + 1, f"rows {end + 1} to {seq} of {when} were deleted"
                )
                break
            if found[(lane, seq)] != digest:
                since = matched.get(lane, 0) + 1
                breaks[lane] = Break(
                    lane,
                    since,
                    f"row {seq} is not the one in {when}: rows {since} to {seq} were rewritten",
                )
                break
        else:
            matched[lane] = seq
    return tuple(breaks[lane] for lane in sorted(breaks))
