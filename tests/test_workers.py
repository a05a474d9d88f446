"""`atoma-proxy core|facade --workers 2`: real processes sharing one port, stopped together."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.support.databases import temporary_database_sync
from tests.support.processes import (
    ATOMA_PROXY,
    free_port,
    run_command,
    running,
    spawn,
    stop,
    wait_grpc_serving,
    wait_until_ready,
)

pytestmark = pytest.mark.slow

CHAT = "atoma/sim-chat"


@dataclass(frozen=True)
class Setup:
    tmp: Path
    env: dict[str, str]  # configuration file, SQLite database, ledger off
    api_key: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("workers")
    port = free_port()
    node = f"http://127.0.0.1:{port}"
    sim = ["node-sim", "--port", str(port), "--node-id", "sim", "--chat-model", CHAT]
    config = tmp / "config.toml"
    config.write_text(f"[[nodes]]\nid = 'sim'\nurl = '{node}'\nmodels = ['{CHAT}']\n")
    with running(sim, ready_url=f"{node}/health", log=tmp / "sim.log"), temporary_database_sync("sqlite") as url:
        env = {"ATOMA_CONFIG": str(config), "ATOMA_DATABASE__URL": url, "ATOMA_LEDGER__ENABLED": "false"}
        yield Setup(tmp, env, run_command("keys", "create", "--email", "workers@atoma.test", env=env).strip())


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _connections(pid: int, *, local_port: int | None = None, remote_port: int | None = None) -> int:
    """Established TCP connections of process `pid` on the given local or remote port."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] != "01" or fields[9] not in inodes:  # 01: ESTABLISHED
                continue
            count += local == local_port or remote == remote_port
    return count


def _holds_connection(pid: int, port: int) -> bool:
    return _connections(pid, local_port=port) > 0


def _until_every_worker_serves(
    connect: Callable[[], AbstractContextManager[None]], workers: list[int], port: int
) -> None:
    """Opens connections, keeping them open, until every worker holds one (the kernel spreads them)."""
    with ExitStack() as connections:
        for _ in range(400):
            connections.enter_context(connect())
            if all(_holds_connection(pid, port) for pid in workers):
                return
    raise AssertionError(f"not every worker of {workers} accepted a connection on port {port}")


@contextlib.contextmanager
def _grpc_connection(target: str) -> Iterator[None]:
    # A channel of its own: channels of one process otherwise share their connections.
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield


@contextlib.contextmanager
def _http_connection(url: str) -> Iterator[None]:
    with httpx.Client() as client:
        client.get(url).raise_for_status()
        yield


def _wait_for_log(log: Path, text: str, count: int) -> None:
    for _ in range(600):
        if log.read_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged {count} times:\n{log.read_text()}")


