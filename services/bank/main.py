"""Composition root of the bank service: `python -m services.bank`."""

from __future__ import annotations

from sscard.bank.v1 import bank_pb2, bank_pb2_grpc

from services.bank import store
from services.platform import config as settings
from services.platform.server import ServiceDeps, foundation, run_service

SERVICE_NAME = bank_pb2.DESCRIPTOR.services_by_name["BankService"].full_name


def build(config: settings.ServiceConfig) -> ServiceDeps:
    base = foundation(config, store.idempotency_keys)
    servicer = bank_pb2_grpc.BankServiceServicer()
    return ServiceDeps(
        db=base.db,
        register=lambda server: bank_pb2_grpc.add_BankServiceServicer_to_server(servicer, server),
        service_names=[SERVICE_NAME],
        maintenance=[base.purge_task()],
    )


def main() -> None:
    run_service("bank", build)
