"""The real processes: a service stops cleanly on SIGTERM, several workers share one port, and
the `make run` supervisor leaves nothing running after Ctrl-C or after being killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.platform.config import REPO_ROOT, SERVICES
from tests.support import wait_serving

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


@pytest.fixture
def suite_env(service_env: dict[str, str]) -> dict[str, str]:
    """The suite's environment for real processes: fresh databases, free ports, secrets."""
    return {**os.environ, **service_env, "SSCARD_SHUTDOWN_GRACE_SECONDS": "2"}


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
        wait_serving(channel)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_several_workers_share_one_port_and_all_stop(
    suite_env: dict[str, str], spawn: list[subprocess.Popen[bytes]]
) -> None:
    _migrate(suite_env)
    env = {**suite_env, "SSCARD_IDENTITY_WORKERS": "2"}
    proc = _start([sys.executable, "-m", "services.identity"], env, spawn)
    with grpc.insecure_channel(f"127.0.0.1:{env['SSCARD_IDENTITY_PORT']}") as channel:
        wait_serving(channel)
    deadline = time.monotonic() + 10
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert _all_gone(workers)


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
    assert len(services) == len(SERVICES)
    if how == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert proc.wait(30) == 0
    else:
        proc.kill()
        proc.wait(10)
    assert _all_gone(services)
