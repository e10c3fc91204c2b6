"""The console's web application: server-rendered pages over the services' gRPC APIs.

Staff sign in (``users.UserStore``); the session is a signed cookie (HttpOnly, SameSite=Strict,
Secure in production). Every form POST carries the session's CSRF token and is refused 403
without it; actions answer with a redirect (POST-redirect-GET). Templates autoescape, and free
text from the services passes through ``redact`` so no full ID or phone number is ever shown.
Pages read without JavaScript; the overview refreshes itself with a meta refresh.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from console import views
from console.backend import Backend
from console.config import ConsoleConfig
from console.users import UserStore
from services.platform.clock import Clock, SystemClock
from services.platform.errors import DomainError, Kind
from services.platform.masking import redact
from services.platform.protoconv import enum_name
from sscard.bank.v1 import ledger_pb2
from sscard.card.v1 import card_pb2
from sscard.transit.v1 import transit_pb2

log = logging.getLogger("sscard.console")

HERE = Path(__file__).parent
SESSION_COOKIE = "sscard_console"
SESSION_SECONDS = 8 * 3600
NOTE_MAX = 500

# Autoescape everything, whatever a template's file name.
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
)


def _when(ts: Any) -> str:
    if not (ts.seconds or ts.nanos):
        return "—"
    moment: dt.datetime = ts.ToDatetime(dt.UTC)
    return moment.astimezone(views.BEIJING).strftime("%Y-%m-%d %H:%M")


def _when_exact(ts: Any) -> str:
    """To the second: a saga's steps follow each other within moments."""
    if not (ts.seconds or ts.nanos):
        return "—"
    moment: dt.datetime = ts.ToDatetime(dt.UTC)
    return moment.astimezone(views.BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


templates.env.filters.update(
    when=_when, when_exact=_when_exact, yuan=_yuan, redact=lambda text: redact(str(text))
)
templates.env.globals.update(
    saga_state=functools.partial(enum_name, card_pb2.SagaState),
    step_state=functools.partial(enum_name, card_pb2.SagaStepState),
    card_status=functools.partial(enum_name, card_pb2.CardStatus),
    alert_status=functools.partial(enum_name, ledger_pb2.AlertStatus),
    refund_state=functools.partial(enum_name, transit_pb2.RefundState),
    refund_reason=functools.partial(enum_name, transit_pb2.RefundReason),
    wallet_entry_kind=functools.partial(enum_name, transit_pb2.EntryKind),
    ledger_source=functools.partial(enum_name, ledger_pb2.EntrySource),
)

_STATUS = {
    Kind.UNAVAILABLE: 503,
    Kind.NOT_FOUND: 404,
    Kind.INVALID: 400,
    Kind.PRECONDITION: 409,
}


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    context.update(user=request.session.get("user"), csrf=csrf_token(request))
    return templates.TemplateResponse(request, template, context, status_code=status)


def refused(request: Request, error: DomainError) -> Response:
    status = _STATUS.get(error.kind, 502)
    return render(request, "error.html", status, error=error)


async def checked_form(request: Request) -> FormData | None:
    """The POSTed form, or None when its CSRF token is missing or not this session's."""
    form = await request.form()
    sent = str(form.get("csrf", ""))
    expected = request.session.get("csrf", "")
    if not sent or not expected or not secrets.compare_digest(sent, str(expected)):
        return None
    return form


def csrf_refused(request: Request) -> Response:
    return render(request, "forbidden.html", 403)


Page = Callable[[Request], Awaitable[Response]]


def signed_in(endpoint: Page) -> Page:
    """Send anyone not signed in to the sign-in page, and back here afterwards."""

    async def guarded(request: Request) -> Response:
        if not request.session.get("user"):
            target = quote(
                request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
            return RedirectResponse(f"/login?next={target}", status_code=303)
        try:
            return await endpoint(request)
        except DomainError as exc:
            return refused(request, exc)

    return guarded


def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def _now(request: Request) -> dt.datetime:
    """Now on the suite's clock (the test clock in tests and demos)."""
    clock: Clock = request.app.state.clock
    return clock.now()


def _wall(request: Request) -> dt.datetime:
    """Now on the wall clock, which the card service stamps sagas with."""
    clock: Clock = request.app.state.wall
    return clock.now()


# --- sign-in ------------------------------------------------------------------------------------


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def login_form(request: Request) -> Response:
    return render(request, "login.html", next=_safe_next(request.query_params.get("next", "/")))


async def login(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    name = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "/")))
    store: UserStore = request.app.state.users
    if not name or not await run_in_threadpool(store.verify, name, password):
        return render(request, "login.html", 401, next=target, failed=True, username=name[:64])
    request.session.clear()  # a new session (and CSRF token) for the signed-in user
    request.session["user"] = name
    csrf_token(request)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    if await checked_form(request) is None:
        return csrf_refused(request)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