def _terminate(process: subprocess.Popen[bytes], log: Path) -> int:
    process.terminate()
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running a minute after SIGTERM:\n{log.read_text()}") from None


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie is gone too
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_core_workers_share_the_port_and_stop_on_sigterm(setup: Setup, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "core.log"
    target = f"127.0.0.1:{port}"
    with temporary_database_sync("sqlite", migrate=False) as url:  # `--migrate` creates the schema, once
        env = {**setup.env, "ATOMA_DATABASE__URL": url, "ATOMA_CORE__LISTEN": target}
        core = spawn(["core", "--workers", "2", "--migrate"], log, env)
        try:
            wait_grpc_serving(target, core, log)
            workers = _children(core.pid)
            assert len(workers) == 2
            _until_every_worker_serves(lambda: _grpc_connection(target), workers, port)

            api_key = run_command("keys", "create", "--email", "core-workers@atoma.test", env=env).strip()
            request = pb.ChatCompletionRequest(
                model=CHAT, messages=[chat_pb2.ChatMessage(role="user", text="hello")], max_tokens=2
            )
            with grpc.insecure_channel(target) as channel:
                call = pb_grpc.RoutingServiceStub(channel).ChatCompletion(
                    request, metadata=(("authorization", f"Bearer {api_key}"),), timeout=30
                )
                assert [event.WhichOneof("event") for event in call] == ["completion", "end"]

            core.send_signal(signal.SIGHUP)  # passed on: every worker reloads its nodes
            _wait_for_log(log, "node configuration reloaded", 2)
            assert core.poll() is None

            assert _terminate(core, log) == 0, log.read_text()
            assert all(_gone(pid) for pid in workers)
        finally:
            stop(core)


def test_facade_workers_share_the_port_and_stop_on_sigterm(setup: Setup, tmp_path: Path) -> None:
    core_target, facade_port = f"127.0.0.1:{free_port()}", free_port()
    facade_url, log = f"http://127.0.0.1:{facade_port}", tmp_path / "facade.log"
    env = {
        **setup.env,
        "ATOMA_CORE__LISTEN": core_target,
        "ATOMA_FACADE__CORE_TARGET": core_target,
        "ATOMA_FACADE__PORT": str(facade_port),
    }
    with running(["core"], ready_url=None, log=tmp_path / "core.log", env=env) as core:
        wait_grpc_serving(core_target, core, tmp_path / "core.log")
        facade = spawn(["facade", "--workers", "2"], log, env)
        try:
            wait_until_ready(f"{facade_url}/health", facade, log)
            workers = _children(facade.pid)
            assert len(workers) == 2
            _until_every_worker_serves(lambda: _http_connection(f"{facade_url}/health"), workers, facade_port)

            answer = httpx.post(
                f"{facade_url}/v1/chat/completions",
                json={"model": CHAT, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2},
                headers={"authorization": f"Bearer {setup.api_key}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["usage"]["completion_tokens"] == 2

            assert _terminate(facade, log) == 0, log.read_text()
            assert all(_gone(pid) for pid in workers)
        finally:
            stop(facade)


def test_the_facade_spreads_calls_over_its_core_connections(setup: Setup, tmp_path: Path) -> None:
    core_port, facade_port = free_port(), free_port()
    core_target, facade_url = f"127.0.0.1:{core_port}", f"http://127.0.0.1:{facade_port}"
    env = {
        **setup.env,
        "ATOMA_CORE__LISTEN": core_target,
        "ATOMA_FACADE__CORE_TARGET": core_target,
        "ATOMA_FACADE__PORT": str(facade_port),
        "ATOMA_FACADE__CORE_CONNECTIONS": "3",
    }
    with (
        running(["core"], ready_url=None, log=tmp_path / "core.log", env=env) as core,
        running(["facade"], ready_url=None, log=tmp_path / "facade.log", env=env) as facade,
    ):
        wait_grpc_serving(core_target, core, tmp_path / "core.log")
        wait_until_ready(f"{facade_url}/health", facade, tmp_path / "facade.log")
        for _ in range(6):
            answer = httpx.post(
                f"{facade_url}/v1/chat/completions",
                json={"model": CHAT, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2},
                headers={"authorization": f"Bearer {setup.api_key}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
        # One connection each: behind `core --workers N`, SO_REUSEPORT gives them to different workers.
        assert _connections(facade.pid, remote_port=core_port) == 3


def test_a_crashed_worker_stops_the_others(setup: Setup, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "core.log"
    target = f"127.0.0.1:{port}"
    core = spawn(["core", "--workers", "2"], log, {**setup.env, "ATOMA_CORE__LISTEN": target})
    try:
        wait_grpc_serving(target, core, log)
        crashed, survivor = _children(core.pid)
        os.kill(crashed, signal.SIGKILL)
        assert core.wait(timeout=60) != 0
        assert _gone(survivor), log.read_text()
        assert "exited with status -9" in log.read_text()
    finally:
        stop(core)


def test_workers_stop_when_the_parent_is_killed(setup: Setup, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "core.log"
    target = f"127.0.0.1:{port}"
    core = spawn(["core", "--workers", "2"], log, {**setup.env, "ATOMA_CORE__LISTEN": target})
    try:
        wait_grpc_serving(target, core, log)
        workers = _children(core.pid)
        core.kill()
        core.wait()
        for _ in range(600):
            if all(_gone(pid) for pid in workers):
                break
            time.sleep(0.05)
        assert all(_gone(pid) for pid in workers), log.read_text()
        assert log.read_text().count("the parent process is gone") == 2
    finally:
        stop(core)


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [("core", "ATOMA_CORE__LISTEN", "127.0.0.1:0"), ("facade", "ATOMA_FACADE__PORT", "0")],
)
def test_workers_need_a_fixed_port(setup: Setup, command: str, variable: str, value: str) -> None:
    result = subprocess.run(
        [*ATOMA_PROXY, command, "--workers", "2"],
        env={**os.environ, **setup.env, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "workers need a fixed TCP port" in result.stderr
