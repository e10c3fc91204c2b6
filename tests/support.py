"""Helpers for tests: valid documents and person records, health waits, reading rich errors."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.type.date_pb2 import Date
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.platform.clock import BEIJING
from services.platform.config import REPO_ROOT
from services.platform.documents import gb11643_check_char
from services.platform.errors import DomainError
from services.platform.grpc_errors import from_rpc_error
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2 as ipb

_serial = itertools.count(1)

# Where the shared test clock stands when a test starts: Monday 23 November 2026, 10:00 in
# Beijing, whatever day the tests run. Every deadline the tests count from here falls on a
# confirmed 2026 working day (ten working days on is Monday 7 December) unless a test moves the
# clock to the dates it means; it lies after the dates of death (20 November) and of settled
# business (1 November) the scenarios record.
SUITE_START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=BEIJING)


def resident_id(birth: dt.date = dt.date(1990, 3, 7), region: str = "110105", seq: int = 0) -> str:
    """A valid 18-character resident ID number (GB 11643 check character)."""
    seq = seq or next(_serial) % 1000
    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    return first17 + gb11643_check_char(first17)


def date_pb(value: dt.date) -> Date:
    return Date(year=value.year, month=value.month, day=value.day)


@dataclass
class PersonSpec:
    """A person as the HR feed would send it; defaults give an eligible, living person."""

    number: str = field(default_factory=resident_id)
    name: str = "张三"
    insured: bool = True
    entitled: bool = False
    valid_until: dt.date | None = dt.date(2036, 1, 1)
    died: dt.date | None = None
    preferential: tuple[int, ...] = ()
    legacy_generation: int = 0
    settled: dt.date | None = None  # HR / medical business settled (A19.1)
    person_id: str = ""  # the registry's opaque id, once imported: a person credential's subject

    def document(self) -> common_pb2.IdentityDocument:
        return common_pb2.IdentityDocument(
            type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=self.number
        )

    def document_valid_until(self) -> Date | None:
        """The validity printed on the document the person presents (None: long-term)."""
        return date_pb(self.valid_until) if self.valid_until else None

    def record(self) -> ipb.PersonRecord:
        record = ipb.PersonRecord(
            document=self.document(),
            name=self.name,
            insured_in_beijing=self.insured,
            public_service_entitled=self.entitled,
            preferential=list(self.preferential),
            legacy_card_generation=self.legacy_generation,
            source=ipb.RECORD_SOURCE_HR,
        )
        if self.valid_until:
            record.document_valid_until.CopyFrom(date_pb(self.valid_until))
        if self.died:
            record.date_of_death.CopyFrom(date_pb(self.died))
        if self.settled:
            record.business_settled_on.CopyFrom(date_pb(self.settled))
        return record


def wait_serving(channel: grpc.Channel, service: str = "", timeout: float = 15.0) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service or 'server'} not SERVING after {timeout}s")
        time.sleep(0.05)


def refusal(excinfo: object) -> tuple[grpc.StatusCode, DomainError]:
    """The status code and the decoded rich error of a failed call."""
    error = excinfo.value  # type: ignore[attr-defined]
    return error.code(), from_rpc_error(error)


def bound_port(port_file: Path, process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """The port a service process reports in its ``SSCARD_<SERVICE>_PORT_FILE`` once it listens
    (started with port 0, it binds whatever port is free: no race for a port chosen before)."""
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no port reported in {port_file} within {timeout}s")
        time.sleep(0.05)
    return int(port_file.read_text())


def sscard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The ``sscard`` command as operations run it, against the services' configured databases."""
    path = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "gen")])
    return subprocess.run(
        [sys.executable, "-m", "services.platform.cli", *args],
        env={**os.environ, **env, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
