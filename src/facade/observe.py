"""Every HTTP request of the facade, measured at its ASGI entry: metrics, the overhead header, the root span.

`x-atoma-overhead-ms` is the time from the request's arrival to its response head, minus the time the core
reported waiting on nodes (`x-atoma-node-ms`): what the proxy itself added. For a stream, that is the overhead
to the first token; for any other answer, to the whole answer. Labels: the matched route (never the raw path)
and the status.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atoma_proxy.core.telemetry import metrics as m
from atoma_proxy.core.telemetry import tracing
from atoma_proxy.wire.metadata import NODE_MS, OVERHEAD_MS, REQUEST_ID

__all__ = ["OVERHEAD_HEADER", "observed"]

OVERHEAD_HEADER = OVERHEAD_MS.encode()
_NODE_TIME = NODE_MS.encode()
_UNMATCHED = "unmatched"
_REQUEST_ID = REQUEST_ID.encode()
_HTTP_REQUESTS = m.child(m.HTTP_REQUESTS)
_HTTP_LATENCY = m.child(m.HTTP_LATENCY)
log = logging.getLogger("atoma_proxy.facade.access")


async def observed(app: ASGIApp, scope: Scope, receive: Receive, send: Send, route: str | None) -> None:
    """Run `app` for one HTTP request; `route` is known for the fast routes, else taken from FastAPI's match."""
    started = time.perf_counter()
    status = 500
    request_id: bytes | None = None
    m.HTTP_IN_FLIGHT.inc()
    span = _start_span(scope) if tracing.enabled() else None

    async def measured_send(message: Message) -> None:
        nonlocal status, request_id
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", ()))
            request_id = next((v for k, v in headers if k == _REQUEST_ID), None)
            node_ms = _milliseconds(next((v for k, v in headers if k == _NODE_TIME), None))
            overhead = max(time.perf_counter() - started - (node_ms or 0.0) / 1000, 0.0)
            if node_ms is not None:
                m.FACADE_OVERHEAD.observe(overhead)
            headers.append((OVERHEAD_HEADER, f"{overhead * 1000:.2f}".encode()))
            message = {**message, "headers": headers}
        await send(message)

    try:
        if span is None:
            await app(scope, receive, measured_send)
        else:
            from opentelemetry import trace

            with trace.use_span(span, end_on_exit=False):
                await app(scope, receive, measured_send)
    finally:
        m.HTTP_IN_FLIGHT.dec()
        matched = route or getattr(scope.get("route"), "path", None) or _UNMATCHED
        _HTTP_REQUESTS(matched, str(status)).inc()
        _HTTP_LATENCY(matched).observe(time.perf_counter() - started)
        if request_id is None and (span is not None or log.isEnabledFor(logging.DEBUG)):
            request_id = next((v for k, v in scope.get("headers", ()) if k == _REQUEST_ID), None)  # the client's
        if span is not None:
            _end_span(span, scope, matched, status, request_id)
        if log.isEnabledFor(logging.DEBUG):  # the access log: no path parameters, query, or header values
            extra = {"method": scope["method"], "route": matched, "status": status}
            extra["request_id"] = request_id.decode("latin-1") if request_id else None
            extra["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
            log.debug("http request", extra=extra)


def _milliseconds(value: bytes | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _start_span(scope: Scope) -> Any:
    from opentelemetry import propagate

    carrier = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", ())}
    return tracing.tracer().start_span(
        f"{scope['method']} {scope['path']}",
        context=propagate.extract(carrier),  # a client's own traceparent, if it sent one
        kind=tracing.SpanKind.SERVER,
        attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
    )


def _end_span(span: Any, scope: Scope, route: str, status: int, request_id: bytes | None) -> None:
    span.update_name(f"{scope['method']} {route}")
    if request_id:
        span.set_attribute("atoma.request_id", request_id.decode("latin-1"))
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR))
    span.end()
