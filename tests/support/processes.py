"""Starting the real `atoma-proxy` commands as subprocesses for black-box tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

ATOMA_PROXY = [sys.executable, "-m", "atoma_proxy.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_command(*args: str, env: dict[str, str] | None = None) -> str:
    """Run `atoma-proxy ARGS...` to completion and return its standard output."""
    result = subprocess.run(
        [*ATOMA_PROXY, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise AssertionError(f"atoma-proxy {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path, attempts: int = 600) -> None:
    for _ in range(attempts):
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{url} never became ready:\n{log.read_text()}")


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`atoma-proxy ARGS...` started in the background, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [*ATOMA_PROXY, *args], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s; a process that already exited is left as it is."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_grpc_serving(target: str, process: subprocess.Popen[bytes], log: Path, attempts: int = 600) -> None:
    """Until the core at `target` answers its gRPC health check SERVING (about 30 s at most)."""
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(attempts):
            if process.poll() is not None:
                raise AssertionError(f"core exited with {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(grpc.RpcError):
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.05)
    raise AssertionError(f"core at {target} never served:\n{log.read_text()}")


@contextlib.contextmanager
def running(
    args: list[str], *, ready_url: str | None, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`atoma-proxy ARGS...` running until the block ends; waited for when `ready_url` is given."""
    process = spawn(args, log, env)
    try:
        if ready_url is not None:
            wait_until_ready(ready_url, process, log)
        yield process
    finally:
        stop(process)
