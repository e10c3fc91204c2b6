"""Composition root of the bank service: `python -m services.bank`."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from prometheus_client.core import Metric
from sqlalchemy.orm import Session

from services.bank import ledger_store, store
from services.bank.api import BankApi
from services.bank.clients import GrpcCardPort, GrpcCounterCardPort, GrpcIdentityPort
from services.bank.counter_api import CounterApi
from services.bank.domain.monitoring import Thresholds
from services.bank.domain.tiers import TierConfigError, TierPolicy
from services.bank.ledger_api import LedgerApi
from services.bank.ledger_service import LedgerConfig
from services.bank.service import RELAY_CALL_DEADLINE, NoticeRelay
from services.platform import config as settings
from services.platform.clients import ServiceCredential, channel_to
from services.platform.clock import Clock
from services.platform.metrics import labelled
from services.platform.passwords import Argon2Hasher
from services.platform.pii import PiiCipher
from services.platform.server import ServiceDeps, foundation, run_service
from sscard.bank.v1 import (
    bank_pb2,
    bank_pb2_grpc,
    counter_pb2,
    counter_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
)

SERVICE_NAME = bank_pb2.DESCRIPTOR.services_by_name["BankService"].full_name
LEDGER_SERVICE_NAME = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
COUNTER_SERVICE_NAME = counter_pb2.DESCRIPTOR.services_by_name["CounterService"].full_name
RELAY_INTERVAL = 0.5  # seconds between passes of the A7.1 notice relay


def alert_gauges(session: Session) -> Iterator[Metric]:
    """Suspicious-transaction alerts waiting for a person (A19.2), by status."""
    alerts = labelled("sscard_bank_alerts_unresolved", "Alerts not yet resolved", "status")
    for status, count in ledger_store.unresolved_alerts(session, store.ledger_tables).items():
        alerts.add_metric([status.name], count)
    yield alerts


def build(config: settings.ServiceConfig) -> ServiceDeps:
    cipher = PiiCipher(config.pii_key())
    calendar = config.calendar()
    base = foundation(config, store.idempotency_keys, cipher)
    api = BankApi(base.db, cipher, base.clock, base.keys, calendar)
    card = GrpcCardPort(channel_to(config, "card"), ServiceCredential(config), RELAY_CALL_DEADLINE)
    relay = NoticeRelay(lambda: store.BankUnitOfWork(base.db, cipher), card, base.clock)
    ledger_api = LedgerApi(base.db, cipher, base.keys, ledger_config(config, base.clock))
    counter_api = CounterApi(
        base.db,
        cipher,
        base.clock,
        base.keys,
        GrpcCounterCardPort(channel_to(config, "card")),
        GrpcIdentityPort(channel_to(config, "identity"), ServiceCredential(config)),
        Argon2Hasher(),
    )

    def register(server: grpc.Server) -> None:
        bank_pb2_grpc.add_BankServiceServicer_to_server(api, server)
        ledger_pb2_grpc.add_LedgerServiceServicer_to_server(ledger_api, server)
        counter_pb2_grpc.add_CounterServiceServicer_to_server(counter_api, server)

    return ServiceDeps(
        db=base.db,
        anchoring=base.anchoring,
        register=register,
        service_names=[SERVICE_NAME, LEDGER_SERVICE_NAME, COUNTER_SERVICE_NAME],
        # Production due dates (A22.2) follow a year operations load into the calendar file.
        maintenance=[base.purge_task(), (RELAY_INTERVAL, relay.run), (5.0, calendar.refresh)],
        gauges=base.gauges(alert_gauges),
        on_stop=relay.stop,
    )


def ledger_config(config: settings.ServiceConfig, clock: Clock) -> LedgerConfig:
    """The ledger's account classes (A4.5, ``SSCARD_BANK_TIER_LIMITS``) and monitoring
    thresholds (A4.5, ``SSCARD_BANK_MONITORING``)."""
    try:
        return LedgerConfig(clock, TierPolicy.from_env(config.env), Thresholds.from_env(config.env))
    except (TierConfigError, ValueError) as exc:
        raise settings.ConfigError(str(exc)) from exc


def main() -> None:
    run_service("bank", build)
