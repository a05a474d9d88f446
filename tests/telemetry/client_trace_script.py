"""Run by test_client_tracing.py in a process of its own (a global tracer provider cannot be unset):
the application traces, so the Python client's calls join its trace, which the core continues."""

from __future__ import annotations

import asyncio
import json

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atoma_proxy.clients import RoutingClient, StreamEnd
from atoma_proxy.config import TelemetrySettings
from atoma_proxy.core.telemetry import tracing
from tests.telemetry.inprocess import MODEL, in_process_stack


def main() -> None:
    asyncio.run(_traced_calls())


async def _traced_calls() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the application's
    tracing.install(TelemetrySettings(), "atoma-proxy", exporter=exporter)  # the proxy's
    async with in_process_stack() as stack:
        with provider.get_tracer("app").start_as_current_span("app work"):
            async with await RoutingClient.connect(stack.core_target, api_key=stack.api_key) as client:
                result = await client.chat_completion_create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
                events = [
                    e
                    async for e in client.chat_completion(
                        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
                    )
                ]
    print(
        json.dumps(
            {
                "answered": bool(result.data["choices"]) and isinstance(events[-1], StreamEnd),
                "spans": [
                    {"name": s.name, "kind": s.kind.name, "trace": f"{s.context.trace_id:032x}"}
                    for s in exporter.get_finished_spans()
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
