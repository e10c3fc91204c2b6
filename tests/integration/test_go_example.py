"""The Go example (examples/go) against real services: built offline from Debian's Go packages,
it connects with the client certificate its credentials are bound to, follows an application
through a lost stream, retries a top-up after its deadline with the same request id, and
decodes two refusals' ``ErrorInfo`` and ``BadRequest``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.examples import assert_the_walk, example_env
from tests.trust import TestTrust

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "go"
BRANCH = "ICBC-GO-01"
GOCODE = Path("/usr/share/gocode/src")
TOOLS = ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")
# github.com/golang/protobuf v1.5 (registry.go) wraps google.golang.org/protobuf; grpc's codec
# cannot marshal the generated messages with v1.3.
LIBRARIES = (
    "google.golang.org/grpc",
    "google.golang.org/protobuf",
    "google.golang.org/genproto",
    "github.com/golang/protobuf/proto/registry.go",
)
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None] + [
    str(GOCODE / library) for library in LIBRARIES if not (GOCODE / library).exists()
]

# slow: the first build compiles grpc-go and its dependencies (about 20 s of CPU).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING),
        reason="the Go example builds from Debian's golang-go, protobuf-compiler, protoc-gen-go, "
        "protoc-gen-go-grpc, golang-google-grpc-dev, golang-google-protobuf-dev, "
        "golang-google-genproto-dev and golang-github-golang-protobuf-1-5-dev; "
        f"missing: {', '.join(MISSING)}",
    ),
]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's binary, built once (offline: GOPROXY=off, Debian's library sources)."""
    out = tmp_path_factory.mktemp("go-example")
    subprocess.run([str(EXAMPLE / "build.sh"), str(out)], check=True, timeout=600)
    return out / "sscard-example"


def test_the_go_example_applies_watches_tops_up_and_decodes_refusals(
    example: Path,
    start_service: Callable[..., Any],
    token: Callable[..., Any],
    trust: TestTrust,
    tmp_path: Path,
) -> None:
    env = example_env(start_service, token, trust, tmp_path, BRANCH)
    done = subprocess.run([str(example)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "top-up attempt 1: DEADLINE_EXCEEDED; retrying with the same request id" in lines
    assert_the_walk(lines)
