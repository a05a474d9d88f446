"""With workers, every worker's /metrics answers for all of them (PROMETHEUS_MULTIPROC_DIR, made by the parent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.support.databases import temporary_database_sync
from tests.support.processes import free_port, run_command, running, spawn, stop, wait_grpc_serving

pytestmark = pytest.mark.slow

CHAT = "atoma/sim-chat"
REQUESTS = 8


def _value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def _scrape(url: str) -> str:
    with httpx.Client() as client:  # a new connection each time: the kernel picks the worker
        response = client.get(url)
        response.raise_for_status()
        return response.text


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str, Path]]:
    tmp = tmp_path_factory.mktemp("workers-metrics")
    port = free_port()
    node = f"http://127.0.0.1:{port}"
    config = tmp / "config.toml"
    config.write_text(f"[[nodes]]\nid = 'sim'\nurl = '{node}'\nmodels = ['{CHAT}']\n")
    sim = ["node-sim", "--port", str(port), "--node-id", "sim", "--chat-model", CHAT]
    with running(sim, ready_url=f"{node}/health", log=tmp / "sim.log"), temporary_database_sync("sqlite") as url:
        env = {"ATOMA_CONFIG": str(config), "ATOMA_DATABASE__URL": url, "ATOMA_LEDGER__ENABLED": "false"}
        key = run_command("keys", "create", "--email", "metrics@atoma.test", env=env).strip()
        yield env, key, tmp


def test_core_workers_metrics_count_every_worker(env: tuple[dict[str, str], str, Path]) -> None:
    variables, key, tmp = env
    core_port, metrics_port = free_port(), free_port()
    target, metrics = f"127.0.0.1:{core_port}", f"http://127.0.0.1:{metrics_port}/metrics"
    variables = {**variables, "ATOMA_CORE__LISTEN": target, "ATOMA_CORE__METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
    core = spawn(["core", "--workers", "2"], tmp / "core.log", variables)
    try:
        wait_grpc_serving(target, core, tmp / "core.log")
        for _ in range(REQUESTS):  # a channel (connection) each: the kernel spreads them over the workers
            with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                call = pb_grpc.RoutingServiceStub(channel).ChatCompletion(
                    pb.ChatCompletionRequest(model=CHAT, messages=[chat_pb2.ChatMessage(role="user", text="hi")]),
                    metadata=(("authorization", f"Bearer {key}"),),
                    timeout=30,
                )
                assert [event.WhichOneof("event") for event in call][-1] == "end"
        for _ in range(REQUESTS):
            text = _scrape(metrics)
            assert _value(text, "atoma_total_completed_requests_total", kind="chat") == REQUESTS, text
            assert _value(text, "atoma_node_healthy", node="sim") == 1
    finally:
        stop(core)


def test_facade_workers_metrics_count_every_worker(env: tuple[dict[str, str], str, Path]) -> None:
    variables, key, tmp = env
    core_port, facade_port = free_port(), free_port()
    target, facade = f"127.0.0.1:{core_port}", f"http://127.0.0.1:{facade_port}"
    variables = {
        **variables,
        "ATOMA_CORE__LISTEN": target,
        "ATOMA_FACADE__CORE_TARGET": target,
        "ATOMA_FACADE__PORT": str(facade_port),
    }
    core = spawn(["core"], tmp / "core1.log", variables)
    try:
        wait_grpc_serving(target, core, tmp / "core1.log")
        with running(["facade", "--workers", "2"], ready_url=f"{facade}/health", log=tmp / "facade.log", env=variables):
            for _ in range(REQUESTS):
                with httpx.Client() as client:
                    assert client.get(f"{facade}/v1/models", headers={"authorization": f"Bearer {key}"}).is_success
            for _ in range(REQUESTS):
                text = _scrape(f"{facade}/metrics")
                assert _value(text, "atoma_http_requests_total", route="/v1/models", status="200") == REQUESTS
    finally:
        stop(core)
