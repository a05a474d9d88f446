"""`[telemetry] otlp_endpoint`: a real `atoma-proxy serve` exports its spans over OTLP/gRPC to a collector."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.databases import temporary_database_sync
from tests.support.processes import free_port, run_command, running

CHAT = "atoma/sim-chat"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver keeping what it is sent (its own threads: the test may block)."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[str, str, dict[str, object]]]:
        """(service.name, span name, attributes) of every span received."""
        found = []
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        attributes = {a.key: _value(a.value) for a in span.attributes}
                        found.append((resource.get("service.name", ""), span.name, attributes))
        return found


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


def test_serve_exports_traces_to_the_configured_collector(tmp_path: Path) -> None:
    collector = Collector()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    otlp_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    node_port, core_port, facade_port = free_port(), free_port(), free_port()
    node = f"http://127.0.0.1:{node_port}"
    config = tmp_path / "config.toml"
    config.write_text(
        f"[telemetry]\notlp_endpoint = 'http://127.0.0.1:{otlp_port}'\nservice_name = 'atoma-e2e'\n"
        f"[[nodes]]\nid = 'sim'\nurl = '{node}'\nmodels = ['{CHAT}']\n"
    )
    try:
        with temporary_database_sync("sqlite") as url:
            env = {
                "ATOMA_CONFIG": str(config),
                "ATOMA_DATABASE__URL": url,
                "ATOMA_LEDGER__ENABLED": "false",
                "ATOMA_CORE__LISTEN": f"127.0.0.1:{core_port}",
                "ATOMA_FACADE__PORT": str(facade_port),
                "ATOMA_FACADE__CORE_TARGET": f"127.0.0.1:{core_port}",
            }
            key = run_command("keys", "create", "--email", "otlp@atoma.test", env=env)
            sim = ["node-sim", "--port", str(node_port), "--node-id", "sim", "--chat-model", CHAT]
            facade = f"http://127.0.0.1:{facade_port}"
            with (
                running(sim, ready_url=f"{node}/health", log=tmp_path / "sim.log"),
                running(["serve"], ready_url=f"{facade}/health", log=tmp_path / "serve.log", env=env),
            ):
                with httpx.Client(base_url=facade, timeout=30) as client:
                    response = client.post(
                        "/v1/chat/completions",
                        headers={"authorization": f"Bearer {key.strip()}", "x-request-id": "otlp-1"},
                        json={"model": CHAT, "messages": [{"role": "user", "content": "hi"}]},
                    )
                    assert response.status_code == 200, response.text
                for _ in range(300):  # the batch processor exports every 5 s
                    names = {name for _, name, _ in collector.spans()}
                    if {"POST /v1/chat/completions", "node sim"} <= names:
                        break
                    time.sleep(0.1)
    finally:
        server.stop(0)
    spans = collector.spans()
    assert {service for service, _, _ in spans} == {"atoma-e2e"}
    core = next(
        attrs
        for _, name, attrs in spans
        if attrs.get("gen_ai.request.model") == CHAT and name.endswith("ChatCompletion")
    )
    assert core["atoma.request_id"] == "otlp-1" and core["atoma.routing.node"] == "sim"
    assert core["gen_ai.usage.output_tokens"] > 0  # type: ignore[operator]
