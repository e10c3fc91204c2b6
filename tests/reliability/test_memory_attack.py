"""Hostile input cannot exhaust a service's memory (issue 15, item 3): the "48 x 31 MiB" attack
replayed against each service as its own process, unauthenticated, authenticated but
unentitled, and entitled (its request 31 times the limit), and an entitled bulk client's one
31 MiB message, while the service's resident memory (``VmRSS``) is sampled. No admitted call
holds more than a single-card request's memory: every service's receive limit is the request
limit (``inbound``)."""

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
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.platform import migrations
from services.platform.auth import Channel, Role
from services.platform.config import REPO_ROOT
from services.platform.db import make_engine
from tests.cardsuite import EMPLOYER_ID
from tests.support import wait_serving
from tests.trust import TestTrust

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
CALLS = 48
# A string field of 31 MiB: never decoded, the transport refuses it by its size.
BODY = b"\x0a" + bytes([0x80, 0x80, 0xC0, 0x0F]) + b"9" * (31 * MIB)
# What the attack may add to the service's memory while it runs (the bound).
PEAK_GROWTH = 100 * MIB
# What may stay afterwards: the allocator keeps some freed memory for reuse (glibc keeps freed
# blocks of each thread's arena and the top of the heap), and the service's threads have
# touched their stacks; a few MiB, not a share of the attack's 1.5 GiB.
RETAINED = 24 * MIB
SETTLE_SECONDS = 30


@dataclass(frozen=True)
class Target:
    """What the attack calls on one service: a unary method with a credential entitled to it
    and one that is not, and its bulk (client-streaming) method with its entitled client."""

    method: str
    entitled: dict[str, Any]
    unentitled: dict[str, Any]
    bulk: str = ""
    bulk_client: dict[str, Any] | None = None


OPS = {"roles": (Role.OPS,), "caller": "ops"}
FACTORY = {"roles": (Role.FACTORY,), "caller": "card-factory"}
TARGETS = {
    "identity": Target(
        "/sscard.identity.v1.IdentityService/GetPerson",
        OPS,
        FACTORY,
        "/sscard.identity.v1.IdentityService/ImportPersons",
        {"roles": (Role.REGISTRY,), "caller": "hr-feed"},
    ),
    "card": Target(
        "/sscard.card.v1.CardService/GetCard",
        {"channel": Channel.ONLINE, "roles": (Role.EMPLOYER,), "caller": EMPLOYER_ID},
        FACTORY,
        "/sscard.card.v1.CardService/ApplyBatch",
        {"channel": Channel.ONLINE, "roles": (Role.EMPLOYER,), "caller": EMPLOYER_ID},
    ),
    "bank": Target(
        "/sscard.bank.v1.BankService/GetAccount",
        OPS,
        {"roles": (Role.REGISTRY,), "caller": "hr-feed"},
    ),
    "transit": Target("/sscard.transit.v1.TransitService/GetBalance", OPS, FACTORY),
}


def rss(pid: int) -> int:
    """The process's resident memory in bytes, as /proc/<pid>/status reports it."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for {pid}")


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    address: str
    channel: grpc.Channel


@pytest.fixture(params=sorted(TARGETS))
def service(
    request: pytest.FixtureRequest, service_env: dict[str, str], trust: TestTrust
) -> Iterator[Service]:
    """The service under attack as its own process, as production runs it."""
    name: str = request.param
    env = {**os.environ, **service_env, "SSCARD_LOG_LEVEL": "WARNING"}
    engine = make_engine(env[f"SSCARD_{name.upper()}_DB_URL"], pool_size=1)
    migrations.upgrade(name, engine)
    engine.dispose()
    proc = subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=REPO_ROOT, env=env)
    address = f"127.0.0.1:{env[f'SSCARD_{name.upper()}_PORT']}"
    channel = trust.channel(address)
    try:
        wait_serving(channel, timeout=30)
        yield Service(name, proc, address, channel)
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


def attack(channel: grpc.Channel, method: str, metadata: Any) -> list[grpc.StatusCode]:
    """48 concurrent 31 MiB calls of ``method``; the status each one ends with."""
    call = channel.unary_unary(method, _raw, _raw)  # the body need not even decode

    def one(_: int) -> grpc.StatusCode:
        try:
            call(BODY, metadata=metadata, timeout=120)
        except grpc.RpcError as refused:
            return refused.code()
        return grpc.StatusCode.OK

    with futures.ThreadPoolExecutor(CALLS) as pool:
        return list(pool.map(one, range(CALLS)))


def bulk(channel: grpc.Channel, method: str, metadata: Any) -> list[grpc.StatusCode]:
    """One message of 31 MiB on a bulk client stream, from a client entitled to it."""
    call = channel.stream_unary(method, _raw, _raw)
    try:
        call(iter([BODY]), metadata=metadata, timeout=120)
    except grpc.RpcError as refused:
        return [refused.code()]
    return [grpc.StatusCode.OK]


def settled(pid: int, bound: int, timeout: float) -> int:
    """The process's RSS once it is within ``bound``, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (now := rss(pid)) > bound and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


