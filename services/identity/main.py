"""Composition root of the identity service: `python -m services.identity`."""

from __future__ import annotations

from services.identity import store
from services.identity.api import IdentityApi
from services.platform import config as settings
from services.platform.pii import PiiCipher
from services.platform.server import ServiceDeps, foundation, run_service
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name


def build(config: settings.ServiceConfig) -> ServiceDeps:
    cipher = PiiCipher(config.pii_key())
    base = foundation(config, store.idempotency_keys, cipher)
    api = IdentityApi(base.db, cipher, base.clock, base.keys)
    return ServiceDeps(
        db=base.db,
        anchoring=base.anchoring,
        register=lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(
            api, server
        ),
        service_names=[SERVICE_NAME],
        maintenance=[base.purge_task()],
        gauges=base.gauges(),
    )


def main() -> None:
    run_service("identity", build)
