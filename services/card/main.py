"""Composition root of the card service: `python -m services.card`."""

from __future__ import annotations

from sscard.card.v1 import card_pb2, card_pb2_grpc

from services.card import store
from services.platform import config as settings
from services.platform.server import ServiceDeps, foundation, run_service

SERVICE_NAME = card_pb2.DESCRIPTOR.services_by_name["CardService"].full_name


def build(config: settings.ServiceConfig) -> ServiceDeps:
    base = foundation(config, store.idempotency_keys)
    servicer = card_pb2_grpc.CardServiceServicer()
    return ServiceDeps(
        db=base.db,
        register=lambda server: card_pb2_grpc.add_CardServiceServicer_to_server(servicer, server),
        service_names=[SERVICE_NAME],
        maintenance=[base.purge_task()],
    )


def main() -> None:
    run_service("card", build)
