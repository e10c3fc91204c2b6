"""The real processes: a service drains and stops cleanly on SIGTERM, several workers share one
port, die with their parent and are replaced when one dies (a worker that cannot start as
configured stops the service instead), and the `make run` supervisor restarts a service that
died and leaves nothing running after Ctrl-C or after being killed."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from services.platform.auth import Role
from services.platform.config import REPO_ROOT, SERVICES
from services.platform.db import make_engine
from services.transit.store import refunds
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc
from tests.support import wait_serving

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


@pytest.fixture
def suite_env(service_env: dict[str, str]) -> dict[str, str]:
    """The suite's environment for real processes: fresh databases, free ports, secrets."""
    return {
        **os.environ,
        **service_env,
        "SSCARD_SHUTDOWN_GRACE_SECONDS": "2",
        "SSCARD_DRAIN_SECONDS": "0.2",
        # process supervision, not transport (tests/scenarios/test_transport.py): plaintext
        "SSCARD_TLS": "off",
    }


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent that no longer exists to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _all_gone(pids: list[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "deploy/migrate.py"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _start(
    cmd: list[str], env: dict[str, str], spawned: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    spawned.append(proc)
    return proc


def test_a_service_stops_gracefully_on_sigterm(
    suite_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    _migrate(suite_env)
    proc = _start([sys.executable, "-m", "services.identity"], suite_env, spawn)
    with grpc.insecure_channel(f"127.0.0.1:{suite_env['SSCARD_IDENTITY_PORT']}") as channel:
        wait_serving(channel, timeout=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_several_workers_share_one_port_and_all_stop(
    suite_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    _migrate(suite_env)
    env = {**suite_env, "SSCARD_IDENTITY_WORKERS": "2"}
    proc = _start([sys.executable, "-m", "services.identity"], env, spawn)
    with grpc.insecure_channel(f"127.0.0.1:{env['SSCARD_IDENTITY_PORT']}") as channel:
        wait_serving(channel, timeout=60)
    deadline = time.monotonic() + 10
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert _all_gone(workers)


def _workers(proc: subprocess.Popen[bytes], count: int = 2) -> list[int]:
    """The worker processes of a supervising service (multiprocessing's own helper aside)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = [pid for pid in _children(proc.pid) if _runs(pid, "multiprocessing.spawn")]
        if len(workers) >= count:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} workers")


def _runs(pid: int, fragment: str) -> bool:
    try:
        return fragment.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_killing_the_parent_leaves_no_worker_serving(
    suite_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    """kill -9 of a supervising service: its workers go with it and the port is free again
    for the restarted service."""
    _migrate(suite_env)
    env = {**suite_env, "SSCARD_IDENTITY_WORKERS": "2"}
    proc = _start([sys.executable, "-m", "services.identity"], env, spawn)
    port = int(env["SSCARD_IDENTITY_PORT"])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        wait_serving(channel, timeout=60)
    workers = _workers(proc)
    proc.kill()
    proc.wait(10)
    assert _all_gone(workers)
    assert _port_free(port)


def test_a_killed_worker_is_replaced_and_the_restart_logged(
    suite_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    _migrate(suite_env)
    env = {**suite_env, "SSCARD_IDENTITY_WORKERS": "2"}
    proc = _start([sys.executable, "-m", "services.identity"], env, spawn)
    target = f"127.0.0.1:{env['SSCARD_IDENTITY_PORT']}"
    with grpc.insecure_channel(target) as channel:
        wait_serving(channel, timeout=60)
    first, second = _workers(proc)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while first in (workers := _workers(proc)) or len(workers) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)
    assert second in workers
    os.kill(second, signal.SIGKILL)  # the replacement alone must serve
    with grpc.insecure_channel(target) as channel:
        wait_serving(channel, timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert proc.stdout is not None
    log = proc.stdout.read().decode(errors="replace")
    assert "worker 0" in log or "worker 1" in log
    assert "restart 1 " in log and "restart 2 " in log, log


def test_a_configuration_error_in_a_worker_stops_the_service_with_one_line(
    suite_env: dict[str, str],
) -> None:
    """A setting only a worker reads while it builds the service (the card's PII key) stops the
    whole service as a single process would: one line, exit code 2, no worker restarted."""
    env = {**suite_env, "SSCARD_CARD_WORKERS": "2", "SSCARD_CARD_PII_KEY": "%%%"}
    done = subprocess.run(
        [sys.executable, "-m", "services.card"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "restart" not in done.stdout + done.stderr
    plain = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert plain == ["card: configuration error: SSCARD_CARD_PII_KEY is not valid base64"]
    assert "%%%" not in done.stdout + done.stderr


def test_sigterm_reports_not_serving_while_calls_are_still_served(
    suite_env: dict[str, str],
    spawn: list[subprocess.Popen[bytes]],
    token: Callable[..., Any],
) -> None:
    """A load balancer sees NOT_SERVING first and moves traffic away; calls that still arrive
    during the drain are answered; then the process exits cleanly."""
    _migrate(suite_env)
    env = {**suite_env, "SSCARD_DRAIN_SECONDS": "4"}
    proc = _start([sys.executable, "-m", "services.identity"], env, spawn)
    ops = token(roles=(Role.OPS,), caller="ops")
    with grpc.insecure_channel(f"127.0.0.1:{env['SSCARD_IDENTITY_PORT']}") as channel:
        wait_serving(channel, timeout=60)
        health = health_pb2_grpc.HealthStub(channel)
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        proc.send_signal(signal.SIGTERM)
        status = health_pb2.HealthCheckResponse.SERVING
        while status == health_pb2.HealthCheckResponse.SERVING:
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        identity.ListPersonEvents(identity_pb2.ListPersonEventsRequest(), metadata=ops, timeout=5)
        assert proc.poll() is None  # still draining
    assert proc.wait(20) == 0


def _wait_up(proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if b"sscard is up" in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"the suite did not come up:\n{seen.decode(errors='replace')}")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_the_supervisor_leaves_no_process_behind(
    suite_env: dict[str, str], spawn: list[subprocess.Popen[bytes]], how: signal.Signals
) -> None:
    proc = _start([sys.executable, "deploy/run_local.py"], suite_env, spawn)
    _wait_up(proc)
    services = _children(proc.pid)
    assert len(services) == len(SERVICES) + 1  # and the operations console
    if how == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert proc.wait(30) == 0
    else:
        proc.kill()
        proc.wait(10)
    assert _all_gone(services)


def _service_named(pids: list[int], name: str) -> int:
    return next(pid for pid in pids if _runs(pid, f"services.{name}"))


def test_the_supervisor_restarts_a_service_that_died(
    suite_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    proc = _start([sys.executable, "deploy/run_local.py"], suite_env, spawn)
    _wait_up(proc)
    identity = _service_named(_children(proc.pid), "identity")
    os.kill(identity, signal.SIGKILL)
    assert proc.stdout is not None
    said = b""
    deadline = time.monotonic() + 30
    while b"identity restarted" not in said:
        assert time.monotonic() < deadline and proc.poll() is None, said
        said += proc.stdout.readline()
    assert b"identity exited with -9; restarting it" in said
    with grpc.insecure_channel(f"127.0.0.1:{suite_env['SSCARD_IDENTITY_PORT']}") as channel:
        wait_serving(channel, timeout=90)  # a bound for a loaded machine, not a speed
    assert _service_named(_children(proc.pid), "identity") != identity
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(30) == 0


def test_a_draining_relay_hands_back_the_leases_of_what_it_did_not_send(
    suite_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    """The drain: on SIGTERM the refund relay claims nothing more, settles the refund it is
    sending, and hands back the leases of the rest of its batch, so another replica sends them
    at once rather than when the leases (30 s) run out."""
    _migrate(suite_env)
    engine = make_engine(suite_env["SSCARD_TRANSIT_DB_URL"])
    long_ago = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as db:
        db.execute(
            refunds.insert(),
            [
                {
                    "refund_id": f"refund-{i}",
                    "card_id": f"card-{i}",
                    "to_card_id": f"card-{i}",
                    "amount_fen": 100,
                    "reason": "CANCELLATION",
                    "state": "SENDING",
                    "balance_after_fen": 0,
                    "created_at": long_ago,
                    "attempts": 0,
                    "next_attempt_at": long_ago,
                }
                for i in range(3)
            ],
        )

    def leases() -> list[tuple[dt.datetime | None, int]]:
        with engine.connect() as db:
            query = select(refunds.c.leased_until, refunds.c.attempts)
            return [(row.leased_until, row.attempts) for row in db.execute(query)]

    # A bank that takes connections and never answers: each credit runs into its deadline.
    with socket.socket() as bank:
        bank.bind(("127.0.0.1", 0))
        bank.listen(16)
        env = {**suite_env, "SSCARD_BANK_PORT": str(bank.getsockname()[1])}
        proc = _start([sys.executable, "-m", "services.transit"], env, spawn)
        deadline = time.monotonic() + 90
        while not any(until for until, _ in leases()):
            assert time.monotonic() < deadline, "the relay never claimed the refunds"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    after = leases()
    engine.dispose()
    assert [until for until, _ in after] == [None, None, None]
    assert any(attempts == 0 for _, attempts in after)  # handed back untried
