"""The console against the real services in-process: a running suite (tests/cardsuite.py), the
console configured as in a deployment (its own ``ops-console`` credential signed with the
development issuer's key, a user file, a session key) and a signed-in staff user."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from console import config as console_config
from console.app import create_app
from console.users import UserStore
from services.platform import tokens
from services.platform.auth import Channel, ClientKind, Role
from tests.cardsuite import Suite
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
