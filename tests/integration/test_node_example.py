"""The Node.js example (examples/node) against real services: credentials from files, an
application watched to its end through a lost stream, a top-up retried after its deadline with
the same request id, and two refusals decoded from ``grpc-status-details-bin``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.examples import assert_the_walk, example_env
from tests.trust import TestTrust

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"
BRANCH = "ICBC-NODE-01"
NODE, NPM = shutil.which("node"), shutil.which("npm")

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None, reason="the Node.js example needs `node` and `npm` on the PATH"
)


def installed() -> None:
    """The example's pinned packages (package-lock.json), installed once into its node_modules."""
    if (EXAMPLE / "node_modules" / ".package-lock.json").exists():
        return
    subprocess.run(
        [str(NPM), "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, check=True, timeout=600
    )


def test_the_node_example_applies_watches_tops_up_and_decodes_refusals(
    start_service: Callable[..., Any],
    token: Callable[..., Any],
    trust: TestTrust,
    tmp_path: Path,
) -> None:
    installed()
    env = example_env(start_service, token, trust, tmp_path, BRANCH)
    done = subprocess.run(
        [str(NODE), "client.js"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert_the_walk(lines)
