"""Shared fixtures: a fresh database per test on SQLite and, when ``SSCARD_TEST_PG_URL`` is set,
on PostgreSQL too (a schema of its own per test); credentials; real in-process gRPC servers.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import logging
import os
import random
import secrets
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.platform import config as settings
from services.platform import migrations
from services.platform.auth import Channel, Role
from services.platform.clock import SharedTestClock
from services.platform.server import Server, ServiceDeps, create_server
from tests.support import SUITE_START
from tests.trust import TestTrust

PG_URL = os.environ.get("SSCARD_TEST_PG_URL", "").strip()
BACKENDS = ["sqlite", "postgresql"]


REQUIRE_PG = os.environ.get("SSCARD_REQUIRE_PG", "") == "1"
# The services under test speak mutual TLS, as in production, unless SSCARD_TEST_TLS=off;
# tests/scenarios/test_transport.py runs them over mutual TLS whatever this says.
TLS = os.environ.get("SSCARD_TEST_TLS", "").strip() != "off"
_pg_passed: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_PG and not PG_URL:
        pytest.exit("SSCARD_REQUIRE_PG=1 but SSCARD_TEST_PG_URL is not set", returncode=3)
    if PG_URL:
        try:
            engine = create_engine(PG_URL)
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as exc:
            pytest.exit(f"PostgreSQL at SSCARD_TEST_PG_URL does not answer: {exc}", returncode=3)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "[postgresql" in report.nodeid:
        _pg_passed.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_PG and exitstatus == 0 and not _pg_passed:
        print("\nno PostgreSQL test ran although SSCARD_REQUIRE_PG=1")
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PG_URL:
        terminalreporter.write_line(f"PostgreSQL tests passed: {len(_pg_passed)}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="PostgreSQL runs need SSCARD_TEST_PG_URL")
    for item in items:
        if "[postgresql" in item.nodeid:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """A test that runs a service's entry point in this process has it send the root logger to
    the stderr pytest captured for that test; put the handlers back, so later tests' servers do
    not log into a stream that test's end has closed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_db_url(backend: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Makes fresh, empty databases: SQLite files, or PostgreSQL schemas of their own."""
    schemas: list[str] = []
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT") if backend != "sqlite" else None

    def make(label: str) -> str:
        if admin is None:
            return f"sqlite:///{tmp_path / (label + '.db')}"
        schema = f"t_{label}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db_url(new_db_url: Callable[[str], str]) -> str:
    return new_db_url("test")


@pytest.fixture
def trust(tmp_path: Path) -> TestTrust:
    """Issuers' keys and the client registry of the services under test."""
    return TestTrust(tmp_path / "auth", mutual_tls=TLS)


@pytest.fixture
def clock_file(tmp_path: Path) -> Path:
    """The shared test clock's file, set to ``SUITE_START`` before any service reads it, so no
    result depends on the day the tests run."""
    path = tmp_path / "clock.json"
    SharedTestClock(path).set(SUITE_START)
    return path


@pytest.fixture
def test_clock(clock_file: Path) -> SharedTestClock:
    """The suite's shared test clock, as the servers under test read it."""
    return SharedTestClock(clock_file)


@pytest.fixture
def service_env(
    new_db_url: Callable[[str], str], trust: TestTrust, clock_file: Path
) -> dict[str, str]:
    """Environment for a service under test: port 0, the test database and clock."""
    env = {
        **trust.env(),
        "SSCARD_TEST_CLOCK_FILE": str(clock_file),
        "SSCARD_SHUTDOWN_GRACE_SECONDS": "1",
        "SSCARD_SAGA_LEASE_SECONDS": "3",
        "SSCARD_SCHEDULER_POLL_SECONDS": "0.2",
        # `make run`'s operations console, when a test starts the local supervisor
        "SSCARD_CONSOLE_PORT": str(free_port()),
        "SSCARD_CONSOLE_USERS_FILE": str(clock_file.parent / "console-users.json"),
    }
    for name in settings.SERVICES:
        upper = name.upper()
        env[f"SSCARD_{upper}_PII_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
        env[f"SSCARD_{upper}_PORT"] = str(free_port())
        env[f"SSCARD_{upper}_METRICS_PORT"] = "0"  # a test that scrapes sets a port
        env[f"SSCARD_{upper}_DB_URL"] = new_db_url(name)
    return env


_handed_out: set[int] = set()
# Ports this process has claimed, each by an exclusive lock on a file of PORT_LOCKS held until
# the process ends (the system drops the lock even after a SIGKILL): a test run beside this one
# (another `make test`, another pytest-xdist worker) skips them.
PORT_LOCKS = Path(tempfile.gettempdir()) / "sscard-test-ports"
_claims: list[IO[bytes]] = []


def _port_range() -> range:
    """This process's share of the ports below the kernel's ephemeral range: each pytest-xdist
    worker draws from its own slice, so two workers rarely try the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker) if worker.isdigit() else 0
    width = 12_000 // max(count, 1)
    return range(20_000 + index * width, 20_000 + (index + 1) * width)


def _claim(port: int) -> bool:
    """Whether this process now holds ``port``'s lock (no other test process does)."""
    PORT_LOCKS.mkdir(exist_ok=True)
    claim = (PORT_LOCKS / f"{port}.lock").open("ab")
    try:
        fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        claim.close()
        return False
    _claims.append(claim)
    return True


def free_port() -> int:
    """A free port for a server that other services must know before it starts (the suite's
    services reach each other at addresses fixed when they are built; a server nobody needs to
    know in advance binds port 0 instead). Below the kernel's ephemeral range, so no outgoing
    connection takes it; claimed for the whole run against every other test process; never
    one this process has handed out before."""
    ports = _port_range()
    for _ in range(200):
        port = random.randrange(ports.start, ports.stop)
        if port in _handed_out or not _claim(port):
            continue
        _handed_out.add(port)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken by a process outside the tests
                continue
        return port
    raise RuntimeError("no free port")


@dataclass
class Running:
    """A started in-process server and a channel to it."""

    server: Server
    channel: grpc.Channel
    deps: ServiceDeps


@pytest.fixture
def start_service(
    service_env: dict[str, str], trust: TestTrust
) -> Iterator[Callable[..., Running]]:
    """Start a real service in-process over real gRPC; migrated first unless told not to."""
    started: list[Running] = []

    def start(
        name: str, build: Callable[[settings.ServiceConfig], ServiceDeps], migrate: bool = True
    ) -> Running:
        config = settings.load(name, service_env)
        deps = build(config)
        if migrate:
            migrations.upgrade(name, deps.db.engine)
        server = create_server(config, deps)
        server.start()
        channel = trust.channel(f"127.0.0.1:{server.port}")
        running = Running(server, channel, deps)
        started.append(running)
        return running

    yield start
    for running in started:
        running.channel.close()
        running.server.stop(0)


@pytest.fixture
def token(trust: TestTrust) -> Callable[..., list[tuple[str, str]]]:
    """Call metadata carrying a fresh credential of a client registered for its claims."""

    def make(
        channel: Channel = Channel.INTERNAL,
        roles: tuple[Role, ...] = (Role.SERVICE,),
        caller: str = "test-client",
        **claims: Any,
    ) -> list[tuple[str, str]]:
        jwt = trust.token(channel, roles, caller, **claims)
        return [("authorization", f"Bearer {jwt}")]

    return make


def expired_token(trust: TestTrust) -> str:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    return trust.token(Channel.INTERNAL, (Role.OPS,), "late", now=past, ttl=dt.timedelta(minutes=5))
