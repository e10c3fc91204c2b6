"""Traces: one application is one trace across the card, identity and bank services, even when
its saga is finished by a card service restarted mid-way; log lines carry the trace id.

The services run in-process, so one in-memory exporter sees the spans of all of them (each
server span names its service in ``rpc.service``).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.bank.main import build as build_bank
from services.card.main import build as build_card
from services.platform import logs
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from tests.cardsuite import Suite
from tests.support import wait_serving

CARD = "sscard.card.v1.CardService"
IDENTITY = "sscard.identity.v1.IdentityService"
BANK = "sscard.bank.v1.BankService"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """Every span this process finishes, from here on."""
    found = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(found))
    return found


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def _apply_span(spans: InMemorySpanExporter) -> ReadableSpan:
    [apply] = [
        s
        for s in spans.get_finished_spans()
        if s.kind == trace.SpanKind.SERVER and s.name == f"{CARD}/Apply"
    ]
    return apply


def _trace(spans: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]


def _served(found: list[ReadableSpan]) -> set[str]:
    """The services that served a call of the trace."""
    return {
        str((s.attributes or {}).get("rpc.service"))
        for s in found
        if s.kind == trace.SpanKind.SERVER
    }


def _until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_one_application_is_one_trace_across_card_identity_and_bank(
    start_service: Callable[..., Any], token: Callable[..., Any], spans: InMemorySpanExporter
) -> None:
    suite = Suite(start_service, token)
    person = suite.person()
    spans.clear()
    card_id = suite.apply(person).card_id
    assert suite.settle(card_id).state == pb.SAGA_STATE_COMPLETED
    apply = _apply_span(spans)
    assert apply.context is not None
    found = _trace(spans, apply.context.trace_id)
    assert {CARD, IDENTITY, BANK} <= _served(found)
    steps = [s for s in found if s.name == "saga application"]
    assert steps, "the saga's steps ran outside the application's trace"
    # Everything in the trace descends from the Apply call: one tree, one root.
    assert [s.name for s in found if s.parent is None] == [apply.name]


def test_a_saga_resumed_by_a_restarted_card_service_joins_the_applications_trace(
    start_service: Callable[..., Any], token: Callable[..., Any], spans: InMemorySpanExporter
) -> None:
    suite = Suite(start_service, token)
    ops = card_pb2_grpc.OpsServiceStub(suite.card_server.channel)
    person = suite.person()
    suite.bank_server.server.stop(0)
    spans.clear()
    card_id = suite.apply(person).card_id
    trace_id = _apply_span(spans).context.trace_id  # type: ignore[union-attr]

    def retrying() -> bool:
        listed = ops.ListSagas(pb.ListSagasRequest(card_id=card_id), metadata=suite.ops).sagas
        return listed[0].retries >= 1

    _until(retrying, "the saga never retried the bank")
    suite.card_server.server.stop(0)  # hands its lease back; the saga is RUNNING, half done
    spans.clear()

    bank = start_service("bank", build_bank, migrate=False)
    card = start_service("card", build_card, migrate=False)
    for running in (bank, card):
        wait_serving(running.channel)
    cards = card_pb2_grpc.CardServiceStub(card.channel)

    def settled() -> bool:
        request = pb.GetApplicationRequest(card_id=card_id)
        return cards.GetApplication(request, metadata=suite.ops).state == pb.SAGA_STATE_COMPLETED

    _until(settled, "the restarted card service did not finish the saga")
    resumed = _trace(spans, trace_id)
    assert [s.name for s in resumed if s.name.startswith("saga ")], "no step joined the trace"
    assert BANK in _served(resumed)
    # Every saga span the new process ran belongs to the application's trace.
    assert {
        s.context.trace_id for s in spans.get_finished_spans() if s.name.startswith("saga ")
    } == {trace_id}


def test_log_lines_written_inside_a_call_carry_its_trace_id(
    spans: InMemorySpanExporter,
) -> None:
    out = io.StringIO()
    handler = logs.handler("card", "json", out)
    record_log = logging.getLogger("sscard.test")
    record_log.addHandler(handler)
    record_log.setLevel(logging.INFO)
    try:
        with trace.get_tracer("test").start_as_current_span("call") as span:
            record_log.info("inside")
        record_log.info("outside")
    finally:
        record_log.removeHandler(handler)
    inside, outside = out.getvalue().splitlines()
    assert f'"trace_id": "{span.get_span_context().trace_id:032x}"' in inside
    assert "trace_id" not in outside
