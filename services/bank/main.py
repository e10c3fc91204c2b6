"""Composition root of the bank service: `python -m services.bank`."""

from __future__ import annotations

from services.bank import store
from services.bank.api import BankApi
from services.bank.clients import GrpcCardPort
from services.bank.service import RELAY_CALL_DEADLINE, NoticeRelay
from services.platform import config as settings
from services.platform.calendar import WorkingDayCalendar
from services.platform.clients import ServiceCredential, open_channel
from services.platform.pii import PiiCipher
from services.platform.server import ServiceDeps, foundation, run_service
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc

SERVICE_NAME = bank_pb2.DESCRIPTOR.services_by_name["BankService"].full_name
RELAY_INTERVAL = 0.5  # seconds between passes of the A7.1 notice relay


def build(config: settings.ServiceConfig) -> ServiceDeps:
    cipher = PiiCipher(config.secret("BANK_PII_KEY", settings.VAR_DIR / "bank-pii.key"))
    calendar = WorkingDayCalendar.from_file(config.calendar_file)
    base = foundation(config, store.idempotency_keys, cipher)
    api = BankApi(base.db, cipher, base.clock, base.keys, calendar)
    card = GrpcCardPort(
        open_channel(config.target("card")), ServiceCredential(config), RELAY_CALL_DEADLINE
    )
    relay = NoticeRelay(lambda: store.BankUnitOfWork(base.db, cipher), card, base.clock)
    return ServiceDeps(
        db=base.db,
        register=lambda server: bank_pb2_grpc.add_BankServiceServicer_to_server(api, server),
        service_names=[SERVICE_NAME],
        maintenance=[base.purge_task(), (RELAY_INTERVAL, relay.run)],
    )


def main() -> None:
    run_service("bank", build)
