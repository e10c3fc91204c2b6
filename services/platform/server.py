"""Server bootstrap shared by the four services.

``create_server(config, deps)`` builds a bound, not yet started server (tests use port 0);
``serve(config, build)`` runs a service until SIGTERM / SIGINT, in ``config.workers`` processes
sharing one port through SO_REUSEPORT, restarting a worker that dies. Health
(``grpc.health.v1``) has two meanings: readiness ("" and each service name) is SERVING only
while the database answers and is at its alembic head; liveness (``liveness``) is SERVING while
the process answers. Both are NOT_SERVING from the moment shutdown begins: on SIGTERM the service
keeps taking calls for ``SSCARD_DRAIN_SECONDS`` while reporting NOT_SERVING, then stops accepting
and lets calls in flight finish within ``SSCARD_SHUTDOWN_GRACE_SECONDS``. Reflection (v1 and
v1alpha) lists the service. The listener serves mutual TLS (``tls``) unless development turned it
off; an orchestrator's probe that cannot present a certificate asks the plaintext health-only
listener (``SSCARD_<SERVICE>_HEALTH_PORT``, off by default), which serves nothing but health.
The audit trail is anchored (``anchors``) when the server starts, periodically, and once more
when it stops, after the calls in flight have finished.
Sync gRPC with a thread pool and sync SQLAlchemy: measured fastest on this hardware (see
BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client.core import Metric
from sqlalchemy import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from services.platform import config as settings
from services.platform import logs, migrations, processes, reflection, tls, tracing
from services.platform.anchors import Anchoring
from services.platform.clock import Clock
from services.platform.config import ServiceConfig
from services.platform.db import Database, make_engine
from services.platform.errors import DomainError
from services.platform.faultlog import FailureLog
from services.platform.idempotency import IdempotencyStore
from services.platform.interceptors import CallGuard
from services.platform.metrics import Gauges, ServiceMetrics, labelled
from services.platform.observe import CallObserver
from services.platform.pii import PiiCipher
from services.platform.trust import TrustError, Verifier

log = logging.getLogger("sscard.server")

# The health entry for liveness probes: SERVING while the process answers calls, whatever its
# database does, so a database outage makes pods unready (readiness: "" and each service name)
# but never restarts them; NOT_SERVING from the start of shutdown, like every entry.
LIVENESS = "liveness"

Task = tuple[float, Callable[[], object]]


@dataclass
class ServiceDeps:
    """What a service hands the bootstrap: its database, servicers and periodic chores."""

    db: Database
    register: Callable[[grpc.Server], None]
    service_names: Sequence[str]
    maintenance: Sequence[Task] = field(default_factory=tuple)
    # Background workers of the service (e.g. the saga orchestrator): started with the server,
    # stopped (no new work claimed, leases handed back) when the drain begins.
    on_start: Callable[[], None] | None = None
    on_stop: Callable[[], None] | None = None
    # The service's gauges for /metrics, read from its database at scrape time.
    gauges: Gauges | None = None
    # Writes the audit trail's anchors: at start, periodically, and once more at stop.
    anchoring: Anchoring | None = None


class Server:
    """A built server: ``start()``, then ``stop()``; ``port`` is the bound port."""

    def __init__(self, config: ServiceConfig, deps: ServiceDeps) -> None:
        self.config = config
        self.deps = deps
        self._stopping = threading.Event()
        self._anchor_failures = FailureLog(log, f"{config.name}: audit anchoring")
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.metrics = ServiceMetrics(config.name, deps.db, deps.gauges)
        try:
            verifier = Verifier(
                config.trust_dir,
                config.client_registry,
                config.trust_reload_seconds,
                bind_certificates=config.tls is not None,
            )
        except TrustError as exc:
            raise settings.ConfigError(str(exc)) from exc
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=config.threads, thread_name_prefix=f"{config.name}-rpc"
            ),
            interceptors=[
                tracing.ServerTracer(),
                CallObserver(self.metrics),
                CallGuard(verifier, f"{config.name}.sscard", config.client_max_calls),
            ],
            options=[
                # what bounds an admitted call's memory (inbound): grpc core reads a message
                # whole before the guard sees it, and refuses a larger one itself
                ("grpc.max_receive_message_length", config.max_request_bytes),
                # the largest answer: an import's or a batch's results, a few MB at most
                ("grpc.max_send_message_length", config.max_response_bytes),
                # what a call's body may hold in the transport before it is read: one
                # request's worth per call, not the window BDP probing grows to (hundreds of MB
                # under 48 concurrent 31 MiB calls, though every one of them is refused)
                ("grpc.http2.bdp_probe", 0),
                ("grpc.http2.lookahead_bytes", config.max_request_bytes),
                ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
            ],
            maximum_concurrent_rpcs=config.threads * 16,
        )
        deps.register(self._grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        reflection.enable([*deps.service_names, health.SERVICE_NAME], self._grpc)
        self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
        if config.tls is None:
            self.port = _listen(config.name, config.address, self._grpc.add_insecure_port)
        else:
            credentials = tls.server_credentials(config.tls)
            self.port = _listen(
                config.name,
                config.address,
                lambda address: self._grpc.add_secure_port(address, credentials),
            )
        self._probe: grpc.Server | None = None
        if config.health_port:
            self._probe = grpc.server(
                futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe"),
                options=[("grpc.so_reuseport", 1 if config.workers > 1 else 0)],
                maximum_concurrent_rpcs=8,
            )
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._probe)
            probe_address = f"{config.host}:{config.health_port}"
            _listen(config.name, probe_address, self._probe.add_insecure_port)

    def _set_status(self, status: Any) -> None:
        """Readiness: the whole server ("") and each of its services."""
        for name in ("", *self.deps.service_names):
            self.health.set(name, status)

    def _ready(self, failures: FailureLog) -> bool:
        try:
            ready = migrations.at_head(self.config.name, self.deps.db.engine)
        except Exception as exc:  # a database that does not answer is simply not ready
            failures.failure(type(exc).__name__)
            return False
        failures.success()
        return ready

    def _watch_health(self) -> None:
        serving = False
        failures = FailureLog(log, f"{self.config.name} database check")
        while not self._stopping.is_set():
            ready = self._ready(failures)
            if ready != serving and not self._stopping.is_set():
                serving = ready
                self._set_status(
                    health_pb2.HealthCheckResponse.SERVING
                    if ready
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                log.info("%s is %s", self.config.name, "SERVING" if ready else "NOT_SERVING")
            self._stopping.wait(5.0 if serving else 0.25)

    def _run_chore(self, interval: float, chore: Callable[[], object]) -> None:
        name = getattr(chore, "__qualname__", "periodic task")
        failures = FailureLog(log, f"{self.config.name}: {name}")
        while not self._stopping.wait(interval):
            try:
                chore()
            except DomainError as refused:  # e.g. another service is down: no stack trace
                failures.failure(refused.reason)
            except Exception as exc:
                failures.failure(type(exc).__name__, exc)
            else:
                failures.success()

    def _anchor(self) -> None:
        anchoring, failures = self.deps.anchoring, self._anchor_failures
        if anchoring is None:
            return
        try:
            anchoring.anchor()
        except OSError as exc:  # the anchor file: what the system said, no stack trace
            failures.failure(f"{type(exc).__name__} ({exc.strerror})")
        except SQLAlchemyError as exc:  # the database is down: readiness says so too
            failures.failure(type(exc).__name__)
        except Exception as exc:
            failures.failure(type(exc).__name__, exc)
        else:
            failures.success()

    def _keep_anchoring(self, interval: float) -> None:
        self._anchor()
        while not self._stopping.wait(interval):
            self._anchor()

    def start(self) -> None:
        self._grpc.start()
        if self._probe is not None:
            self._probe.start()
        self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        self.metrics.serve(self.config.host, self.config.metrics_port)
        if self.deps.on_start is not None:
            self.deps.on_start()
        threading.Thread(target=self._watch_health, name="health", daemon=True).start()
        for interval, chore in self.deps.maintenance:
            threading.Thread(
                target=self._run_chore, args=(interval, chore), name="chore", daemon=True
            ).start()
        if self.deps.anchoring is not None:
            threading.Thread(
                target=self._keep_anchoring,
                args=(self.deps.anchoring.interval,),
                name="audit-anchor",
                daemon=True,
            ).start()

    def stop(self, grace: float | None = None, drain: float = 0.0) -> None:
        """Drain, then stop: NOT_SERVING at once while calls are still taken for ``drain``
        seconds (load balancers move traffic away), background loops stop claiming work and
        hand it back; then no new calls, and those in flight get ``grace`` seconds to finish."""
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        if self.deps.on_stop is not None:
            self.deps.on_stop()
        if drain > 0:
            log.info("%s draining for %.1fs", self.config.name, drain)
            time.sleep(drain)
        self._grpc.stop(self.config.grace_seconds if grace is None else grace).wait()
        self._anchor()  # covers the rows of the last calls
        if self._probe is not None:
            self._probe.stop(0)
        self.metrics.stop()
        self.deps.db.dispose()


def create_server(config: ServiceConfig, deps: ServiceDeps) -> Server:
    """A bound server, not yet started; port 0 picks a free port (``server.port``)."""
    return Server(config, deps)


@dataclass(frozen=True)
class Foundation:
    """What every service's composition root starts from."""

    name: str
    db: Database
    clock: Clock
    keys: IdempotencyStore
    anchoring: Anchoring

    def purge_task(self, interval: float = 600.0) -> Task:
        """Periodic removal of expired idempotency keys."""
        return (interval, lambda: self.keys.purge_expired(self.db))

    def gauges(self, own: Gauges | None = None) -> Gauges:
        """The service's gauges (``own``) and the idempotency keys it holds."""

        def collect(session: Session) -> Iterable[Metric]:
            keys = labelled("sscard_idempotency_keys", "Idempotency keys stored", "service")
            keys.add_metric([self.name], float(self.keys.count_live(session)))
            yield keys
            if own is not None:
                yield from own(session)

        return collect


