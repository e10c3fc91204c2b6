"""Start sscard services as real processes for a benchmark, on fresh databases."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from services.platform.auth import Channel, Role
from services.platform.config import REPO_ROOT
from tests.bench import measure
from tests.conftest import free_port
from tests.support import wait_serving
from tests.trust import TestTrust


class Launched:
    def __init__(self, env: dict[str, str], trust: TestTrust) -> None:
        self.env = env
        self._trust = trust

    def channel(self, service: str) -> grpc.Channel:
        port = self.env[f"SSCARD_{service.upper()}_PORT"]
        return grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        )

    def metadata(
        self, *roles: Role, channel: Channel = Channel.INTERNAL, caller: str = "", **claims: str
    ) -> Any:
        """A credential of a client registered for exactly these claims (``caller``: the
        person or employer for a person's or employer's credential, else the client)."""
        caller = caller or "bench-" + "-".join(sorted(r.value for r in roles))
        token = self._trust.token(channel, roles, caller, **claims)  # type: ignore[arg-type]
        return [("authorization", f"Bearer {token}")]


@contextlib.contextmanager
def launch(services: Sequence[str], db_urls: dict[str, str]) -> Iterator[Launched]:
    """Migrate each service's database, start the services, stop them all afterwards."""
    with tempfile.TemporaryDirectory(prefix="sscard-bench-trust-") as keys:
        trust = TestTrust(Path(keys))
        with _launch(services, db_urls, trust) as launched:
            yield launched


@contextlib.contextmanager
def _launch(
    services: Sequence[str], db_urls: dict[str, str], trust: TestTrust
) -> Iterator[Launched]:
    env = {**os.environ, **trust.env(), "SSCARD_LOG_LEVEL": "WARNING"}
    for name in services:
        upper = name.upper()
        env[f"SSCARD_{upper}_PII_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
        env[f"SSCARD_{upper}_PORT"] = str(free_port())
        env[f"SSCARD_{upper}_METRICS_PORT"] = str(free_port())  # never a running suite's
        env[f"SSCARD_{upper}_DB_URL"] = db_urls[name]
    subprocess.run(
        [sys.executable, "deploy/migrate.py", *services],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    procs = [
        subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=REPO_ROOT, env=env)
        for name in services
    ]
    launched = Launched(env, trust)
    try:
        for name in services:
            with launched.channel(name) as channel:
                wait_serving(channel, timeout=measure.STARTUP_SECONDS)
        yield launched
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