# --- pages --------------------------------------------------------------------------------------


@signed_in
async def overview(request: Request) -> Response:
    context = await run_in_threadpool(
        views.overview, _backend(request), _now(request), _wall(request)
    )
    return render(request, "overview.html", **context)


@signed_in
async def saga_list(request: Request) -> Response:
    query = dict(request.query_params)
    context = await run_in_threadpool(views.sagas, _backend(request), query, _wall(request))
    return render(request, "sagas.html", **context)


@signed_in
async def saga_page(request: Request) -> Response:
    saga_id = request.path_params["saga_id"]
    context = await run_in_threadpool(views.saga, _backend(request), saga_id)
    done = request.query_params.get("done", "")
    return render(request, "saga.html", done=done if done in SAGA_ACTIONS else "", **context)


@dataclass(frozen=True)
class SagaAction:
    """An operator's action on a saga that waits for one, behind a confirmation."""

    title: str
    button: str
    explanation: str
    run: Callable[[Backend, str, str, str], card_pb2.Saga]  # (backend, rid, saga, operator)


SAGA_ACTIONS = {
    "retry": SagaAction(
        "Retry now",
        "Retry the saga now",
        "The saga takes up its step again at once, its retries counted afresh. Use it once the "
        "service it waited for answers again.",
        Backend.retry_saga,
    ),
    "compensate": SagaAction(
        "Compensate",
        "Undo the saga's steps",
        "The saga gives up: what its completed steps did on the other services is undone, in "
        "reverse, and it ends FAILED (reason OPERATOR_COMPENSATED). The step it was stuck on "
        "never answered and is not undone. This cannot be taken back.",
        Backend.compensate_saga,
    ),
}


def _saga_action(request: Request) -> SagaAction:
    found = SAGA_ACTIONS.get(request.path_params["action"])
    if found is None:
        raise DomainError("ACTION_UNKNOWN", "no such action on a saga", kind=Kind.NOT_FOUND)
    return found


@signed_in
async def saga_action_form(request: Request) -> Response:
    action = _saga_action(request)
    context = await run_in_threadpool(views.saga, _backend(request), request.path_params["saga_id"])
    return render(
        request, "saga_action.html", action=action, request_id=secrets.token_hex(8), **context
    )


