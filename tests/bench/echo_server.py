"""Servers for the TopUp benchmark, each its own process.

    python -m tests.bench.echo_server echo   # TransitService/TopUp answered with no work
    python -m tests.bench.echo_server card   # a card service whose every card is ACTIVE

``echo`` is built exactly like the transit service (the platform's ``create_server``: the same
call guard verifying the credential, thread pool, worker processes and health), but its TopUp
decodes the request, reads the caller and answers an entry without touching a database: the
bound of the server stack itself. ``card`` is the dependency the real TopUp asks for the card's
status: a plain gRPC server, so the benchmark needs no full suite.
"""

from __future__ import annotations

import sys
import tempfile
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from services.platform import config as settings
from services.platform import migrations
from services.platform.auth import current_caller
from services.platform.db import Database, make_engine
from services.platform.server import ServiceDeps, serve
from services.transit.main import SERVICE_NAME
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.transit.v1 import transit_pb2 as pb
from sscard.transit.v1 import transit_pb2_grpc


class EchoTransit(transit_pb2_grpc.TransitServiceServicer):
    def TopUp(self, request: pb.TopUpRequest, context: Any) -> pb.Entry:
        caller = current_caller()
        return pb.Entry(
            entry_id=1,
            card_id=request.card_id,
            kind=pb.TOP_UP,
            amount_fen=request.amount_fen,
            balance_after_fen=request.amount_fen,
            reference=request.request_id,
            channel=caller.channel.value,
            outlet_id=caller.outlet_id,
        )


def build_echo(config: settings.ServiceConfig) -> ServiceDeps:
    # Health reports SERVING only for a migrated database: give the echo an empty one.
    path = Path(tempfile.mkdtemp(prefix="sscard-echo-")) / "echo.db"
    db = Database(make_engine(f"sqlite:///{path}"))
    migrations.upgrade("transit", db.engine)
    echo = EchoTransit()
    return ServiceDeps(
        db=db,
        register=lambda server: transit_pb2_grpc.add_TransitServiceServicer_to_server(echo, server),
        service_names=[SERVICE_NAME],
    )


class ActiveCards(card_pb2_grpc.CardServiceServicer):
    def QueryStatus(
        self, request: card_pb2.QueryStatusRequest, context: Any
    ) -> card_pb2.QueryStatusResponse:
        return card_pb2.QueryStatusResponse(card_id=request.card_id, status=card_pb2.ACTIVE)

    def GetCard(self, request: card_pb2.GetCardRequest, context: Any) -> card_pb2.Card:
        return card_pb2.Card(
            card_id=request.card_id, status=card_pb2.ACTIVE, bank_code="ICBC", person_id="p"
        )


def serve_cards() -> None:
    config = settings.load("card")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.threads))
    card_pb2_grpc.add_CardServiceServicer_to_server(ActiveCards(), server)
    server.add_insecure_port(config.address)
    server.start()
    server.wait_for_termination()


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "echo"
    if mode == "card":
        serve_cards()
    else:
        serve(settings.load("transit"), build_echo)


if __name__ == "__main__":
    main()
