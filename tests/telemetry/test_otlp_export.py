"""`[telemetry] otlp_endpoint`: a real `atoma-proxy serve` exports its spans over OTLP/gRPC to a collector."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.stack import IN_PROCESS, SimNode, Topology, start_stack

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
    telemetry = {"otlp_endpoint": f"http://127.0.0.1:{otlp_port}", "service_name": "atoma-e2e"}
    try:
        with start_stack(
            tmp_path,
            Topology(IN_PROCESS, "sqlite"),
            nodes=[SimNode("sim", chat=(CHAT,))],
            settings={"telemetry": telemetry, "ledger": {"enabled": False}},
            funds=0,
        ) as stack:
            with httpx.Client(base_url=stack.facade_url, timeout=30) as client:
                response = client.post(
                    "/v1/chat/completions",
                    headers={"authorization": f"Bearer {stack.api_key}", "x-request-id": "otlp-1"},
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
