"""Composition root of the transit service: `python -m services.transit`."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric
from sqlalchemy.orm import Session

from services.platform import config as settings
from services.platform.clients import ServiceCredential, channel_to
from services.platform.clock import Clock
from services.platform.metrics import Gauges, gauge
from services.platform.server import ServiceDeps, foundation, run_service
from services.transit import store
from services.transit.api import TransitApi
from services.transit.clients import GrpcCardPort, GrpcIdentityPort, GrpcLedgerPort
from services.transit.service import RELAY_CALL_DEADLINE, RefundRelay
from sscard.transit.v1 import transit_pb2, transit_pb2_grpc

SERVICE_NAME = transit_pb2.DESCRIPTOR.services_by_name["TransitService"].full_name
RELAY_INTERVAL = 0.5  # seconds between passes of the refund relay


def refund_gauges(clock: Clock) -> Gauges:
    """Refunds still on their way to a bank account (A15.4), and how long the oldest has been."""

    def collect(session: Session) -> Iterator[Metric]:
        count, oldest = store.pending_refunds(session)
        yield gauge("sscard_transit_refunds_pending", "Refunds not yet arrived", count)
        age = (clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        yield gauge(
            "sscard_transit_refund_oldest_pending_seconds",
            "Age of the oldest refund not yet arrived (0: none)",
            max(age, 0.0),
        )

    return collect


def build(config: settings.ServiceConfig) -> ServiceDeps:
    base = foundation(config, store.idempotency_keys)
    credential = ServiceCredential(config)
    cards = GrpcCardPort(channel_to(config, "card"), credential)
    identity = GrpcIdentityPort(channel_to(config, "identity"), credential)
    ledger = GrpcLedgerPort(channel_to(config, "bank"), credential, RELAY_CALL_DEADLINE)
    api = TransitApi(base.db, base.clock, base.keys, cards, identity)
    relay = RefundRelay(lambda: store.TransitUnitOfWork(base.db), ledger, base.clock)
    return ServiceDeps(
        db=base.db,
        anchoring=base.anchoring,
        register=lambda server: transit_pb2_grpc.add_TransitServiceServicer_to_server(api, server),
        service_names=[SERVICE_NAME],
        maintenance=[base.purge_task(), (RELAY_INTERVAL, relay.run)],
        gauges=base.gauges(refund_gauges(base.clock)),
        on_stop=relay.stop,
    )


def main() -> None:
    run_service("transit", build)
