"""The Node.js example (examples/node) against real services: credentials from files, an
application watched to its end through a lost stream, a top-up retried after its deadline with
the same request id, and two refusals decoded from ``grpc-status-details-bin``."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.examples import example_env
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
    assert lines[0] == "registered: 1 person"
    assert re.fullmatch(r"applied: card card-\w+, saga saga-\w+", lines[1])
    events = [int(m[1]) for line in lines if (m := re.match(r"event (\d+): ", line))]
    assert events == list(range(1, len(events) + 1)), "an event was lost or repeated"
    assert "stream lost after sequence 1; resuming" in lines
    assert [line for line in lines if line.startswith("event ")][-1].endswith("COMPLETED completed")
    assert "card status: ACTIVE" in lines
    assert "balance: 50.00 yuan (5000 fen)" in lines
    assert "malformed: INVALID_ARGUMENT INVALID_DOCUMENT rule A4.1" in lines
    assert any(line.startswith("  field applicant.document.number: ") for line in lines)
    assert "second card: FAILED_PRECONDITION ALREADY_HAS_CARD rule A4.2" in lines
    assert lines[-1] == "done"
