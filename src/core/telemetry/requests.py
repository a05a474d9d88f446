"""What the core measures of one inference RPC and one node attempt: metrics always, spans when tracing is on.

`RequestObservation` is opened by the servicer when the RPC starts and finished once on every way out;
`AttemptObservation` is opened by the relay per node attempt. Both hold a span only when tracing is on
(`tracing.enabled()`), so with tracing off a request costs a few counter updates and no span call.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from atoma_proxy.core.telemetry import metrics as m
from atoma_proxy.core.telemetry import tracing

if TYPE_CHECKING:
    from atoma_proxy.core.nodes.registry import Node
    from atoma_proxy.core.pipeline.call import InferenceCall

__all__ = ["AttemptObservation", "RequestObservation"]

log = logging.getLogger("atoma_proxy.requests")

_IN_FLIGHT = m.child(m.IN_FLIGHT)
_LATENCY = m.child(m.LATENCY)
_COMPLETED = m.child(m.COMPLETED)
_FAILED = m.child(m.FAILED)
_INPUT_TOKENS = m.child(m.INPUT_TOKENS)
_OUTPUT_TOKENS = m.child(m.OUTPUT_TOKENS)
_SPEND = m.child(m.SPEND)
_NODE_ATTEMPTS = m.child(m.NODE_ATTEMPTS)
_NODE_LATENCY = m.child(m.NODE_LATENCY)
_NODE_FAILED_CONNECTIONS = m.child(m.NODE_FAILED_CONNECTIONS)
_TTFT = m.child(m.TTFT)
_TPOT = m.child(m.TPOT)
_REQUESTS = {counter: m.child(counter) for counter in {*m.REQUEST_COUNTERS.values(), m.CHAT_REQUESTS}}

OPERATIONS = {"chat": "chat", "completion": "text_completion", "embeddings": "embeddings", "images": "generate_image"}
OTHER_MODEL = "other"  # a model no node served: never a label value a client chose


def failure_reason(error: BaseException | None) -> str:
    if error is None:
        return "CANCELLED"
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) else "INTERNAL"


class RequestObservation:
    __slots__ = ("_done", "kind", "model", "span", "started")

    def __init__(self, kind: str, model: str) -> None:
        self.kind = kind
        self.model = model  # as asked: a metric label only once a node served it
        self.started = time.perf_counter()
        self.span = tracing.current_span() if tracing.enabled() else None
        self._done = False
        _IN_FLIGHT(kind).inc()

    def overhead_seconds(self, call: InferenceCall | None) -> float:
        node = call.node_seconds() if call is not None else 0.0
        return max(time.perf_counter() - self.started - node, 0.0)

    def finish(self, call: InferenceCall | None, cost: int, error: BaseException | None = None, *, ok: bool) -> None:
        """Once: the outcome (`ok`, else `error`'s reason or CANCELLED), latency, tokens, spend, overhead."""
        if self._done:
            return
        self._done = True
        kind = self.kind
        _IN_FLIGHT(kind).dec()
        elapsed = time.perf_counter() - self.started
        served = call is not None and call.node is not None
        model = self.model if served else OTHER_MODEL
        _REQUESTS[m.requests_counter(kind)](model).inc()
        _LATENCY(kind).observe(elapsed)
        m.CORE_OVERHEAD.observe(max(elapsed - (call.node_seconds() if call is not None else 0.0), 0.0))
        if ok:
            _COMPLETED(kind).inc()
        else:
            _FAILED(kind, failure_reason(error)).inc()
        usage = (call.usage if call is not None else None) or {}
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if served and kind in ("chat", "completion"):
            if prompt:
                _INPUT_TOKENS(model).inc(prompt)
            if completion:
                _OUTPUT_TOKENS(model).inc(completion)
        if cost:
            _SPEND(model).inc(cost)
        if self.span is not None:
            self._annotate(call, cost, prompt, completion, ok, error)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request finished",
                extra={
                    "request_id": call.request_id if call is not None else None,
                    "kind": kind,
                    "outcome": "ok" if ok else failure_reason(error),
                    "node": call.node.id if served and call is not None and call.node is not None else None,
                    "attempts": call.attempts if call is not None else 0,
                    "duration_ms": round(elapsed * 1000, 2),
                    "cost_micro_usd": cost,
                },
            )

    def _annotate(
        self, call: InferenceCall | None, cost: int, prompt: int, completion: int, ok: bool, error: BaseException | None
    ) -> None:
        span = self.span
        assert span is not None
        attributes: list[tuple[str, Any]] = [
            ("gen_ai.operation.name", OPERATIONS.get(self.kind, self.kind)),
            ("gen_ai.system", "atoma"),
            ("gen_ai.request.model", self.model or None),
            ("gen_ai.usage.input_tokens", prompt if call is not None and call.usage else None),
            ("gen_ai.usage.output_tokens", completion if call is not None and call.usage else None),
            ("atoma.cost_micro_usd", cost),
        ]
        if call is not None:
            attributes += [
                ("atoma.request_id", call.request_id),
                ("gen_ai.response.id", call.response_id),
                ("atoma.routing.node", call.node.id if call.node is not None else None),
                ("atoma.routing.attempts", call.attempts),
                ("atoma.routing.strategy", call.strategy_used),
                ("atoma.routing.score", call.score),
            ]
        if not ok:
            attributes.append(("error.type", failure_reason(error)))
            code = getattr(error, "code", None)  # a ProxyError's gRPC code: abort_with_status escapes the interceptor
            if code is not None and hasattr(code, "value"):
                attributes.append(("rpc.grpc.status_code", code.value[0]))
            tracing.mark_error(span, failure_reason(error))
        tracing.set_attributes(span, attributes)


class AttemptObservation:
    """One node attempt: its time counts as time waited on nodes (not overhead), its outcome per node."""

    __slots__ = ("_call", "_node", "span", "started")

    def __init__(self, call: InferenceCall | None, node: Node, model: str) -> None:
        self._call = call
        self._node = node
        self.started = time.perf_counter()
        self.span = None
        if call is not None:
            call.node_wait_started = self.started
            if call.span is not None:
                operation = OPERATIONS.get(call.kind, "chat")
                self.span = tracing.node_attempt_span(call.span, node.id, node.url, model, call.attempts, operation)

    def traceparent(self) -> dict[str, str]:
        """The transport's keyword arguments: the attempt's `traceparent`, when traced."""
        value = tracing.traceparent(self.span) if self.span is not None else None
        return {"traceparent": value} if value else {}

    def end(self, outcome: str) -> None:
        elapsed = time.perf_counter() - self.started
        node_id = self._node.id
        _NODE_ATTEMPTS(node_id, outcome).inc()
        _NODE_LATENCY(node_id).observe(elapsed)
        if outcome == "failed":
            _NODE_FAILED_CONNECTIONS(node_id).inc()
        call = self._call
        if call is not None:
            call.node_wait_seconds += elapsed
            call.node_wait_started = None
        if self.span is not None:
            if call is not None and outcome == "ok":
                usage = call.usage or {}
                tracing.set_attributes(
                    self.span,
                    [
                        ("gen_ai.usage.input_tokens", usage.get("prompt_tokens")),
                        ("gen_ai.usage.output_tokens", usage.get("completion_tokens")),
                        ("gen_ai.response.id", call.response_id),
                    ],
                )
            tracing.end_attempt(self.span, outcome)


def observe_stream(model: str, ttft: float | None, tpot: float | None) -> None:
    if ttft is not None:
        _TTFT(model).observe(ttft)
    if tpot is not None:
        _TPOT(model).observe(tpot)
