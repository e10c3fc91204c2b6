"""Composition root of the transit service: `python -m services.transit`."""

from __future__ import annotations

from services.platform import config as settings
from services.platform.server import ServiceDeps, foundation, run_service
from services.transit import store
from sscard.transit.v1 import transit_pb2, transit_pb2_grpc

SERVICE_NAME = transit_pb2.DESCRIPTOR.services_by_name["TransitService"].full_name


def build(config: settings.ServiceConfig) -> ServiceDeps:
    base = foundation(config, store.idempotency_keys)
    servicer = transit_pb2_grpc.TransitServiceServicer()
    return ServiceDeps(
        db=base.db,
        register=lambda server: transit_pb2_grpc.add_TransitServiceServicer_to_server(
            servicer, server
        ),
        service_names=[SERVICE_NAME],
        maintenance=[base.purge_task()],
    )


def main() -> None:
    run_service("transit", build)
