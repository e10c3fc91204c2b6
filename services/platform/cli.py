"""The ``sscard`` command: development and operations tools.

    sscard token --channel BANK_BRANCH --bank ICBC --roles counter     mint a credential
    sscard call identity GetPerson '{"person": {"person_id": "..."}}'  call any RPC with JSON
    sscard call card OpsService.ListSagas --roles ops '{}'             another service of a domain
    sscard migrate [identity card bank transit]                        migrate databases to head
    sscard secrets                                                     create development secrets
    sscard clock show | advance 16d | set 2027-01-04T09:00+08:00 | reset   move the test clock

``call`` mints a credential itself unless ``--token`` is given (``--channel``, ``--roles`` and the
other claims choose it). A client-streaming method takes a JSON list, or JSON lines on stdin.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import importlib
import json
import os
import pkgutil
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.platform import config as settings
from services.platform.auth import Channel, Role, mint_token

DEV_SECRETS = {
    "auth.secret": "SSCARD_AUTH_SECRET",
    "identity-pii.key": "SSCARD_IDENTITY_PII_KEY",
    "card-pii.key": "SSCARD_CARD_PII_KEY",
    "bank-pii.key": "SSCARD_BANK_PII_KEY",
}


def ensure_dev_secrets(var_dir: Path = settings.VAR_DIR) -> None:
    """Create random development secrets under var/ unless they exist (never in production)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    for name in DEV_SECRETS:
        path = var_dir / name
        if not path.exists():
            path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
            path.chmod(0o600)


def _secret() -> bytes:
    return settings.read_secret(os.environ, "AUTH_SECRET", settings.VAR_DIR / "auth.secret")


def _mint(args: argparse.Namespace) -> str:
    roles = {Role(r) for r in args.roles.split(",") if r}
    return mint_token(
        _secret(),
        args.caller,
        Channel(args.channel),
        roles=roles,
        outlet_id=args.outlet,
        bank_code=args.bank,
        operator_id=args.operator,
        ttl=dt.timedelta(minutes=args.ttl_minutes),
    )


def _token_options(parser: argparse.ArgumentParser, channel: str | None) -> None:
    parser.add_argument(
        "--channel",
        default=channel,
        required=channel is None,
        choices=[c.value for c in Channel],
        help="the caller's channel (rules.md, 'channels')",
    )
    parser.add_argument("--caller", default="dev-cli", help="who is calling")
    parser.add_argument(
        "--roles", default="", help=f"comma-separated roles: {', '.join(r.value for r in Role)}"
    )
    parser.add_argument("--outlet", default="", help="outlet id of a counter")
    parser.add_argument("--bank", default="", help="bank code of a bank branch or hotline")
    parser.add_argument("--operator", default="", help="operator id at the counter")
    parser.add_argument("--ttl-minutes", type=int, default=60)


def cmd_token(args: argparse.Namespace) -> int:
    print(_mint(args))
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    ensure_dev_secrets()
    print(f"development secrets are in {settings.VAR_DIR}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from services.platform import migrations
    from services.platform.db import make_engine

    for name in args.services or settings.SERVICES:
        config = settings.load(name)
        if config.db_url.startswith("sqlite:///"):
            Path(config.db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(config.db_url, pool_size=1)
        try:
            migrations.upgrade(name, engine)
            print(f"{name}: database at {migrations.current(engine)}")
        finally:
            engine.dispose()
    return 0


_DURATION = re.compile(r"^(-?\d+)([dhms])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def cmd_clock(args: argparse.Namespace) -> int:
    from services.platform.clock import SharedTestClock

    path = os.environ.get("SSCARD_TEST_CLOCK_FILE", "").strip()
    if not path:
        print("the test clock is off: set SSCARD_TEST_CLOCK_FILE for the suite and here")
        return 2
    clock = SharedTestClock(path)
    if args.action == "advance":
        match = _DURATION.match(args.value or "")
        if not match:
            print("say how far, e.g. 16d, 36h, 90m")
            return 2
        clock.advance(dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))}))
    elif args.action == "set":
        target = dt.datetime.fromisoformat(args.value or "")
        if target.tzinfo is None:
            target = target.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
        clock.set(target)
    elif args.action == "reset":
        clock.set_offset(dt.timedelta(0))
    now = clock.now()
    print(f"suite time {now.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat()}")
    print(f"offset {clock.offset()}")
    return 0