def foundation(
    config: ServiceConfig, keys_table: Table, cipher: PiiCipher | None = None
) -> Foundation:
    """Engine, clock, idempotency store and audit anchoring for a service, built once per
    process."""
    audit_key = config.audit_key()
    db = Database(make_engine(config.db_url, pool_size=config.threads))
    clock = config.clock()
    if config.test_clock_file:
        log.warning("%s runs on the shared TEST clock (%s)", config.name, config.test_clock_file)
    ttl = dt.timedelta(hours=config.idempotency_ttl_hours)
    keys = IdempotencyStore(keys_table, clock, ttl, cipher)
    anchoring = Anchoring(
        config.name,
        keys.trail,
        db,
        clock,
        audit_key,
        config.audit_anchor_file,
        config.audit_anchor_seconds,
    )
    return Foundation(config.name, db, clock, keys, anchoring)


Build = Callable[[ServiceConfig], ServiceDeps]


def _serve_one(config: ServiceConfig, build: Build) -> None:
    logs.configure(config.name, config.log_level, config.log_format)
    tracing.configure(config.name, config.env)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = create_server(config, build(config))
    server.start()
    log.info("%s listening on %s:%d", config.name, config.host, server.port)
    if config.port_file is not None:
        _report_port(config.port_file, server.port)
    # Woken now and then: a signal the kernel hands to one of grpc's threads sets Python's flag
    # but wakes no one, and its handler runs only when the main thread next runs Python code.
    while not stop.wait(0.5):
        pass
    log.info(
        "%s stopping: NOT_SERVING, drain %.1fs, then grace %.1fs",
        config.name,
        config.drain_seconds,
        config.grace_seconds,
    )
    server.stop(drain=config.drain_seconds)


