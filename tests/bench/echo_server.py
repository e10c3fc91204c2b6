"""Servers for the TopUp benchmark, each its own process.

    python -m tests.bench.echo_server bare   # a plain grpc.server: TopUp answered, no guard
    python -m tests.bench.echo_server echo   # the same answer behind the platform's server

``bare`` is the floor: a plain ``grpc.server`` with 8 threads and nothing else (no call guard,
no interceptors, no health), listening with ``SO_REUSEPORT`` so that several processes share
the port. ``echo`` is built exactly like the transit service (the platform's server bootstrap:
the call guard verifying the credential, the call observer, thread pool, worker processes and
health), and its TopUp decodes the request, reads the caller and answers an entry without
touching a database: the bound of the project's server stack itself.
"""

from __future__ import annotations

import signal
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
from services.platform.protoconv import enum_value
from services.platform.server import ServiceDeps, serve
from services.transit.main import SERVICE_NAME
from sscard.common.v1 import common_pb2
from sscard.transit.v1 import transit_pb2 as pb
from sscard.transit.v1 import transit_pb2_grpc


class EchoTransit(transit_pb2_grpc.TransitServiceServicer):
    def TopUp(self, request: pb.TopUpRequest, context: Any) -> pb.Entry:
        caller = current_caller()
        return pb.Entry(
            entry_id=1,
            card_id=request.card_id,
            kind=pb.ENTRY_KIND_TOP_UP,
            amount_fen=request.amount_fen,
            balance_after_fen=request.amount_fen,
            reference=request.request_id,
            channel=enum_value(common_pb2.Channel, caller.channel.value),
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


class BareTransit(transit_pb2_grpc.TransitServiceServicer):
    def TopUp(self, request: pb.TopUpRequest, context: Any) -> pb.Entry:
        return pb.Entry(
            entry_id=1,
            card_id=request.card_id,
            kind=pb.ENTRY_KIND_TOP_UP,
            amount_fen=request.amount_fen,
            balance_after_fen=request.amount_fen,
            reference=request.request_id,
            channel=common_pb2.CHANNEL_TRANSIT_OUTLET,
            outlet_id="K-1",
        )


def serve_bare() -> None:
    config = settings.load("transit")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 1)]
    )
    transit_pb2_grpc.add_TransitServiceServicer_to_server(BareTransit(), server)
    server.add_insecure_port(config.address)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "echo"
    if mode == "bare":
        serve_bare()
    else:
        serve(settings.load("transit"), build_echo)


if __name__ == "__main__":
    main()
