"""One trace per request, facade -> core -> node attempt, with the GenAI attributes (in-memory exporter)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from atoma_proxy.config import TelemetrySettings
from atoma_proxy.core.telemetry import tracing
from tests.telemetry.inprocess import MODEL, InProcessStack, in_process_stack

RPC = "/atoma.routing.v1.RoutingService/ChatCompletion"


@pytest.fixture
async def traced() -> AsyncIterator[tuple[InMemorySpanExporter, InProcessStack]]:
    exporter = InMemorySpanExporter()
    assert tracing.install(TelemetrySettings(service_name="atoma-test"), "atoma-proxy", exporter=exporter)
    try:
        async with in_process_stack() as stack:
            yield exporter, stack
    finally:
        tracing.uninstall()


async def _spans_of(exporter: InMemorySpanExporter, request_id: str) -> list[ReadableSpan]:
    """The spans of the trace of `request_id`, once its root (the facade's, ended after the body) is exported."""
    for _ in range(500):
        spans = list(exporter.get_finished_spans())
        core = [s for s in spans if (s.attributes or {}).get("atoma.request_id") == request_id]
        if core:
            trace_id = core[0].context.trace_id
            mine = [s for s in spans if s.context.trace_id == trace_id]
            if any(s.kind is SpanKind.SERVER and s.name.startswith("POST ") for s in mine):
                return mine
        await asyncio.sleep(0.01)
    raise AssertionError(f"no complete trace for {request_id}: {[s.name for s in exporter.get_finished_spans()]}")


@pytest.mark.parametrize("stream", [False, True])
async def test_one_trace_from_the_facade_through_the_core_to_the_node(
    traced: tuple[InMemorySpanExporter, InProcessStack], stream: bool
) -> None:
    exporter, stack = traced
    request_id = f"trace-{'stream' if stream else 'unary'}"
    async with httpx.AsyncClient(base_url=stack.facade_url, timeout=30) as client:
        response = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {stack.api_key}", "x-request-id": request_id},
            json={"model": MODEL, "messages": [{"role": "user", "content": "hello there"}], "stream": stream},
        )
    assert response.status_code == 200, response.text
    spans = await _spans_of(exporter, request_id)
    by_id = {s.context.span_id: s for s in spans}

    facade = next(s for s in spans if s.kind is SpanKind.SERVER and s.name == "POST /v1/chat/completions")
    grpc_client = next(s for s in spans if s.kind is SpanKind.CLIENT and s.name == RPC)
    core = next(s for s in spans if s.kind is SpanKind.SERVER and s.name == RPC)
    node = next(s for s in spans if s.name == "node sim-1")
    # One chain: facade -> its gRPC call -> the core's RPC -> the node attempt.
    assert facade.parent is None
    assert grpc_client.parent is not None and by_id[grpc_client.parent.span_id] is facade
    assert core.parent is not None and by_id[core.parent.span_id] is grpc_client
    assert node.parent is not None and by_id[node.parent.span_id] is core
    assert node.kind is SpanKind.CLIENT
    assert facade.resource.attributes["service.name"] == "atoma-test"
    assert (facade.attributes or {})["atoma.request_id"] == request_id
    assert (facade.attributes or {})["http.response.status_code"] == 200

    attributes = dict(core.attributes or {})
    body = response.text
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.system"] == "atoma"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert isinstance(attributes["gen_ai.response.id"], str) and attributes["gen_ai.response.id"] in body
    assert attributes["atoma.routing.node"] == "sim-1"
    assert attributes["atoma.routing.attempts"] == 1
    assert attributes["atoma.routing.strategy"] == "balanced"
    assert isinstance(attributes["atoma.routing.score"], float)
    node_attributes = dict(node.attributes or {})
    host, port = stack.node.url.removeprefix("http://").split(":")
    assert node_attributes["server.address"] == host and node_attributes["server.port"] == int(port)
    assert node_attributes["gen_ai.usage.output_tokens"] == 5
    assert node_attributes["atoma.node.outcome"] == "ok"

    # The node was told the attempt's span as its parent (W3C traceparent).
    sent = [entry for entry in stack.node.state.request_log if entry["headers"].get("x-request-id") == request_id]
    assert sent, "the node saw no request with that id"
    traceparent = sent[-1]["headers"]["traceparent"]
    assert traceparent.startswith(f"00-{node.context.trace_id:032x}-{node.context.span_id:016x}-")


async def test_no_tracing_means_no_span_and_no_traceparent() -> None:
    assert not tracing.enabled()
    assert tracing.server_interceptors() == [] and tracing.client_interceptors() == []
    async with in_process_stack() as stack, httpx.AsyncClient(base_url=stack.facade_url, timeout=30) as client:
        response = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {stack.api_key}", "x-request-id": "untraced"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "hello"}]},
        )
        assert response.status_code == 200, response.text
        sent = [e for e in stack.node.state.request_log if e["headers"].get("x-request-id") == "untraced"]
        assert sent and "traceparent" not in sent[-1]["headers"]


async def test_errors_keep_their_envelope_and_mark_the_span(
    traced: tuple[InMemorySpanExporter, InProcessStack],
) -> None:
    exporter, stack = traced
    async with httpx.AsyncClient(base_url=stack.facade_url, timeout=30) as client:
        response = await client.post(
            "/v1/chat/completions",
            headers={"authorization": "Bearer sk-atoma-" + "x" * 40, "x-request-id": "trace-401"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    for _ in range(500):
        spans = exporter.get_finished_spans()
        core = [s for s in spans if s.kind is SpanKind.SERVER and s.name == RPC and s.attributes.get("error.type")]
        facade = [s for s in spans if (s.attributes or {}).get("atoma.request_id") == "trace-401"]
        if core and facade:
            break
        await asyncio.sleep(0.01)
    assert core[-1].attributes["error.type"] == "INVALID_API_KEY"
    assert core[-1].attributes["rpc.grpc.status_code"] == 16  # UNAUTHENTICATED
    assert not core[-1].status.is_ok
    assert facade[-1].attributes["http.response.status_code"] == 401


async def test_a_sampling_ratio_of_zero_records_nothing() -> None:
    exporter = InMemorySpanExporter()
    assert tracing.install(TelemetrySettings(sampling_ratio=0.0), "atoma-proxy", exporter=exporter)
    try:
        async with in_process_stack() as stack, httpx.AsyncClient(base_url=stack.facade_url, timeout=30) as client:
            response = await client.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {stack.api_key}", "x-request-id": "unsampled"},
                json={"model": MODEL, "messages": [{"role": "user", "content": "hello"}]},
            )
            assert response.status_code == 200, response.text
    finally:
        tracing.uninstall()
    assert exporter.get_finished_spans() == ()
