"""Fixtures of the reliability tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.deployment import Deployment
from tests.trust import TestTrust


@pytest.fixture
def deployment(
    start_service: Callable[..., Any],
    service_env: dict[str, str],
    token: Callable[..., Any],
    trust: TestTrust,
    tmp_path: Path,
) -> Iterator[Deployment]:
    deployed = Deployment(start_service, service_env, token, trust, tmp_path)
    yield deployed
    deployed.stop()
