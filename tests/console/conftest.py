"""The console against the real services in-process: a running suite (tests/cardsuite.py), the
console configured as in a deployment (its own ``ops-console`` credential signed with the
development issuer's key, a user file, a session key) and a signed-in staff user; for the
browser tests, the console served over HTTP and a page of headless Debian chromium."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from console import config as console_config
from console.app import create_app
from console.users import UserStore
from services.platform import tokens
from services.platform.auth import Channel, ClientKind, Role
from tests.cardsuite import Suite
from tests.conftest import free_port
from tests.trust import TestTrust

STAFF = "wang"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def suite(start_service: Callable[..., Any], token: Callable[..., Any]) -> Suite:
    return Suite(start_service, token)


@pytest.fixture
def console_env(service_env: dict[str, str], trust: TestTrust, tmp_path: Path) -> dict[str, str]:
    """The console's environment: the ops-console client registered for the development
    issuer, as deploy/clients.toml has it, and a staff user."""
    issuer = console_config.DEV_ISSUER
    tokens.ensure_issuer(trust.key_file(issuer), trust.trust_dir, issuer)
    trust.register(
        console_config.CLIENT_ID,
        ClientKind.OPS_CONSOLE,
        {Channel.INTERNAL},
        {Role.OPS},
        issuers={issuer},
    )
    users = tmp_path / "console-users.json"
    UserStore(users).set_password(STAFF, PASSWORD)
    if trust.client_tls is not None:  # the services speak mutual TLS: the console's certificate
        own = trust.certificate(console_config.CLIENT_ID)
        service_env["SSCARD_CONSOLE_TLS_CERT_FILE"] = str(own.cert_file)
        service_env["SSCARD_CONSOLE_TLS_KEY_FILE"] = str(own.key_file)
    return {
        **service_env,
        "SSCARD_CONSOLE_SIGNING_KEY_FILE": str(trust.key_file(issuer)),
        "SSCARD_CONSOLE_USERS_FILE": str(users),
        "SSCARD_CONSOLE_SESSION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


@pytest.fixture
def console_app(suite: Suite, console_env: dict[str, str]) -> Starlette:
    return create_app(console_config.load(console_env))


@pytest.fixture
def client(console_app: Starlette) -> Iterator[TestClient]:
    with TestClient(console_app) as browser:
        yield browser


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def sign_in(client: TestClient, password: str = PASSWORD, user: str = STAFF) -> Any:
    form = client.get("/login")
    return client.post(
        "/login",
        data={"csrf": csrf_of(form.text), "username": user, "password": password, "next": "/"},
        follow_redirects=False,
    )


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    answer = sign_in(client)
    assert answer.status_code == 303
    return client


# --- a real browser (tests/console/test_browser*.py) ----------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium (apt-get install -y chromium; .ci/run installs it)",
)


@pytest.fixture
def console_url(console_app: Starlette) -> Iterator[str]:
    """The console served over HTTP on a free local port."""
    server = uvicorn.Server(
        uvicorn.Config(console_app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("the console did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(console_url: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=console_url, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(15_000)
        yield context.new_page()
        context.close()
        browser.close()


def browser_sign_in(page: Any, password: str = PASSWORD) -> None:
    """Sign in as the staff user through the browser."""
    page.goto("/")
    page.fill("input[name=username]", STAFF)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button:has-text('Sign in')")


def reload_until(page: Any, text: str, timeout: float = 30) -> None:
    """Reload the page (as staff would) until it shows ``text``."""
    deadline = time.monotonic() + timeout
    while text not in page.content():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} never appeared on {page.url}: {page.inner_text('main')}")
        time.sleep(0.5)
        page.reload()
