"""The wheel alone runs the suite: built from the sources, installed in a new venv with only
requirements.lock's packages (hashes checked), each service migrates and serves from it."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.platform.config import SERVICES
from tests.support import bound_port, wait_serving
from tests.trust import TestTrust

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# What the wheel is built from (setup.py generates gen/ from protos/).
SOURCES = ["pyproject.toml", "setup.py", "protos", "services", "console", "deploy/calendar"]


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without PYTHONPATH (this checkout) or any sscard setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSCARD_", "PYTHON"))}
    return {**env, **extra}


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_clean_env({}) if env is None else env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding the wheel and requirements.lock, nothing from this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = work / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", dist, src, cwd=work)  # fmt: skip
    (wheel,) = dist.glob("sscard-*.whl")
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=work)
    pip = venv / "bin" / "pip"
    _run(pip, "install", "-q", "--require-hashes", "-r", ROOT / "requirements.lock", cwd=work)
    _run(pip, "install", "-q", "--no-deps", wheel, cwd=work)
    return venv


def test_the_generated_code_and_the_services_come_from_the_wheel(venv: Path) -> None:
    where = _run(
        venv / "bin" / "python",
        "-c",
        "import sscard.card.v1.card_pb2 as c, services.card.main as s;"
        "print(c.__file__, s.__file__)",
        cwd=venv,
        env=_clean_env({}),
    )
    assert where.split() and all(path.startswith(str(venv)) for path in where.split())


@pytest.fixture
def service_settings(tmp_path: Path) -> Iterator[dict[str, str]]:
    trust = TestTrust(tmp_path / "auth")
    env = {
        **trust.env(),
        "SSCARD_DRAIN_SECONDS": "0",
        "SSCARD_SHUTDOWN_GRACE_SECONDS": "1",
    }
    for name in SERVICES:
        upper = name.upper()
        env[f"SSCARD_{upper}_PII_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
        env[f"SSCARD_{upper}_DB_URL"] = f"sqlite:///{tmp_path / name}.db"
        env[f"SSCARD_{upper}_PORT"] = "0"
        env[f"SSCARD_{upper}_METRICS_PORT"] = "0"
    yield env


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_migrates_and_serves_from_the_wheel(
    venv: Path, service_settings: dict[str, str], service: str, tmp_path: Path
) -> None:
    env = _clean_env(service_settings)
    _run(venv / "bin" / "sscard", "migrate", service, cwd=tmp_path, env=env)
    port_file = tmp_path / f"{service}.port"
    env[f"SSCARD_{service.upper()}_PORT_FILE"] = str(port_file)
    process = subprocess.Popen(
        [venv / "bin" / "python", "-m", f"services.{service}"], cwd=tmp_path, env=env
    )
    try:
        port = bound_port(port_file, process)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, timeout=60)  # readiness: database answers, at its head
    finally:
        process.terminate()
        process.wait(30)
    assert process.returncode == 0
