"""Fixtures for the card scenarios: a running identity, bank and card suite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.cardsuite import Suite


@pytest.fixture
def suite(start_service: Callable[..., Any], token: Callable[..., Any]) -> Suite:
    return Suite(start_service, token)
