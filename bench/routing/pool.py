"""The node pool and the proxy under test, as subprocesses (so that they run on their own cores).

The nodes differ the way operators do, and each punishes a different naive strategy:

    node         TTFT    tokens/s   capacity    errors      price in / out (micro-USD per M tokens)
    fast-dear     40 ms     150        16         -          600,000 / 2,000,000
    slow-cheap   300 ms      40     unlimited     -          100,000 /   400,000
    small         60 ms     120         2         -          300,000 / 1,000,000
    flaky         50 ms     150     unlimited   20% (503)    300,000 / 1,000,000

Beyond its capacity a node queues requests (FIFO), as vLLM does when its batch is full.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

MODEL = "atoma/bench-chat"
CLI = [sys.executable, "-m", "atoma_proxy.cli"]


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    ttft_ms: float
    tokens_per_second: float
    max_concurrency: int
    error_rate: float
    input_price: int
    output_price: int


POOL = (
    NodeSpec("fast-dear", 40, 150, 16, 0.0, 600_000, 2_000_000),
    NodeSpec("slow-cheap", 300, 40, 0, 0.0, 100_000, 400_000),
    NodeSpec("small", 60, 120, 2, 0.0, 300_000, 1_000_000),
    NodeSpec("flaky", 50, 150, 0, 0.2, 300_000, 1_000_000),
)
PRICES = {n.node_id: (n.input_price, n.output_price) for n in POOL}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen[bytes], attempts: int = 400) -> None:
    for _ in range(attempts):
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} never became ready")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Pool:
    """The simulated nodes (started once for the whole benchmark) and a work directory."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="atoma-routing-bench-"))
        self.urls: dict[str, str] = {}
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for spec in POOL:
            port = free_port()
            args = [
                "node-sim",
                "--port", str(port),
                "--node-id", spec.node_id,
                "--chat-model", MODEL,
                "--ttft-ms", str(spec.ttft_ms),
                "--tokens-per-second", str(spec.tokens_per_second),
                "--max-concurrency", str(spec.max_concurrency),
                "--error-rate", str(spec.error_rate),
                "--error-status", "503",
                "--seed", "7",
            ]  # fmt: skip
            log = (self.dir / f"{spec.node_id}.log").open("wb")
            self._processes.append(subprocess.Popen([*CLI, *args], stdout=log, stderr=subprocess.STDOUT))
            self.urls[spec.node_id] = f"http://127.0.0.1:{port}"
        for process, url in zip(self._processes, self.urls.values(), strict=True):
            _wait_http(f"{url}/health", process)

    def config(self, strategy: str, core_port: int) -> Path:
        text = f"""\
[core]
listen = "127.0.0.1:{core_port}"
health_interval = 1.0

[routing]
strategy = "{strategy}"
metrics_interval = 1.0
seed = 11

[ledger]
enabled = false
"""
        for spec in POOL:
            text += (
                f'\n[[nodes]]\nid = "{spec.node_id}"\nurl = "{self.urls[spec.node_id]}"\nmodels = ["{MODEL}"]\n'
                f"input_price_per_million = {spec.input_price}\noutput_price_per_million = {spec.output_price}\n"
            )
        path = self.dir / f"{strategy}.toml"
        path.write_text(text)
        return path

    def env(self, config: Path | None = None) -> dict[str, str]:
        env = {**os.environ, "ATOMA_DATABASE__URL": f"sqlite:///{self.dir / 'bench.db'}"}
        if config is not None:
            env["ATOMA_CONFIG"] = str(config)
        return env

    def api_key(self) -> str:
        result = subprocess.run(
            [*CLI, "keys", "create", "--email", "bench@atoma.test"],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def stop(self) -> None:
        for process in self._processes:
            _stop(process)


class Core:
    """`atoma-proxy core` with one strategy, fresh (nothing learnt) for every run."""

    def __init__(self, pool: Pool, strategy: str) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        config = pool.config(strategy, self.port)
        log = (pool.dir / f"core-{strategy}.log").open("ab")
        self._process = subprocess.Popen([*CLI, "core"], env=pool.env(config), stdout=log, stderr=subprocess.STDOUT)

    async def wait_ready(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(400):
                if self._process.poll() is not None:
                    raise RuntimeError(f"the core exited with {self._process.returncode}")
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("the core never became ready")

    def stop(self) -> None:
        _stop(self._process)