def _method(service: str, name: str) -> tuple[Any, Any, Any]:
    from google.protobuf import message_factory

    package = importlib.import_module(f"sscard.{service}.v1")
    services = {
        found.name: found
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.endswith("_pb2")
        for found in importlib.import_module(
            f"{package.__name__}.{info.name}"
        ).DESCRIPTOR.services_by_name.values()
    }
    service_name, _, name = name.rpartition(".")
    service_name = service_name or f"{service.capitalize()}Service"
    descriptor = services.get(service_name)
    if descriptor is None:
        known = ", ".join(sorted(services))
        raise SystemExit(f"the {service} contract has no service {service_name}; it has: {known}")
    method = descriptor.methods_by_name.get(name)
    if method is None:
        known = ", ".join(sorted(descriptor.methods_by_name))
        raise SystemExit(f"{descriptor.full_name} has no method {name}; it has: {known}")
    request = message_factory.GetMessageClass(method.input_type)
    response = message_factory.GetMessageClass(method.output_type)
    return method, request, response


def cmd_call(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from services.platform.grpc_errors import CODES, from_rpc_error

    method, request_type, response_type = _method(args.service, args.method)
    token = args.token or _mint(args)
    path = f"/{method.containing_service.full_name}/{method.name}"
    channel = grpc.insecure_channel(args.target or settings.target_of(args.service))
    metadata: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {token}"),)
    try:
        if method.client_streaming:
            text = args.json if args.json is not None else sys.stdin.read()
            items = json.loads(text) if text.lstrip().startswith("[") else text.splitlines()
            requests = [
                json_format.Parse(i if isinstance(i, str) else json.dumps(i), request_type())
                for i in items
                if i
            ]
            call = channel.stream_unary(
                path,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            answer = call(iter(requests), metadata=metadata, timeout=args.timeout)
        else:
            request = json_format.Parse(args.json or "{}", request_type())
            unary = channel.unary_unary(
                path,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            answer = unary(request, metadata=metadata, timeout=args.timeout)
    except grpc.RpcError as exc:
        error = from_rpc_error(exc)
        print(f"{CODES[error.kind].name}: {error.message}", file=sys.stderr)
        print(f"  reason {error.reason}  rule {error.rule or '-'}", file=sys.stderr)
        for v in error.violations:
            print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    print(json_format.MessageToJson(answer, preserving_proto_field_name=True, ensure_ascii=False))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sscard", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)

    token = sub.add_parser("token", help="mint a caller credential")
    _token_options(token, channel=None)
    token.set_defaults(run=cmd_token)

    call = sub.add_parser("call", help="call an RPC with a JSON request")
    call.add_argument("service", choices=settings.SERVICES)
    call.add_argument("method")
    call.add_argument("json", nargs="?", help="the request as JSON (default {})")
    call.add_argument("--token", default="", help="use this credential instead of minting one")
    call.add_argument("--target", default="", help="host:port (default: the service's address)")
    call.add_argument("--timeout", type=float, default=30.0)
    _token_options(call, channel=Channel.INTERNAL.value)
    call.set_defaults(run=cmd_call)

    migrate = sub.add_parser("migrate", help="migrate service databases to head")
    migrate.add_argument("services", nargs="*", choices=[[], *settings.SERVICES])
    migrate.set_defaults(run=cmd_migrate)

    secrets = sub.add_parser("secrets", help="create development secrets under var/")
    secrets.set_defaults(run=cmd_secrets)

    clock = sub.add_parser("clock", help="read or move the suite's test clock")
    clock.add_argument("action", choices=["show", "advance", "set", "reset"])
    clock.add_argument("value", nargs="?")
    clock.set_defaults(run=cmd_clock)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    top = parser()
    args, rest = top.parse_known_args(argv)
    # argparse gives an optional positional nothing when options come between; take it back.
    if getattr(args, "json", "") is None and len(rest) == 1 and not rest[0].startswith("--"):
        args.json, rest = rest[0], []
    if rest:
        top.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        result: int = args.run(args)
    except settings.ConfigError as exc:
        print(f"sscard: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