def serving(service: Service) -> bool:
    health = health_pb2_grpc.HealthStub(service.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def test_the_48_by_31_mib_attack_and_a_31_mib_bulk_message_grow_memory_under_100_mb(
    backend: str, service: Service, trust: TestTrust, token: Callable[..., Any]
) -> None:
    """(``backend`` first: the database is the first part of the test's id, as in every
    other test.)"""
    target = TARGETS[service.name]
    entitled = token(**target.entitled)
    # the entitled caller's first call, answered: what the service holds once it is in use
    call = service.channel.unary_unary(target.method, _raw, _raw)
    try:
        call(b"", metadata=entitled, timeout=10)
    except grpc.RpcError as refused:
        assert refused.code() != grpc.StatusCode.INTERNAL
    baseline = rss(service.proc.pid)

    exhausted = {grpc.StatusCode.RESOURCE_EXHAUSTED}
    waves: list[tuple[str, grpc.Channel, Callable[..., list[grpc.StatusCode]], str, Any, set]] = [
        # (a) unauthenticated: no credential (over the tests' client certificate with TLS on)
        (
            "no credential",
            service.channel,
            attack,
            target.method,
            (),
            {grpc.StatusCode.UNAUTHENTICATED},
        ),
        # (b) a valid credential of a client that may not call the method
        (
            "unentitled client",
            service.channel,
            attack,
            target.method,
            token(**target.unentitled),
            {grpc.StatusCode.PERMISSION_DENIED},
        ),
        # (c) a client allowed the method, its request 31 times the request limit: refused by
        # gRPC itself, or over the client's admission limit for the calls beyond it
        ("entitled, oversized", service.channel, attack, target.method, entitled, exhausted),
    ]
    if target.bulk and target.bulk_client is not None:
        # (d) the bulk client, one 31 MiB message on its stream
        waves.append(
            (
                "bulk, one 31 MiB message",
                service.channel,
                bulk,
                target.bulk,
                token(**target.bulk_client),
                exhausted,
            )
        )
    bare: grpc.Channel | None = None
    if trust.client_tls is not None:
        # (a) without a client certificate at all: the TLS handshake refuses the connection
        bare = grpc.secure_channel(
            service.address, grpc.ssl_channel_credentials(trust.ca_file.read_bytes())
        )
        waves.insert(
            0, ("no certificate", bare, attack, target.method, (), {grpc.StatusCode.UNAVAILABLE})
        )
    try:
        with Sampler(service.proc.pid) as sampler:
            outcomes = {
                name: send(channel, method, metadata)
                for name, channel, send, method, metadata, _ in waves
            }
    finally:
        if bare is not None:
            bare.close()

    for name, *_, expected in waves:
        assert set(outcomes[name]) <= expected, (name, outcomes[name])
    assert sampler.peak - baseline < PEAK_GROWTH, (baseline // MIB, sampler.peak // MIB)
    after = settled(service.proc.pid, baseline + RETAINED, SETTLE_SECONDS)
    assert after - baseline <= RETAINED, (baseline // MIB, after // MIB)
    assert service.proc.poll() is None
    assert serving(service)
