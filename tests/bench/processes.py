"""Start sscard services as real processes for a benchmark, on fresh databases."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from services.platform.auth import Channel, Role, mint_token
from services.platform.config import REPO_ROOT
from tests.conftest import free_port
from tests.support import wait_serving


class Launched:
    def __init__(self, env: dict[str, str], secret: bytes) -> None:
        self.env = env
        self._secret = secret

    def channel(self, service: str) -> grpc.Channel:
        port = self.env[f"SSCARD_{service.upper()}_PORT"]
        return grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        )

    def metadata(self, *roles: Role, channel: Channel = Channel.INTERNAL, **claims: str) -> Any:
        token = mint_token(self._secret, "bench", channel, roles=set(roles), **claims)
        return [("authorization", f"Bearer {token}")]


@contextlib.contextmanager
def launch(services: Sequence[str], db_urls: dict[str, str]) -> Iterator[Launched]:
    """Migrate each service's database, start the services, stop them all afterwards."""
    secret = secrets.token_bytes(32)
    env = {
        **os.environ,
        "SSCARD_AUTH_SECRET": base64.b64encode(secret).decode(),
        "SSCARD_LOG_LEVEL": "WARNING",
    }
    for name in services:
        upper = name.upper()
        env[f"SSCARD_{upper}_PII_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
        env[f"SSCARD_{upper}_PORT"] = str(free_port())
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
    launched = Launched(env, secret)
    try:
        for name in services:
            with launched.channel(name) as channel:
                wait_serving(channel, timeout=30)
        yield launched
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
