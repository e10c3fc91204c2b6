"""The suite under fault: the four services as real processes (two card replicas on
PostgreSQL), every service reached through a small TCP proxy the fault injector controls, each
process's stdout and stderr in a file of its own, and the shared test clock."""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.platform import migrations
from services.platform.clock import SharedTestClock
from services.platform.config import REPO_ROOT, SERVICES
from services.platform.db import make_engine
from tests.conftest import free_port
from tests.support import SUITE_START, wait_serving
from tests.trust import TestTrust

_CHUNK = 65536


class Proxy:
    """A TCP proxy in front of one service (round-robin over its replicas) that can refuse
    connections (``down``) or hold the callee's answers back (``slow``): the caller then sees
    UNAVAILABLE or DEADLINE_EXCEEDED, the second after the callee committed."""

    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self._next = itertools.count()
        self.mode = "ok"
        self.delay = 0.0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = free_port()
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, mode: str, delay: float = 0.0) -> None:
        """``ok``, ``down`` or ``slow`` (answers held back ``delay`` seconds); a change cuts
        every open connection, so no caller keeps a connection across it."""
        with self._lock:
            self.mode, self.delay = mode, delay
        self.cut()

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.1)  # an aborted connection, or out of descriptors for a moment
                continue
            if self.mode == "down":
                client.close()
                continue
            upstream = self._connect()
            if upstream is None:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        for _ in range(len(self.upstreams)):
            port = self.upstreams[next(self._next) % len(self.upstreams)]
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
        return None

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            source.settimeout(None)
            while data := source.recv(_CHUNK):
                if answers and self.mode == "slow":
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Cluster:
    """Fresh databases (SQLite files, or PostgreSQL databases of their own), migrated; the
    services started as processes; a proxy per service that every caller goes through."""

    def __init__(self, root: Path, pg_url: str = "", card_replicas: int = 1) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.trust = TestTrust(root / "auth")
        self.clock = SharedTestClock(root / "clock.json")
        self.clock.set(SUITE_START)
        self.pg_url = pg_url
        self._databases: list[str] = []
        self.db_urls = {name: self._new_database(name) for name in SERVICES}
        for name, url in self.db_urls.items():
            engine = make_engine(url, pool_size=1)
            migrations.upgrade(name, engine)
            engine.dispose()
        replicas = card_replicas if pg_url else 1
        self.ports = {
            name: [free_port() for _ in range(replicas if name == "card" else 1)]
            for name in SERVICES
        }
        self.proxies = {name: Proxy(ports) for name, ports in self.ports.items()}
        self.env = {
            **os.environ,
            **self.trust.env(),
            "SSCARD_TEST_CLOCK_FILE": str(root / "clock.json"),
            "SSCARD_SHUTDOWN_GRACE_SECONDS": "1",
            "SSCARD_SAGA_LEASE_SECONDS": "3",
            "SSCARD_SCHEDULER_POLL_SECONDS": "0.2",
            "SSCARD_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        for name in SERVICES:
            upper = name.upper()
            self.env[f"SSCARD_{upper}_PII_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
            self.env[f"SSCARD_{upper}_DB_URL"] = self.db_urls[name]
            self.env[f"SSCARD_{upper}_TARGET"] = self.proxies[name].address
            self.env[f"SSCARD_{upper}_METRICS_PORT"] = "0"  # replicas would share the default
        self.processes: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        self._starts = itertools.count()
        try:
            for name in SERVICES:
                for replica in range(len(self.ports[name])):
                    self.start(name, replica)
            for name in SERVICES:
                for replica in range(len(self.ports[name])):
                    self.wait_up(name, replica)
        except TimeoutError:  # e.g. a port taken between the check and the bind
            self.stop()
            raise

    def _new_database(self, name: str) -> str:
        if not self.pg_url:
            return f"sqlite:///{self.root / (name + '.db')}"
        database = f"chaos_{name}_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        self._databases.append(database)
        return make_url(self.pg_url).set(database=database).render_as_string(hide_password=False)

    def channel(self, name: str, replica: int | None = None) -> grpc.Channel:
        """A channel through the service's proxy, or straight to one replica."""
        if replica is None:
            return grpc.insecure_channel(self.proxies[name].address)
        return grpc.insecure_channel(f"127.0.0.1:{self.ports[name][replica]}")

    def logs(self) -> list[Path]:
        return sorted(self.root.glob("*.log"))

    def start(self, name: str, replica: int = 0) -> None:
        env = {**self.env, f"SSCARD_{name.upper()}_PORT": str(self.ports[name][replica])}
        log = open(self.root / f"{name}-{replica}-{next(self._starts)}.log", "wb")  # noqa: SIM115
        self.processes[(name, replica)] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def wait_up(self, name: str, replica: int = 0) -> None:
        with self.channel(name, replica) as channel:
            wait_serving(channel, timeout=120)

    def alive(self, name: str, replica: int = 0) -> bool:
        return self.processes[(name, replica)].poll() is None

    def kill(self, name: str, replica: int = 0) -> None:
        """SIGKILL: no drain, no goodbye."""
        proc = self.processes[(name, replica)]
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)

    def restart(self, name: str, replica: int = 0) -> None:
        if not self.alive(name, replica):
            self.start(name, replica)
            self.wait_up(name, replica)

    def cut_database(self, name: str) -> None:
        """PostgreSQL: end every server connection of the service's database
        (pg_terminate_backend); the service must reconnect."""
        if not self.pg_url:
            return
        database = make_url(self.db_urls[name]).database
        admin = create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            )
        admin.dispose()

    def heal(self) -> None:
        """Every proxy passes, every process runs."""
        for proxy in self.proxies.values():
            if proxy.mode != "ok":
                proxy.set("ok")
        for name, replica in list(self.processes):
            self.restart(name, replica)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        for proxy in self.proxies.values():
            proxy.close()
        if self._databases:
            admin = create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                for database in self._databases:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()
