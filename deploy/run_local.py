"""Local supervisor behind `make run`: the whole suite on one machine.

Creates development secrets under var/ (once: keys, and a development CA with a certificate per
service and per registered client under var/tls/, so the suite runs with mutual TLS), migrates
each service's database, starts the four services as child processes, waits until each answers
its health check SERVING, then starts the operations console (http://127.0.0.1:8080; its
development user is created with a random password printed once), prints the addresses, and
runs until Ctrl-C or SIGTERM, when it stops them all gracefully (SIGTERM, then SIGKILL after
the drain and grace periods). A service that exits is restarted, with a growing delay, and the
restart is printed; a service that keeps crashing stops the suite. Children also receive
SIGTERM if this process dies, so nothing is left running. `--migrate-only` stops after the
migrations.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from console import config as console_settings
from console.users import DEV_USER, ensure_dev_user
from services.platform import config as settings
from services.platform.cli import dev_client_tls, ensure_dev_secrets
from services.platform.cli import main as sscard
from services.platform.clients import open_channel
from services.platform.processes import Backoff, die_with_parent

CONSOLE = "console"  # the operations console's package, started after the services


def _serving(target: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with open_channel(target, dev_client_tls(console_settings.CLIENT_ID)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return False


def _answers(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


def _stop(children: dict[str, subprocess.Popen[bytes]], grace: float) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace + 5
    for name, child in children.items():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", flush=True)
            child.kill()
            child.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--migrate-only", action="store_true")
    args = parser.parse_args()

    ensure_dev_secrets()
    if sscard(["migrate"]) != 0:
        return 1
    if args.migrate_only:
        return 0

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # Readable log lines in a terminal, JSON lines when the output is collected.
    os.environ.setdefault("SSCARD_LOG_FORMAT", "text" if sys.stdout.isatty() else "json")
    children: dict[str, subprocess.Popen[bytes]] = {}
    grace = float(os.environ.get("SSCARD_SHUTDOWN_GRACE_SECONDS", "5")) + float(
        os.environ.get("SSCARD_DRAIN_SECONDS", "5")
    )
    # In the child, before exec: SIGTERM when this supervisor dies.
    orphan_guard = functools.partial(die_with_parent, os.getpid())

    def launch(name: str) -> subprocess.Popen[bytes]:
        module = name if name == CONSOLE else f"services.{name}"
        return subprocess.Popen([sys.executable, "-m", module], preexec_fn=orphan_guard)

    backoff = {name: Backoff() for name in (*settings.SERVICES, CONSOLE)}
    restart_at: dict[str, float] = {}
    try:
        for name in settings.SERVICES:
            children[name] = launch(name)
        for name in settings.SERVICES:
            target = settings.target_of(name)
            if not _serving(target, timeout=30):
                print(f"{name} did not become SERVING at {target}; stopping", flush=True)
                return 1
        console = console_settings.load()
        password = ensure_dev_user(console.users_file)
        children[CONSOLE] = launch(CONSOLE)
        console_url = f"http://{console.host}:{console.port}"
        if not _answers(console_url + "/login", timeout=30):
            print(f"the console did not answer at {console_url}; stopping", flush=True)
            return 1
        print("\nsscard is up:", flush=True)
        for name in settings.SERVICES:
            metrics = settings.load(name).metrics_port
            where = f"metrics :{metrics}/metrics" if metrics else "metrics off"
            print(f"  {name:<9} {settings.target_of(name)}  SERVING  {where}", flush=True)
        print(f"  console   {console_url}", flush=True)
        if password:
            print(f"            sign in as {DEV_USER!r} with password {password!r}", flush=True)
        else:
            print(
                f"            sign in as {DEV_USER!r} (password printed when "
                f"{console.users_file} was made; delete it for a new one)",
                flush=True,
            )
        print(
            "\nTry:  .venv/bin/sscard call identity ListPersonEvents   (as the ops console)"
            "\nStop: Ctrl-C\n",
            flush=True,
        )
        while not stop.wait(0.5):
            now = time.monotonic()
            for name, child in children.items():
                if name in restart_at:
                    if now >= restart_at[name]:
                        del restart_at[name]
                        children[name] = launch(name)
                        print(f"{name} restarted", flush=True)
                    continue
                if child.poll() is None:
                    continue
                delay = backoff[name].crashed(now)
                if delay is None:
                    print(
                        f"{name} exited with {child.returncode} and keeps crashing "
                        f"({backoff[name].recent} times in {backoff[name].window:.0f}s); stopping",
                        flush=True,
                    )
                    return 1
                print(
                    f"{name} exited with {child.returncode}; restarting it in {delay:.1f}s "
                    f"(restart {backoff[name].restarts})",
                    flush=True,
                )
                restart_at[name] = now + delay
        print("stopping sscard ...", flush=True)
        return 0
    finally:
        _stop(children, grace)


if __name__ == "__main__":
    sys.exit(main())
