"""Benchmark: import 100,000 person records into a running identity service.

    python -m tests.bench.bench_import [--records N] [--pg URL]

Starts `python -m services.identity` as its own process (so the client does not share its
interpreter), on a fresh SQLite file and, with --pg, on a fresh PostgreSQL schema, streams the
records over real gRPC with a registry credential, and prints records/s for each. Not a test:
speed is measured here, never asserted in the test suite.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.platform.auth import Channel, Role
from services.platform.config import REPO_ROOT
from services.platform.slices import slices
from sscard.identity.v1 import identity_pb2 as pb
from sscard.identity.v1 import identity_pb2_grpc
from tests.bench import measure
from tests.support import PersonSpec, resident_id, wait_serving
from tests.trust import TestTrust

SLICE = 1000  # records per stream message, as the figures in BENCHMARKS.md were measured


def _records(n: int) -> list[pb.ImportPersonsRequest]:
    records = []
    for i in range(n):
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=i // 900)
        person = PersonSpec(number=resident_id(birth, seq=(i % 900) + 1), name=f"测试{i}")
        records.append(person.record())
    return list(slices(pb.ImportPersonsRequest(batch_id="bench", records=records), most=SLICE))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(db_url: str, records: list[pb.ImportPersonsRequest], label: str) -> None:
    with tempfile.TemporaryDirectory(prefix="sscard-bench-trust-") as keys:
        _run(TestTrust(Path(keys)), db_url, records, label)


def _run(trust: TestTrust, db_url: str, records: list[pb.ImportPersonsRequest], label: str) -> None:
    port = _free_port()
    env = {
        **os.environ,
        **trust.env(),
        "SSCARD_IDENTITY_PII_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "SSCARD_IDENTITY_PORT": str(port),
        "SSCARD_IDENTITY_METRICS_PORT": str(_free_port()),
        "SSCARD_IDENTITY_DB_URL": db_url,
        "SSCARD_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "deploy/migrate.py", "identity"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen([sys.executable, "-m", "services.identity"], cwd=REPO_ROOT, env=env)
    try:
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        wait_serving(channel, timeout=measure.STARTUP_SECONDS)
        token = trust.token(Channel.INTERNAL, (Role.REGISTRY,), "bench-hr-feed")
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        started = time.perf_counter()
        answer = stub.ImportPersons(
            iter(records), metadata=[("authorization", f"Bearer {token}")], timeout=600
        )
        elapsed = time.perf_counter() - started
        count = sum(len(r.records) for r in records)
        assert answer.created == count, answer.rejected
        print(
            f"{label:<10} {count:>7} records in {elapsed:6.1f} s  {count / elapsed:8.0f} records/s",
            flush=True,
        )
        channel.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--pg", default=os.environ.get("SSCARD_TEST_PG_URL", ""))
    args = parser.parse_args()
    records = _records(args.records)
    print("ImportPersons, one client stream, server in its own process")
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/identity.db", records, "SQLite")
    if args.pg:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = make_url(args.pg).update_query_dict({"options": f"-csearch_path={schema}"})
            run(url.render_as_string(hide_password=False), records, "PostgreSQL")
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
