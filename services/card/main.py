"""Composition root of the card service: `python -m services.card`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import grpc
from prometheus_client.core import Metric
from sqlalchemy.orm import Session

from services.card import deadlines, store
from services.card.api import CardApi, OpsApi
from services.card.clients import BankPort, IdentityPort, TransitPort
from services.card.deaths import DeathWatch
from services.card.flows import (
    application_saga,
    bank_task_saga,
    cancellation_saga,
    park_pass_move_saga,
    release_place_saga,
    replacement_saga,
    retirement_saga,
    transit_refund_saga,
    transit_status_saga,
)
from services.card.saga import Orchestrator, Tuning
from services.card.scheduler import Scheduler
from services.card.store import wall_clock
from services.card.watch import SagaWatch, WatchLimits
from services.platform import config as settings
from services.platform.clients import ServiceCredential
from services.platform.clock import Clock
from services.platform.metrics import Gauges, gauge, labelled
from services.platform.passwords import Argon2Hasher
from services.platform.pii import PiiCipher
from services.platform.server import ServiceDeps, foundation, run_service
from sscard.card.v1 import card_pb2, card_pb2_grpc

SERVICE_NAME = card_pb2.DESCRIPTOR.services_by_name["CardService"].full_name
CALENDAR_INTERVAL = 5.0  # seconds between looks at the calendar override file
FEED_INTERVAL = 1.0  # seconds between reads of the identity service's person events (A21.2)
OPS_SERVICE_NAME = card_pb2.DESCRIPTOR.services_by_name["OpsService"].full_name


def saga_tuning(config: settings.ServiceConfig) -> Tuning:
    env = config.env
    return Tuning(
        workers=settings.int_setting(env, "SSCARD_CARD_SAGA_WORKERS", 8, minimum=1),
        lease=dt.timedelta(seconds=settings.float_setting(env, "SSCARD_SAGA_LEASE_SECONDS", 15)),
        max_retries=settings.int_setting(env, "SSCARD_SAGA_MAX_RETRIES", 50, minimum=1),
    )


def crash_point(config: settings.ServiceConfig) -> str:
    """Fault injection for crash tests; never in production."""
    point = config.env.get("SSCARD_CARD_CRASH_AFTER", "").strip()
    if point and config.environment == "production":
        raise settings.ConfigError("SSCARD_CARD_CRASH_AFTER must not be set in production")
    return point


def _age(now: dt.datetime, since: dt.datetime | None) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0


def operations_gauges(clock: Clock) -> Gauges:
    """Unfinished sagas (their times are wall-clock) and pending deadlines (the suite's clock)."""

    def collect(session: Session) -> Iterator[Metric]:
        snap = store.operations_snapshot(session, clock.now())
        now = wall_clock()
        by_kind = labelled("sscard_card_sagas", "Unfinished sagas", "kind", "state")
        for kind, state, count in snap.sagas:
            by_kind.add_metric([kind, state], count)
        yield by_kind
        yield gauge(
            "sscard_card_saga_oldest_running_seconds",
            "Age of the oldest unfinished saga (0: none)",
            _age(now, snap.oldest_saga_started),
        )
        yield gauge("sscard_card_sagas_retrying", "Unfinished sagas retrying a step", snap.retrying)
        yield gauge(
            "sscard_card_saga_oldest_retrying_seconds",
            "Age of the oldest saga retrying a step (0: none)",
            _age(now, snap.oldest_retrying_started),
        )
        pending = labelled(
            "sscard_card_deadlines_pending", "Deadlines not yet acted on", "kind", "rule"
        )
        overdue = labelled(
            "sscard_card_deadlines_overdue",
            "Deadlines past due and not yet acted on",
            "kind",
            "rule",
        )
        estimated = labelled(
            "sscard_card_deadlines_estimated_calendar",
            "Pending deadlines counted in working days through a year whose holiday schedule "
            "is not confirmed (load the State Council notice: sscard calendar load)",
            "kind",
            "rule",
        )
        for kind, rule, count, late, guessed in snap.deadlines:
            pending.add_metric([kind, rule], count)
            overdue.add_metric([kind, rule], late)
            estimated.add_metric([kind, rule], guessed)
        yield pending
        yield overdue
        yield estimated

    return collect


def build(config: settings.ServiceConfig) -> ServiceDeps:
    cipher = PiiCipher(config.pii_key())
    base = foundation(config, store.idempotency_keys, cipher)
    credential = ServiceCredential(config)
    identity, bank = IdentityPort(config, credential), BankPort(config, credential)
    transit = TransitPort(config, credential)

    def new_uow(readonly: bool = False) -> store.CardUnitOfWork:
        return store.CardUnitOfWork(base.db, cipher, readonly)

    calendar = config.calendar()
    orchestrator = Orchestrator(
        new_uow,
        [
            application_saga(identity, bank, transit, calendar, base.clock),
            bank_task_saga(bank, base.clock),
            replacement_saga(identity, bank, transit, calendar, base.clock),
            retirement_saga(identity, bank, base.clock),
            transit_refund_saga(transit, base.clock),
            cancellation_saga(bank, transit, base.clock),
            park_pass_move_saga(transit, base.clock),
            release_place_saga(identity, base.clock),
            transit_status_saga(transit, base.clock),
        ],
        saga_tuning(config),
        crash_point(config),
    )
    scheduler = Scheduler(
        new_uow,
        base.clock,
        deadlines.handlers(base.clock, bank),
        poll_seconds=settings.float_setting(config.env, "SSCARD_SCHEDULER_POLL_SECONDS", 1),
        crash_point=crash_point(config),
    )
    deaths = DeathWatch(new_uow, identity, calendar, base.clock)
    watch = SagaWatch(lambda: new_uow(readonly=True), WatchLimits.from_config(config))
    api = CardApi(
        base.db,
        cipher,
        base.clock,
        base.keys,
        orchestrator,
        Argon2Hasher(),
        identity,
        bank,
        transit,
        watch,
    )
    ops = OpsApi(base.db, cipher, base.clock, base.keys, orchestrator)

    def register(server: grpc.Server) -> None:
        card_pb2_grpc.add_CardServiceServicer_to_server(api, server)
        card_pb2_grpc.add_OpsServiceServicer_to_server(ops, server)

    def start() -> None:
        orchestrator.start()
        scheduler.start()

    def stop() -> None:
        watch.stop()
        scheduler.stop()
        orchestrator.stop()

    return ServiceDeps(
        db=base.db,
        anchoring=base.anchoring,
        register=register,
        service_names=[SERVICE_NAME, OPS_SERVICE_NAME],
        maintenance=[
            base.purge_task(),
            (FEED_INTERVAL, deaths.run),
            (CALENDAR_INTERVAL, deadlines.CalendarWatch(new_uow, calendar, base.clock).run),
        ],
        gauges=base.gauges(operations_gauges(base.clock)),
        on_start=start,
        on_stop=stop,
    )


def main() -> None:
    run_service("card", build)
