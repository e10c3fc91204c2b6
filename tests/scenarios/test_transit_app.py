"""The transit app's calls about a person's own card over real gRPC against real identity, bank,
card and transit services, on SQLite and PostgreSQL (A3.1, A10.1): decided on transit's own
view of the card, which names its holder, with no call to the card service once the view
names the holder (on PostgreSQL a top-up is one statement); another person's card answers as a
card that does not exist."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from sqlalchemy import event, text

from services.platform.auth import Channel, Role
from services.transit import main as transit_main
from services.transit.clients import GrpcCardPort
from services.transit.domain.wallet import CardFacts
from sscard.card.v1 import card_pb2 as pb
from sscard.transit.v1 import transit_pb2 as tpb
from sscard.transit.v1 import transit_pb2_grpc as tpb_grpc
from tests.cardsuite import Suite, active_card, reason_rule, rpc_error, wait_until
from tests.scenarios.test_transit import YUAN, top_up, transit_told

Transit = tpb_grpc.TransitServiceStub


def holder_in_view(transit: Any, card_id: str) -> str | None:
    """The card's holder in transit's own view, read from its database."""
    with transit.deps.db.engine.connect() as connection:
        return connection.execute(
            text("SELECT person_id FROM card_status WHERE card_id = :c"), {"c": card_id}
        ).scalar_one_or_none()


def counting_transit(
    suite: Suite, start_service: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[Transit, list[str], Any]:
    """The transit service restarted on its database with a card port that notes every call it
    makes to the card service: the stub, the calls made, the running service."""
    asked: list[str] = []

    class CountingCardPort(GrpcCardPort):
        def card(self, card_id: str) -> CardFacts:
            asked.append("GetCard")
            return super().card(card_id)

        def status(self, card_id: str) -> CardFacts:
            asked.append("QueryStatus")
            return super().status(card_id)

    monkeypatch.setattr(transit_main, "GrpcCardPort", CountingCardPort)
    suite.transit_server.server.stop(0)
    running = start_service("transit", transit_main.build)
    return Transit(running.channel), asked, running


@contextmanager
def statements(running: Any) -> Iterator[list[str]]:
    """The SQL statements the transit service sends its database meanwhile."""
    sent: list[str] = []

    def note(*args: Any) -> None:
        sent.append(args[2])

    engine = running.deps.db.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def pay(transit: Transit, card_id: str, request_id: str, metadata: Any) -> tpb.Entry:
    return transit.TopUp(
        tpb.TopUpRequest(request_id=request_id, card_id=card_id, amount_fen=10 * YUAN),
        metadata=metadata,
    )


def balance(transit: Transit, card_id: str, metadata: Any) -> int:
    answer = transit.GetBalance(tpb.GetBalanceRequest(card_id=card_id), metadata=metadata)
    return int(answer.balance_fen)


def as_missing(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, str]:
    error = rpc_error(call)
    return error.code(), reason_rule(error)[0], str(error.details())


class TestOwnCard:
    def test_A10_1_the_app_tops_up_and_reads_its_own_card_without_asking_the_card_service(
        self, suite: Suite, start_service: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        card_id, person = active_card(suite)
        wait_until(lambda: transit_told(suite, card_id), timeout=60)
        transit, asked, running = counting_transit(suite, start_service, monkeypatch)
        app = suite.at(Channel.TRANSIT_APP, person)
        assert pay(transit, card_id, "app-1", app).balance_after_fen == 10 * YUAN
        with statements(running) as sent:
            second = pay(transit, card_id, "app-2", app)
        assert second.balance_after_fen == 20 * YUAN
        if not running.deps.db.is_sqlite:  # claimed, booked, answered and audited at once
            assert len(sent) == 1 and "transit_top_up" in sent[0]
        assert pay(transit, card_id, "app-2", app) == second  # a retry pays nothing again
        assert balance(transit, card_id, app) == 20 * YUAN
        listed = transit.ListTransactions(
            tpb.ListTransactionsRequest(card_id=card_id), metadata=app
        )
        assert listed.entries[0] == second  # newest first
        stranger = suite.at(Channel.TRANSIT_APP, suite.person())
        refused = [
            as_missing(lambda: pay(transit, card_id, "app-1", stranger)),
            as_missing(lambda: balance(transit, card_id, stranger)),
        ]
        assert asked == []  # every answer so far came from transit's own view
        missing = [
            as_missing(lambda: pay(transit, "card-does-not-exist", "app-1", stranger)),
            as_missing(lambda: balance(transit, "card-does-not-exist", stranger)),
        ]
        assert refused == missing
        assert refused[0][:2] == (grpc.StatusCode.NOT_FOUND, "CARD_NOT_FOUND")
        assert balance(transit, card_id, suite.ops) == 20 * YUAN

    @pytest.mark.parametrize(
        "before",
        [
            "UPDATE card_status SET person_id = NULL",  # as every view recorded before holders
            "DELETE FROM card_status",  # a card transit has never heard of
        ],
    )
    def test_A10_1_a_view_that_does_not_name_the_holder_is_completed_once_from_the_card_service(
        self,
        suite: Suite,
        start_service: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch,
        before: str,
    ) -> None:
        card_id, person = active_card(suite)
        wait_until(lambda: transit_told(suite, card_id), timeout=60)
        top_up(suite, card_id, 10 * YUAN)  # a kiosk's top-up needs no holder
        with suite.transit_server.deps.db.engine.begin() as connection:
            connection.execute(text(before))
        transit, asked, running = counting_transit(suite, start_service, monkeypatch)
        app = suite.at(Channel.TRANSIT_APP, person)
        stranger = suite.at(Channel.TRANSIT_APP, suite.person())
        assert pay(transit, card_id, "app-1", app).balance_after_fen == 20 * YUAN
        assert holder_in_view(running, card_id) == person.person_id
        assert pay(transit, card_id, "app-2", app).balance_after_fen == 30 * YUAN
        assert balance(transit, card_id, app) == 30 * YUAN
        refused = rpc_error(lambda: pay(transit, card_id, "app-3", stranger))
        assert reason_rule(refused)[0] == "CARD_NOT_FOUND"
        assert asked == ["GetCard"]
        # The holder never changes: a push naming another keeps the one transit knows.
        card_service = suite.token(roles=(Role.SERVICE,), caller="card-service")
        transit.RecordCardStatus(
            tpb.RecordCardStatusRequest(
                request_id="push-1",
                card_id=card_id,
                status=pb.CARD_STATUS_ACTIVE,
                version=2**40,
                person_id="someone-else",
            ),
            metadata=card_service,
        )
        assert holder_in_view(running, card_id) == person.person_id
        assert pay(transit, card_id, "app-4", app).balance_after_fen == 40 * YUAN
        assert balance(transit, card_id, suite.ops) == 40 * YUAN