def _report_port(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` whole (a reader never sees a partial file)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{port}\n")
    partial.replace(path)


def _worker(config: ServiceConfig, build: Build, parent: int, refusals: Any) -> None:
    """A worker process: dies with the supervisor that started it, whatever kills that. A
    worker that cannot start as configured (``Refusal``) tells the supervisor why and exits:
    restarting it would meet the same setting again."""
    processes.die_with_parent(parent)
    try:
        _serve_one(config, build)
    except Refusal as exc:
        refusals.put(exc)
        raise SystemExit(2) from None


class CannotListen(OSError):
    """The address a service was given is taken or cannot be bound."""


# Why a service cannot start as configured: one line, exit code 2, no restart.
Refusal = (settings.ConfigError, CannotListen)


def _listen(name: str, address: str, bind: Callable[[str], int]) -> int:
    """Bind a listener, the port it got; a port another process holds is one clear line."""
    try:
        port = bind(address)
    except RuntimeError:  # grpc raises where it once returned 0
        port = 0
    if port == 0:
        raise CannotListen(f"{name}: cannot listen on {address}: is another process using it?")
    return port


def run_service(name: str, build: Build) -> None:
    """Entry point of ``python -m services.<name>``: a configuration error is one clear line."""
    try:
        config = settings.load(name)
        serve(config, build)
    except settings.ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except CannotListen as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def _worker_config(config: ServiceConfig, index: int) -> ServiceConfig:
    """Worker ``index`` serves its own metrics on the metrics port + ``index``."""
    if config.metrics_port == 0:
        return config
    return dataclasses.replace(config, metrics_port=config.metrics_port + index)


def serve(config: ServiceConfig, build: Build) -> None:
    """Run the service until SIGTERM / SIGINT, in ``config.workers`` processes on one port.

    With several workers this process supervises them: a worker that dies is restarted with a
    growing delay, each restart logged with its count; after too many quick crashes the
    service gives up (exit 1) so that its own supervisor sees it. A worker that cannot start
    as configured (a configuration error, a port it cannot bind) stops the whole service: its
    error is raised here, as the single process would raise it. Workers die with this
    process, even when it is killed with SIGKILL.
    """
    if config.workers == 1:
        _serve_one(config, build)
        return
    if config.port == 0:
        upper = config.name.upper()
        raise settings.ConfigError(
            f"SSCARD_{upper}_WORKERS={config.workers} needs a fixed SSCARD_{upper}_PORT, not 0"
        )
    logs.configure(config.name, config.log_level, config.log_format)
    ctx = multiprocessing.get_context("spawn")
    parent = os.getpid()
    refusals = ctx.SimpleQueue()

    def spawn(i: int) -> multiprocessing.process.BaseProcess:
        worker = ctx.Process(
            target=_worker,
            args=(_worker_config(config, i), build, parent, refusals),
            name=f"{config.name}-{i}",
        )
        worker.start()
        return worker

    workers = [spawn(i) for i in range(config.workers)]
    backoff = processes.Backoff()
    restart_at: dict[int, float] = {}
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    failed = False
    refused: BaseException | None = None
    while not stop.wait(0.2):
        now = time.monotonic()
        for i, worker in enumerate(workers):
            if i in restart_at:
                if now >= restart_at[i]:
                    del restart_at[i]
                    workers[i] = spawn(i)
                    log.warning("%s: worker %d restarted (pid %s)", config.name, i, workers[i].pid)
                continue
            if worker.is_alive():
                continue
            if not refusals.empty():
                refused = refusals.get()
                break
            delay = backoff.crashed(now)
            if delay is None:
                log.critical(
                    "%s: workers crashed %d times within %.0fs; giving up",
                    config.name,
                    backoff.recent,
                    backoff.window,
                )
                failed = True
                break
            log.error(
                "%s: worker %d (pid %s) exited with %s; restart %d in %.1fs",
                config.name,
                i,
                worker.pid,
                worker.exitcode,
                backoff.restarts,
                delay,
            )
            restart_at[i] = now + delay
        if failed or refused is not None:
            break
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(config.drain_seconds + config.grace_seconds + 5)
        if worker.is_alive():
            worker.kill()
    if refused is not None:
        raise refused
    if failed:
        raise SystemExit(1)
