"""OpenTelemetry traces: set up from `[telemetry]`, and the spans the proxy adds of its own.

Off by default: no tracer provider is installed, `enabled()` is False, the gRPC interceptors are not added and
the request path skips every span call (one attribute test per request). On, with `otlp_endpoint`:
a batching OTLP/gRPC exporter, parent-based ratio sampling; the instrumented gRPC server and channels carry
W3C `traceparent` between the facade and the core, and each node attempt sends its own to the node.

Attributes follow OpenTelemetry's GenAI conventions (`gen_ai.*`) plus `atoma.routing.*` for the decision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from atoma_proxy.config import TelemetrySettings
from atoma_proxy.wire.metadata import TRACEPARENT

log = logging.getLogger(__name__)

__all__ = [
    "SpanKind",
    "client_interceptors",
    "enabled",
    "install",
    "node_attempt_span",
    "server_interceptors",
    "traceparent",
    "tracer",
]

_W3C = TraceContextTextMapPropagator()
_state: dict[str, Any] = {"tracer": None, "provider": None}


def install(settings: TelemetrySettings, default_service: str, *, exporter: Any = None) -> bool:
    """Install the tracer provider once per process; True when tracing is on.

    `exporter` (tests): a span exporter used instead of OTLP, spans exported one by one.
    """
    if _state["tracer"] is not None:
        return True
    if exporter is None and not settings.otlp_endpoint:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create({"service.name": settings.service_name or default_service})
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sampling_ratio)))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        log.info("tracing to %s", settings.otlp_endpoint)
    _state["provider"] = provider
    _state["tracer"] = provider.get_tracer("atoma_proxy")
    return True


def uninstall() -> None:
    """Tests: back to no tracing (spans already exported stay exported)."""
    provider = _state["provider"]
    _state["tracer"] = _state["provider"] = None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _state["tracer"] is not None


def tracer() -> Tracer:
    tracer_: Tracer | None = _state["tracer"]
    return tracer_ if tracer_ is not None else trace.NoOpTracer()


def server_interceptors() -> list[Any]:
    """The gRPC server interceptor (outermost) when tracing is on, else none."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_state["provider"])]


def client_interceptors() -> list[Any]:
    """Interceptors for a grpc.aio channel when tracing is on, else none."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=_state["provider"]))


def current_span() -> Span:
    """The span of the RPC being served (set by the server interceptor), or a non-recording one."""
    return trace.get_current_span()


def node_attempt_span(parent: Span, node_id: str, url: str, model: str, attempt: int, operation: str) -> Span:
    """A client span for one node attempt, child of `parent`; end it with `end_attempt`."""
    host, _, port = url.split("//", 1)[-1].split("/", 1)[0].rpartition(":")
    context = trace.set_span_in_context(parent)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.system": "atoma",
        "gen_ai.request.model": model,
        "atoma.node.id": node_id,
        "atoma.routing.attempt": attempt,
        "server.address": host or url,
    }
    if port.isdigit():
        attributes["server.port"] = int(port)
    return tracer().start_span(f"node {node_id}", context=context, kind=SpanKind.CLIENT, attributes=attributes)


def end_attempt(span: Span, outcome: str) -> None:
    span.set_attribute("atoma.node.outcome", outcome)
    if outcome not in ("ok", "rejected"):
        span.set_status(Status(StatusCode.ERROR, outcome))
    span.end()


def mark_error(span: Span, description: str) -> None:
    span.set_status(Status(StatusCode.ERROR, description))


def traceparent(span: Span) -> str | None:
    """The W3C traceparent header value naming `span` as the parent, or None for a non-recording span."""
    if isinstance(span, NonRecordingSpan):
        return None
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def set_attributes(span: Span, attributes: Sequence[tuple[str, Any]]) -> None:
    for key, value in attributes:
        if value is not None:
            span.set_attribute(key, value)
