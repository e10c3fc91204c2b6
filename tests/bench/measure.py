"""What the benchmarks measure with, shared by them all.

- ``load``: a ``grpc.aio`` client in this process keeping N calls in flight for a warm-up, then
  for the measured seconds; calls/s, p50, p99 and errors of the measured part only.
- ``h2load``: Debian's compiled HTTP/2 load generator on a prebuilt request (every request the
  same body), latencies from its log file.
- ``cpu_seconds`` / ``rss_kib``: user + system CPU and resident memory of a process and its
  worker processes, from /proc.
- ``Servers``: processes started for a run and stopped (SIGTERM, then SIGKILL) afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from services.platform.config import REPO_ROOT

TICK = os.sysconf("SC_CLK_TCK")
# How long a service may take to report SERVING: minutes, not seconds, on a machine shared
# with other work (a run must not fail because the machine is busy).
STARTUP_SECONDS = 300.0
PER_CONNECTION = 8  # calls in flight per client connection (h2load -m, aio channels)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as found:
            return [int(c) for c in found.read().split()]
    except FileNotFoundError:
        return []


def tree(pid: int) -> list[int]:
    """A process and its descendants (a service's supervisor and its worker processes)."""
    return [pid, *(p for child in _children(pid) for p in tree(child))]


def cpu_seconds(pid: int, whole_tree: bool = True) -> float:
    """User + system CPU time so far of a process and (``whole_tree``) its descendants."""
    total = 0.0
    for each in tree(pid) if whole_tree else [pid]:
        try:
            with open(f"/proc/{each}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def rss_kib(pid: int) -> int:
    """Resident memory (VmRSS) of a process and its descendants, in KiB."""
    total = 0
    for each in tree(pid):
        try:
            with open(f"/proc/{each}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


@dataclass
class Result:
    calls: int
    seconds: float
    latencies: list[float]  # seconds
    errors: Counter[str] = field(default_factory=Counter)
    cpu_ms_per_call: dict[str, float] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)  # peak during the measured part

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self, label: str, in_flight: int) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        cpu = ", ".join(f"{n} {ms:.2f}" for n, ms in self.cpu_ms_per_call.items())
        return (
            f"{label:<34} {in_flight:>3} in flight: {self.per_second:>7,.0f} calls/s  "
            f"p50 {self.percentile_ms(0.5):6.1f} ms  p99 {self.percentile_ms(0.99):6.1f} ms  "
            f"errors: {errors}\n{'':<34} CPU ms per call: {cpu}"
        )


class Probe:
    """CPU per call and peak resident memory of the given processes over a measured part."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self._peak = {name: rss_kib(pid) for name, pid in pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            for name, pid in self.pids.items():
                self._peak[name] = max(self._peak[name], rss_kib(pid))

    def finish(self, result: Result) -> Result:
        self._stop.set()
        self._thread.join()
        calls = max(result.calls, 1)
        for name, pid in self.pids.items():
            spent = cpu_seconds(pid) - self._before[name]
            result.cpu_ms_per_call[name] = 1000 * spent / calls
            result.rss_mib[name] = self._peak[name] / 1024
        return result


Call = Callable[[Any], Awaitable[object]]


async def run_for(
    target: str,
    make_call: Callable[[grpc.aio.Channel], Call],
    in_flight: int,
    seconds: float,
    errors: Counter[str],
    latencies: list[float],
) -> int:
    # One connection per 8 calls in flight (own subchannels): with several server processes on
    # one port, the kernel spreads connections, not calls, over them.
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, in_flight // PER_CONNECTION))
    ]
    calls = [make_call(channel) for channel in channels]
    stop_at = time.perf_counter() + seconds
    done = 0

    async def worker(call: Call) -> None:
        nonlocal done
        while (began := time.perf_counter()) < stop_at:
            try:
                await call(None)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(time.perf_counter() - began)
            done += 1

    try:
        await asyncio.gather(*(worker(calls[i % len(calls)]) for i in range(in_flight)))
    finally:
        for channel in channels:
            await channel.close(None)
    return done


def load(
    target: str,
    make_call: Callable[[grpc.aio.Channel], Call],
    in_flight: int,
    seconds: float,
    warmup: float,
    pids: dict[str, int],
) -> Result:
    """Keep ``in_flight`` calls going for ``warmup`` then ``seconds``; the measured part's
    figures, with CPU per call of ``pids`` and of this client process."""
    if warmup > 0:
        asyncio.run(run_for(target, make_call, in_flight, warmup, Counter(), []))
    probe = Probe(pids)
    client_before = cpu_seconds(os.getpid(), whole_tree=False)
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    started = time.perf_counter()
    done = asyncio.run(run_for(target, make_call, in_flight, seconds, errors, latencies))
    result = Result(done, time.perf_counter() - started, latencies, errors)
    probe.finish(result)
    spent = cpu_seconds(os.getpid(), whole_tree=False) - client_before
    result.cpu_ms_per_call["client"] = 1000 * spent / max(done, 1)
    return result


def grpc_body(message: Any) -> bytes:
    """A unary gRPC request as sent on the wire: not compressed, length, message."""
    payload = message.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def h2load_available() -> bool:
    return shutil.which("h2load") is not None


def h2load(
    url: str,
    body: bytes,
    headers: Sequence[tuple[str, str]],
    in_flight: int,
    seconds: int,
    warmup: int,
    pids: dict[str, int],
) -> Result:
    """``h2load`` with ``in_flight`` calls (connections of 8 streams); every request is
    ``body``. h2load sees HTTP status only: a gRPC refusal (HTTP 200, grpc-status in the
    trailers) counts as done, so check one call by hand before trusting the figure."""
    connections = max(1, in_flight // PER_CONNECTION)
    with tempfile.TemporaryDirectory(prefix="sscard-h2load-") as tmp:
        body_file, log_file = Path(tmp) / "body.bin", Path(tmp) / "latency.tsv"
        body_file.write_bytes(body)
        command = [
            "h2load", "-t", "1", "-c", str(connections), "-m", str(in_flight // connections),
            "-D", f"{seconds}s", "--warm-up-time", f"{warmup}s", "-d", str(body_file),
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            "--log-file", str(log_file),
        ]  # fmt: skip
        for name, value in headers:
            command += ["-H", f"{name}: {value}"]
        probe = Probe(pids)
        out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
        latencies, failed = [], 0
        for row in log_file.read_text().splitlines():
            parts = row.split("\t")
            if len(parts) >= 3:
                if parts[1] != "200":
                    failed += 1
                latencies.append(int(parts[-1]) / 1e6)
    succeeded = re.search(r"(\d+) succeeded", out)
    calls = int(succeeded.group(1)) if succeeded else len(latencies)
    errors: Counter[str] = Counter({"HTTP_NOT_200": failed} if failed else {})
    return probe.finish(Result(calls, float(seconds), latencies, errors))


class Servers:
    """Server processes of one run, by name; all stopped when the ``with`` ends."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *module_args: str) -> int:
        proc = subprocess.Popen([sys.executable, "-m", *module_args], cwd=REPO_ROOT, env=self.env)
        self.procs[name] = proc
        return proc.pid

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_ready(target: str, timeout: float = STARTUP_SECONDS) -> None:
    """Until a server listens on ``target``."""
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)
