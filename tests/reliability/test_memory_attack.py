"""Hostile input cannot exhaust a service's memory (issue 15, item 3): the "48 x 31 MiB" attack
replayed against a real transit service process, unauthenticated and authenticated but
unentitled, while its resident memory (``VmRSS``) is sampled."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from services.platform import migrations
from services.platform.auth import Role
from services.platform.config import REPO_ROOT
from services.platform.db import make_engine
from sscard.transit.v1 import transit_pb2, transit_pb2_grpc
from tests.support import wait_serving
from tests.trust import TestTrust

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
CALLS = 48
BODY = transit_pb2.GetBalanceRequest(card_id="9" * (31 * MIB)).SerializeToString()
GET_BALANCE = "/sscard.transit.v1.TransitService/GetBalance"
# What the attack may add to the service's memory while it runs (the bound).
PEAK_GROWTH = 100 * MIB
# What may stay afterwards: the allocator keeps some freed memory for reuse (glibc keeps freed
# blocks of each thread's arena and the top of the heap), and the service's threads have
# touched their stacks; a few MiB, not a share of the attack's 1.5 GiB.
RETAINED = 24 * MIB
SETTLE_SECONDS = 30


def rss(pid: int) -> int:
    """The process's resident memory in bytes, as /proc/<pid>/status reports it."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for {pid}")


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    address: str
    channel: grpc.Channel


@pytest.fixture
def transit(service_env: dict[str, str], trust: TestTrust) -> Iterator[Service]:
    """The transit service as its own process, as production runs it."""
    env = {**os.environ, **service_env, "SSCARD_LOG_LEVEL": "WARNING"}
    engine = make_engine(env["SSCARD_TRANSIT_DB_URL"], pool_size=1)
    migrations.upgrade("transit", engine)
    engine.dispose()
    proc = subprocess.Popen([sys.executable, "-m", "services.transit"], cwd=REPO_ROOT, env=env)
    address = f"127.0.0.1:{env['SSCARD_TRANSIT_PORT']}"
    channel = trust.channel(address)
    try:
        wait_serving(channel, timeout=30)
        yield Service(proc, address, channel)
    finally:
        channel.close()
        proc.kill()
        proc.wait(10)


class Sampler:
    """The highest RSS of a process, sampled every few milliseconds while it runs."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss(self._pid))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _raw(data: bytes) -> bytes:
    return data


def attack(channel: grpc.Channel, metadata: Any) -> list[grpc.StatusCode]:
    """48 concurrent 31 MiB GetBalance calls; the status each one ends with."""
    call = channel.unary_unary(GET_BALANCE, _raw, _raw)  # the body need not even decode

    def one(_: int) -> grpc.StatusCode:
        try:
            call(BODY, metadata=metadata, timeout=120)
        except grpc.RpcError as refused:
            return refused.code()
        return grpc.StatusCode.OK

    with futures.ThreadPoolExecutor(CALLS) as pool:
        return list(pool.map(one, range(CALLS)))


def settled(pid: int, bound: int, timeout: float) -> int:
    """The process's RSS once it is within ``bound``, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (now := rss(pid)) > bound and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


def test_the_48_by_31_mib_attack_unauthenticated_or_unentitled_grows_memory_under_100_mb(
    transit: Service, trust: TestTrust, token: Callable[..., Any]
) -> None:
    stub = transit_pb2_grpc.TransitServiceStub(transit.channel)
    ops = token(roles=(Role.OPS,), caller="ops")
    stub.ListRefunds(transit_pb2.ListRefundsRequest(), metadata=ops, timeout=10)
    baseline = rss(transit.proc.pid)

    waves: list[tuple[str, grpc.Channel, Any, set[grpc.StatusCode]]] = [
        # (a) unauthenticated: no credential (over the tests' client certificate with TLS on)
        ("no credential", transit.channel, (), {grpc.StatusCode.UNAUTHENTICATED}),
        # (b) a valid credential of a client that may not call GetBalance
        (
            "unentitled client",
            transit.channel,
            token(roles=(Role.FACTORY,), caller="card-factory"),
            {grpc.StatusCode.PERMISSION_DENIED},
        ),
        # (b) a client allowed GetBalance, its request 31 times what the method accepts: too
        # large, or over the client's admission limit for the calls beyond it
        ("entitled, oversized", transit.channel, ops, {grpc.StatusCode.RESOURCE_EXHAUSTED}),
    ]
    bare: grpc.Channel | None = None
    if trust.client_tls is not None:
        # (a) without a client certificate at all: the TLS handshake refuses the connection
        bare = grpc.secure_channel(
            transit.address, grpc.ssl_channel_credentials(trust.ca_file.read_bytes())
        )
        waves.insert(0, ("no certificate", bare, (), {grpc.StatusCode.UNAVAILABLE}))
    try:
        with Sampler(transit.proc.pid) as sampler:
            outcomes = {name: attack(channel, metadata) for name, channel, metadata, _ in waves}
    finally:
        if bare is not None:
            bare.close()

    for name, _, _, expected in waves:
        assert set(outcomes[name]) <= expected, (name, outcomes[name])
    assert sampler.peak - baseline < PEAK_GROWTH, (baseline // MIB, sampler.peak // MIB)
    after = settled(transit.proc.pid, baseline + RETAINED, SETTLE_SECONDS)
    assert after - baseline <= RETAINED, (baseline // MIB, after // MIB)
    assert transit.proc.poll() is None
    answer = stub.ListRefunds(transit_pb2.ListRefundsRequest(), metadata=ops, timeout=10)
    assert list(answer.refunds) == []