@signed_in
async def saga_action(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    action = _saga_action(request)
    name = request.path_params["action"]
    saga_id = request.path_params["saga_id"]
    if form.get("confirm") != "yes":
        context = await run_in_threadpool(views.saga, _backend(request), saga_id)
        return render(
            request,
            "saga_action.html",
            400,
            action=action,
            request_id=str(form.get("request_id", "")),
            problem="Tick the confirmation to go on.",
            **context,
        )
    user = str(request.session["user"])
    rid = _request_id(form, name, saga_id)
    await run_in_threadpool(action.run, _backend(request), rid, saga_id, user)
    log.info("saga %s: %s by %s", saga_id, name, user)
    return RedirectResponse(f"/sagas/{quote(saga_id, safe='')}?done={name}", status_code=303)


@signed_in
async def deadline_list(request: Request) -> Response:
    query = dict(request.query_params)
    context = await run_in_threadpool(views.deadlines, _backend(request), query, _now(request))
    return render(request, "deadlines.html", **context)


@signed_in
async def alert_list(request: Request) -> Response:
    query = dict(request.query_params)
    context = await run_in_threadpool(views.alerts, _backend(request), query)
    return render(request, "alerts.html", done=query.get("done", ""), **context)


@signed_in
async def alert_resolve_form(request: Request) -> Response:
    alert_id = request.path_params["alert_id"]
    found = await run_in_threadpool(views.alert, _backend(request), alert_id)
    if found is None:
        raise DomainError("ALERT_NOT_FOUND", "no such alert", kind=Kind.NOT_FOUND)
    return render(request, "resolve.html", alert=found, request_id=secrets.token_hex(8))


def _request_id(form: FormData, action: str, target: str) -> str:
    """The form's own idempotency key: submitting the same form twice acts once."""
    sent = str(form.get("request_id", ""))[:32] or secrets.token_hex(8)
    return f"console:{action}:{target}:{sent}"


@signed_in
async def alert_resolve(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    alert_id = request.path_params["alert_id"]
    note = str(form.get("note", "")).strip()
    if not note or len(note) > NOTE_MAX or form.get("confirm") != "yes":
        found = await run_in_threadpool(views.alert, _backend(request), alert_id)
        return render(
            request,
            "resolve.html",
            400,
            alert=found,
            request_id=str(form.get("request_id", "")),
            problem=f"Write a note of 1 to {NOTE_MAX} characters and confirm.",
        )
    rid = _request_id(form, "resolve", alert_id)
    user = str(request.session["user"])
    await run_in_threadpool(_backend(request).resolve_alert, rid, alert_id, note, user)
    return RedirectResponse(f"/alerts?done={quote(alert_id)}", status_code=303)


@signed_in
async def alert_assign(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return csrf_refused(request)
    alert_id = request.path_params["alert_id"]
    rid = _request_id(form, "assign", alert_id)
    user = str(request.session["user"])
    await run_in_threadpool(_backend(request).assign_alert, rid, alert_id, user)
    return RedirectResponse("/alerts", status_code=303)


@signed_in
async def refund_list(request: Request) -> Response:
    query = dict(request.query_params)
    context = await run_in_threadpool(views.refunds, _backend(request), query)
    return render(request, "refunds.html", **context)


@signed_in
async def card_search(request: Request) -> Response:
    card_id = request.query_params.get("card_id", "").strip()
    if not card_id:
        return render(request, "card_search.html")
    return RedirectResponse(f"/cards/{quote(card_id, safe='')}", status_code=303)


@signed_in
async def card_page(request: Request) -> Response:
    card_id = request.path_params["card_id"]
    context = await run_in_threadpool(views.card, _backend(request), card_id)
    return render(request, "card.html", **context)


def create_app(config: ConsoleConfig, backend: Backend | None = None) -> Starlette:
    """The console for ``config``; ``backend`` defaults to the services the config names."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        app.state.backend.close()

    routes = [
        Route("/", overview),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/sagas", saga_list),
        Route("/sagas/{saga_id}", saga_page),
        Route("/sagas/{saga_id}/{action}", saga_action_form, methods=["GET"]),
        Route("/sagas/{saga_id}/{action}", saga_action, methods=["POST"]),
        Route("/deadlines", deadline_list),
        Route("/alerts", alert_list),
        Route("/alerts/{alert_id}/resolve", alert_resolve_form, methods=["GET"]),
        Route("/alerts/{alert_id}/resolve", alert_resolve, methods=["POST"]),
        Route("/alerts/{alert_id}/assign", alert_assign, methods=["POST"]),
        Route("/refunds", refund_list),
        Route("/cards", card_search),
        Route("/cards/{card_id}", card_page),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=config.session_key.hex(),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_SECONDS,
            same_site="strict",
            https_only=config.production,
        )
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.backend = backend or Backend(config.targets, config.credential, config.client_tls())
    app.state.users = UserStore(config.users_file)
    app.state.clock = config.clock()
    app.state.wall = SystemClock()
    return app
