"""Prometheus metrics of one service: per-RPC counts and latencies, and the gauges an operator
watches, computed from the service's own database when /metrics is scraped.

Each server has its own registry (several services may share a process in tests) served over
HTTP on ``SSCARD_<SERVICE>_METRICS_PORT`` (0: off). With several worker processes, worker ``i``
serves its own counters on port + ``i``; the database gauges are the same from every worker.
Labels are bounded: service, method, status code, saga kind and state, rule, alert status;
never a card, person or request id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from services.platform.db import Database

log = logging.getLogger("sscard.metrics")

# A service's business gauges, read in one read-only transaction per scrape.
Gauges = Callable[[Session], Iterable[Metric]]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def gauge(name: str, documentation: str, value: float | None = None) -> GaugeMetricFamily:
    """A gauge without labels."""
    return GaugeMetricFamily(name, documentation, value=value)


def labelled(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    """A gauge with ``labels``; its samples are added with ``add_metric``."""
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class DatabaseGauges(Collector):
    """Gauges computed at scrape time: the service's own ones, the connection pool in use, and
    whether the database answered the scrape at all."""

    def __init__(self, service: str, db: Database, gauges: Gauges | None) -> None:
        self._service = service
        self._db = db
        self._gauges = gauges

    def describe(self) -> Iterable[Metric]:
        return ()  # no database query when the collector is registered

    def collect(self) -> Iterator[Metric]:
        pool = labelled(
            "sscard_db_pool_connections_in_use",
            "Database connections checked out of the service's pool",
            "service",
        )
        checked_out = getattr(self._db.engine.pool, "checkedout", None)
        pool.add_metric([self._service], float(checked_out() if checked_out else 0))
        yield pool
        up = labelled(
            "sscard_metrics_database_up",
            "1 if the service's database answered the last scrape's queries",
            "service",
        )
        families: list[Metric] = []
        try:
            if self._gauges is not None:
                with self._db.reader() as session, session.begin():
                    families = list(self._gauges(session))
            up.add_metric([self._service], 1.0)
        except Exception as exc:  # a scrape never fails because the database does not answer
            log.warning("%s: metrics query failed: %s", self._service, type(exc).__name__)
            up.add_metric([self._service], 0.0)
        yield up
        yield from families


class ServiceMetrics:
    """The registry of one server: RPC metrics (fed by the call observer) and database gauges."""

    def __init__(self, service: str, db: Database, gauges: Gauges | None = None) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "sscard_rpc_requests_total",
            "RPCs handled, by method and gRPC status code",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sscard_rpc_duration_seconds",
            "Time to answer an RPC, by method",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(DatabaseGauges(service, db, gauges))
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(self.service, method, code).inc()
        self.latency.labels(self.service, method).observe(seconds)

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics over HTTP on ``port`` (0: not at all)."""
        if port == 0:
            return
        self._http, self._thread = start_http_server(port, host, self.registry)
        self.port = self._http.server_port
        log.info("%s metrics on http://%s:%d/metrics", self.service, host, self.port)

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
