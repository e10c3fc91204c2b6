"""The ``sscard`` command: development and operations tools.

    sscard token --client icbc-core --channel BANK_BRANCH --outlet ICBC-XIDAN  a credential
    sscard call identity GetPerson '{"person": {"person_id": "..."}}'  call any RPC with JSON
    sscard call card OpsService.ListSagas '{}'                         another service of a domain
    sscard keys list | init | rotate ISSUER | retire ISSUER KID        issuers' signing keys
                                   (init: also the development CA and certificates, var/tls/)
    sscard clients                                                     check the client registry
    sscard access                                                      the authorization matrix
    sscard migrate [identity card bank transit]                        migrate databases to head
    sscard audit verify card [--anchors FILE] | list card [--card ID] [--client ID]
                                          [--since 2027-01-04]        the audit trail
    sscard secrets                                                     create development secrets
    sscard calendar load 2027.json [--into FILE]                       a year's holiday schedule
    sscard clock show | advance 16d | set 2027-01-04T09:00+08:00 | reset   move the test clock

``token`` and ``call`` sign development credentials with the development issuer's key
(var/keys/, never in production) for a client of the registry; ``call`` defaults to the
operations console (``--client``, ``--person``, ``--channel`` and the other options choose
another), or takes ``--token``. A client-streaming method takes a JSON list, or JSON lines on
stdin; a server-streaming one prints one JSON line per message as it arrives. With TLS on (the
default) a credential is bound to its client's certificate (var/tls/<client>.pem unless
``--cert``), and ``call`` presents that certificate (``--key``, ``--cacert``).
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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.platform import access, tls, tokens
from services.platform import config as settings
from services.platform.auth import KIND_RULES, SUBJECT_ROLES, Channel, Role
from services.platform.trust import Client, TrustError, load_registry

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.platform.audit import AuditTrail

DEV_ISSUER = "sscard-dev"
DEV_SECRETS = {
    "identity-pii.key": "SSCARD_IDENTITY_PII_KEY",
    "card-pii.key": "SSCARD_CARD_PII_KEY",
    "bank-pii.key": "SSCARD_BANK_PII_KEY",
    "console-session.key": "SSCARD_CONSOLE_SESSION_KEY",
    **{f"{name}-audit.key": f"SSCARD_{name.upper()}_AUDIT_KEY" for name in settings.SERVICES},
}


def _keys_dir() -> Path:
    return Path(os.environ.get("SSCARD_KEYS_DIR", "").strip() or settings.VAR_DIR / "keys")


def _trust_dir() -> Path:
    return Path(os.environ.get("SSCARD_TRUST_DIR", "").strip() or settings.VAR_DIR / "trust")


def _registry_file() -> Path:
    default = settings.REPO_ROOT / "deploy" / "clients.toml"
    return Path(os.environ.get("SSCARD_CLIENT_REGISTRY", "").strip() or default)


def _production() -> bool:
    return os.environ.get("SSCARD_ENVIRONMENT", "").strip() == "production"


def ensure_dev_secrets(var_dir: Path = settings.VAR_DIR) -> None:
    """Create development secrets under var/ unless they exist (never in production): the PII
    keys, the development issuer's key pair, and a key pair per service for its own credential.
    Private keys go to var/keys/, public keys (JWKS) to var/trust/."""
    var_dir.mkdir(parents=True, exist_ok=True)
    (var_dir / "audit").mkdir(exist_ok=True)  # the audit trails' anchor files
    for name in DEV_SECRETS:
        path = var_dir / name
        if not path.exists():
            path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
            path.chmod(0o600)
    keys, trust = var_dir / "keys", var_dir / "trust"
    for issuer in (DEV_ISSUER, *(f"sscard-{name}" for name in settings.SERVICES)):
        tokens.ensure_issuer(key_file(keys, issuer), trust, issuer)
    ensure_dev_certificates(var_dir / "tls", _registered_ids())


def _registered_ids() -> list[str]:
    try:
        return sorted(load_registry(_registry_file()))
    except TrustError as exc:
        raise SystemExit(f"sscard: the client registry: {exc}") from None


def ensure_dev_certificates(tls_dir: Path, clients: Iterable[str] = ()) -> None:
    """A development CA (``ca.pem``, its key ``ca.key``) and, unless they exist, a certificate
    and key per service (``<name>-service.pem`` / ``.key``, server and client) and per
    registered client (``<client>.pem`` / ``.key``)."""
    ca, ca_key = tls_dir / "ca.pem", tls_dir / "ca.key"
    tls.ensure_ca(ca, ca_key)
    hosts = {f"{name}-service": tls.service_hosts(name) for name in settings.SERVICES}
    for client_id in (*hosts, *clients):
        cert, key = tls_dir / f"{client_id}.pem", tls_dir / f"{client_id}.key"
        if not (cert.exists() and key.exists()):
            tls.issue(ca, ca_key, cert, key, client_id, hosts.get(client_id, ()))


def key_file(keys: Path, issuer: str) -> Path:
    """Where a development issuer's private key lives: the development issuer's own, or a
    service's (``sscard-card`` signs with ``card-service.pem``, the service's default)."""
    if issuer == DEV_ISSUER:
        return keys / f"{DEV_ISSUER}.pem"
    return keys / f"{issuer.removeprefix('sscard-')}-service.pem"


def _client(client_id: str) -> Client:
    try:
        registry = load_registry(_registry_file())
    except TrustError as exc:
        raise SystemExit(f"sscard: the client registry: {exc}") from None
    client = registry.get(client_id)
    if client is None:
        known = ", ".join(sorted(registry))
        raise SystemExit(f"sscard: no client {client_id!r} in {_registry_file()}; known: {known}")
    return client


def _one(kind: str, chosen: str, registered: Iterable[str], client_id: str) -> str:
    options = sorted(registered)
    if chosen:
        return chosen
    if len(options) == 1:
        return options[0]
    raise SystemExit(
        f"sscard: {client_id} is registered for several {kind}s; choose --{kind}: "
        + ", ".join(options)
    )


def dev_credential(
    client_id: str,
    *,
    channel: str = "",
    roles: Sequence[str] = (),
    person: str = "",
    employer: str = "",
    bank: str = "",
    outlet: str = "",
    operator: str = "",
    ttl_minutes: int = 0,
    certificate: bytes | None = None,
) -> str:
    """A development credential for a registered client, signed by the development issuer
    (refused in production, where each client's own issuer signs), bound to ``certificate``."""
    if _production():
        raise SystemExit(
            "sscard: credentials are not minted in production; a client's own issuer signs them"
        )
    client = _client(client_id)
    chosen = list(roles)
    if person:
        chosen = [Role.PERSON.value]
    elif employer:
        chosen = [Role.EMPLOYER.value]
    elif not chosen:
        acting = [r.value for r in client.roles if r not in SUBJECT_ROLES and r is not Role.PORTAL]
        chosen = [_one("role", "", acting or [r.value for r in client.roles], client.client_id)]
    picked = _one("channel", channel, [c.value for c in client.channels], client.client_id)
    limit = KIND_RULES[client.kind].max_lifetime_seconds // 60
    signer = tokens.Signer(DEV_ISSUER, key_file(_keys_dir(), DEV_ISSUER))
    return signer.mint(
        client.client_id,
        Channel(picked),
        roles={Role(r) for r in chosen},
        subject=person or employer,
        bank_code=bank or client.bank_code,
        outlet_id=outlet,
        operator_id=operator,
        ttl=dt.timedelta(minutes=min(ttl_minutes or limit, limit)),
        certificate=certificate,
    )


def client_tls_files(
    client_id: str, cert: str = "", key: str = "", cacert: str = ""
) -> settings.TlsFiles | None:
    """A development client's TLS files: its certificate under var/tls/ unless named
    (``SSCARD_TLS_CERT_FILE`` / ``SSCARD_TLS_KEY_FILE`` or the options); None with TLS off."""
    env = os.environ
    files = settings.tls_files(env, client_id, "SSCARD_", settings.environment_of(env))
    if files is None:
        return None
    return settings.TlsFiles(
        ca_file=Path(cacert) if cacert else files.ca_file,
        cert_file=Path(cert) if cert else files.cert_file,
        key_file=Path(key) if key else files.key_file,
    )


def dev_client_tls(
    client_id: str, cert: str = "", key: str = "", cacert: str = ""
) -> tls.ClientTls | None:
    """A development client's side of mutual TLS (``tls.ClientTls``), None with TLS off."""
    files = client_tls_files(client_id, cert, key, cacert)
    return None if files is None else tls.client_tls(files)


def _mint(args: argparse.Namespace, certificate: bytes | None) -> str:
    return dev_credential(
        args.client,
        channel=args.channel,
        roles=[r for r in args.roles.split(",") if r],
        person=args.person,
        employer=args.employer,
        bank=args.bank,
        outlet=args.outlet,
        operator=args.operator,
        ttl_minutes=args.ttl_minutes,
        certificate=certificate,
    )


def _token_options(parser: argparse.ArgumentParser, client: str | None) -> None:
    parser.add_argument(
        "--client",
        default=client,
        required=client is None,
        help="the registered client the credential is for (deploy/clients.toml)",
    )
    parser.add_argument(
        "--channel",
        default="",
        choices=["", *(c.value for c in Channel)],
        help="the channel, when the client is registered for several",
    )
    parser.add_argument(
        "--roles", default="", help=f"comma-separated roles: {', '.join(r.value for r in Role)}"
    )
    parser.add_argument("--person", default="", help="a person's id: a person's own credential")
    parser.add_argument("--employer", default="", help="an employer's credit code")
    parser.add_argument("--outlet", default="", help="outlet id of a counter")
    parser.add_argument("--bank", default="", help="bank code (default: the client's)")
    parser.add_argument("--operator", default="", help="operator id at the counter")
    parser.add_argument("--ttl-minutes", type=int, default=0, help="default: the longest allowed")
    parser.add_argument(
        "--cert",
        default="",
        help="bind the credential to this client certificate (default with TLS on: "
        "var/tls/<client>.pem)",
    )


def cmd_token(args: argparse.Namespace) -> int:
    files = client_tls_files(args.client, args.cert)
    cert = Path(args.cert) if args.cert else files.cert_file if files else None
    try:
        certificate = cert.read_bytes() if cert is not None else None
    except FileNotFoundError:
        raise SystemExit(
            f"sscard: no certificate {cert} to bind the credential to (`sscard keys init` "
            "creates development certificates; --cert names another)"
        ) from None
    print(_mint(args, certificate))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    keys, trust = _keys_dir(), _trust_dir()
    if args.action == "init":
        if _production():
            print("sscard: production keys belong to each issuer; nothing is created here")
            return 2
        ensure_dev_secrets()
    elif args.action == "rotate":
        if not args.issuer:
            print("say which issuer, e.g. sscard keys rotate sscard-dev")
            return 2
        kid = tokens.rotate(key_file(keys, args.issuer), trust, args.issuer)
        print(f"{args.issuer}: now signing with {kid}; the old key stays published until retired")
    elif args.action == "retire":
        if not (args.issuer and args.kid):
            print("say which key, e.g. sscard keys retire sscard-dev <kid>")
            return 2
        if not tokens.retire(trust, args.issuer, args.kid):
            print(f"{args.issuer} publishes no key {args.kid}")
            return 1
    for path in sorted(trust.glob("*.jwks.json")):
        kids = [k["kid"] for k in json.loads(path.read_text())["keys"]]
        print(f"{path.name.removesuffix('.jwks.json')}: {', '.join(kids)}")
    return 0


def cmd_clients(args: argparse.Namespace) -> int:
    try:
        registry = load_registry(_registry_file())
    except TrustError as exc:
        print(f"sscard: {_registry_file()}: {exc}", file=sys.stderr)
        return 1
    for client in registry.values():
        state = "enabled" if client.enabled else "DISABLED"
        print(
            f"{client.client_id:<22} {client.kind.value:<24} {state:<8} "
            f"channels={','.join(sorted(client.channels))} roles={','.join(sorted(client.roles))}"
            + (f" bank={client.bank_code}" if client.bank_code else "")
        )
    print(f"{len(registry)} clients in {_registry_file()}: valid")
    return 0


def cmd_access(args: argparse.Namespace) -> int:
    table = access.markdown()
    if not args.update:
        print(table)
        return 0
    path = Path(args.update)
    start, end = "<!-- access-matrix:start -->", "<!-- access-matrix:end -->"
    text = path.read_text(encoding="utf-8")
    if start not in text or end not in text:
        print(f"{path} has no {start} ... {end} block")
        return 2
    head, rest = text.split(start, 1)
    path.write_text(f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}", encoding="utf-8")
    print(f"{path}: authorization matrix updated")
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


def cmd_audit(args: argparse.Namespace) -> int:
    """Walk (``verify``, against its anchors with ``--anchors``) or list (``list``, masked) a
    service's audit trail, reading its database through its configured URL."""
    from services.platform.audit import AuditTrail
    from services.platform.db import Database, make_engine

    config = settings.load(args.service)
    metadata = importlib.import_module(f"services.{args.service}.store").metadata
    trail = AuditTrail(metadata)
    db = Database(make_engine(config.db_url, pool_size=1))
    try:
        with db.reader() as session, session.begin():
            if args.action == "verify":
                return _verify(args, config, trail, session)
            since = None
            if args.since:
                since = dt.datetime.fromisoformat(args.since)
                if since.tzinfo is None:
                    since = since.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
            rows = trail.rows(
                session,
                card_id=args.card,
                person_id=args.person,
                client_id=args.client,
                since=since,
                limit=args.limit or None,
            )
            for row in rows:
                print(row.masked())
            print(f"{len(rows)} rows")
            return 0
    finally:
        db.dispose()


def _verify(
    args: argparse.Namespace, config: settings.ServiceConfig, trail: AuditTrail, session: Session
) -> int:
    """``audit verify``: the chain of every lane, then, given ``--anchors``, every anchored head
    on it; exit 1 with the first offending row of each lane, or an anchor line, that fails."""
    from services.platform import anchors

    name = args.service
    verdict = trail.verify(session)
    breaks = list(verdict.breaks)
    bad: tuple[str, ...] = ()
    reading = None
    if args.anchors:
        try:
            with open(args.anchors, encoding="utf-8", errors="replace") as lines:
                reading = anchors.read(lines, config.audit_key(), name)
        except OSError as exc:
            print(f"sscard: cannot read {args.anchors}: {exc.strerror}", file=sys.stderr)
            return 2
        bad = reading.bad
        chained = {b.lane for b in breaks}
        found = anchors.check(trail, session, reading.anchors)
        breaks.extend(b for b in found if b.lane not in chained)
        if not reading.anchors:
            bad = (*bad, f"{args.anchors} holds no valid anchor")
        for line in reading.torn:
            print(f"{name}: anchor line {line} is torn (a write cut off by a crash); ignored")
    for problem in bad:
        print(f"{name}: audit anchors BROKEN: {problem}")
    for found_break in sorted(breaks, key=lambda b: b.lane):
        print(
            f"{name}: audit trail BROKEN in lane {found_break.lane} at row "
            f"{found_break.seq}: {found_break.problem}"
        )
    if breaks or bad:
        return 1
    print(f"{name}: audit trail intact, {verdict.rows} rows in {len(verdict.heads)} lanes")
    print(f"head {verdict.head}")
    if reading is not None:
        latest = reading.anchors[-1]
        print(
            f"{len(reading.anchors)} anchors hold, the latest of {latest.at} "
            f"(line {latest.line}); rows after it are only hash-chained"
        )
    return 0


def cmd_calendar(args: argparse.Namespace) -> int:
    """Load a year's State Council holiday schedule into the calendar override file in force
    (``SSCARD_CALENDAR_FILE``): the running services read it again within seconds, and the
    card service counts its pending working-day deadlines again on it."""
    from services.platform.calendar import CalendarFileError, install_years

    target = args.into or settings.load("card").calendar_file
    try:
        years = install_years(args.file, target)
    except (OSError, CalendarFileError, ValueError) as exc:
        print(f"sscard: calendar not loaded: {exc}", file=sys.stderr)
        return 1
    print(f"loaded {', '.join(str(y) for y in years)} into {target}")
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

    from services.platform.clients import open_channel
    from services.platform.grpc_errors import CODES, from_rpc_error
    from services.platform.slices import slices

    method, request_type, response_type = _method(args.service, args.method)
    own = dev_client_tls(args.client, args.cert, args.key, args.cacert)
    token = args.token or _mint(args, own.certificate if own is not None else None)
    path = f"/{method.containing_service.full_name}/{method.name}"
    channel = open_channel(args.target or settings.target_of(args.service), own)
    metadata: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {token}"),)
    try:
        if method.client_streaming:
            text = args.json if args.json is not None else sys.stdin.read()
            items = json.loads(text) if text.lstrip().startswith("[") else text.splitlines()
            # each message as given, re-sliced where it would not fit the request limit
            requests = [
                piece
                for i in items
                if i
                for piece in slices(
                    json_format.Parse(i if isinstance(i, str) else json.dumps(i), request_type())
                )
            ]
            call = channel.stream_unary(
                path,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            answer = call(iter(requests), metadata=metadata, timeout=args.timeout)
        elif method.server_streaming:  # one JSON line per message, as it arrives
            request = json_format.Parse(args.json or "{}", request_type())
            stream = channel.unary_stream(
                path,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            for answer in stream(request, metadata=metadata, timeout=args.timeout):
                line = json_format.MessageToJson(
                    answer, preserving_proto_field_name=True, ensure_ascii=False, indent=None
                )
                print(line, flush=True)
            return 0
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
    _token_options(token, client=None)
    token.set_defaults(run=cmd_token)

    call = sub.add_parser("call", help="call an RPC with a JSON request")
    call.add_argument("service", choices=settings.SERVICES)
    call.add_argument("method")
    call.add_argument("json", nargs="?", help="the request as JSON (default {})")
    call.add_argument("--token", default="", help="use this credential instead of minting one")
    call.add_argument("--target", default="", help="host:port (default: the service's address)")
    call.add_argument("--timeout", type=float, default=30.0)
    call.add_argument("--key", default="", help="the client certificate's key (with --cert)")
    call.add_argument("--cacert", default="", help="the CA bundle (default var/tls/ca.pem)")
    _token_options(call, client="ops-console")
    call.set_defaults(run=cmd_call)

    migrate = sub.add_parser("migrate", help="migrate service databases to head")
    migrate.add_argument("services", nargs="*", choices=[[], *settings.SERVICES])
    migrate.set_defaults(run=cmd_migrate)

    trail = sub.add_parser("audit", help="verify or list a service's audit trail")
    trail.add_argument("action", choices=["verify", "list"])
    trail.add_argument("service", choices=settings.SERVICES)
    trail.add_argument(
        "--anchors", default="", help="verify: also check the trail against this anchor file"
    )
    trail.add_argument("--card", default="", help="only rows for this card id")
    trail.add_argument("--person", default="", help="only rows for this person id")
    trail.add_argument("--client", default="", help="only rows of this client")
    trail.add_argument("--since", default="", help="only rows from this time (Beijing if no zone)")
    trail.add_argument("--limit", type=int, default=0, help="at most this many rows")
    trail.set_defaults(run=cmd_audit)

    secrets = sub.add_parser("secrets", help="create development secrets and keys under var/")
    secrets.set_defaults(run=cmd_secrets)

    keys = sub.add_parser(
        "keys",
        help="issuers' signing keys: init (also the development CA and certificates in "
        "var/tls/), rotate, retire, list",
    )
    keys.add_argument("action", choices=["list", "init", "rotate", "retire"])
    keys.add_argument("issuer", nargs="?", default="")
    keys.add_argument("kid", nargs="?", default="")
    keys.set_defaults(run=cmd_keys)

    clients = sub.add_parser("clients", help="list and check the client registry")
    clients.set_defaults(run=cmd_clients)

    matrix = sub.add_parser("access", help="print the authorization matrix (Markdown)")
    matrix.add_argument("--update", default="", help="rewrite the matrix block of this file")
    matrix.set_defaults(run=cmd_access)

    calendar = sub.add_parser("calendar", help="load a year's holiday schedule (working days)")
    calendar.add_argument("action", choices=["load"])
    calendar.add_argument("file", help="an override file holding the years to load")
    calendar.add_argument("--into", default="", help="override file (default: the one in force)")
    calendar.set_defaults(run=cmd_calendar)

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
