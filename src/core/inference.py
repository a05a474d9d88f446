"""Running one inference request on the nodes: choose, call, fail over, relay, measure.

The servicer hands over a node-ready JSON body; this module picks a node, sends the body, and
turns the node's answer into our stream events without re-encoding what it does not need to look
at (chunks pass through as the node wrote them; only those that carry usage are parsed).

Failover. A connection error, a 5xx or 429, or a timeout before anything reached the client is
retried on another node, up to `FailoverPolicy.max_attempts` nodes and never past the request's
deadline; a node answering 4xx (other than 408/429) refused the request itself, which no other
node would take either, so that is not retried. Streams hold back the chunks that carry no token
yet (the role chunk vLLM sends on admission) until the first token, so a node that fails while
prefilling is still retried invisibly; from the first token on, nothing is retried: a failure
ends the client's stream with a clean error and `chunks_received` says what was delivered.

Every attempt updates what the proxy knows of its node: in-flight counts, the circuit breaker
(breaker.py) and the passive measurements the score uses (stats.py).

Limits. With metering on, `call.limits` is what was reserved (node_limits.py): a node's usage is
checked before it is recorded (implausible usage is a node failure, retried like one), and a
stream is cut at the output cap, ending cleanly for the client and as a failure for the node.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson

from atoma_proxy.core.errors import ModelNotFound, NodeFailed, NodeRejectedRequest, NodeTimeout, NoNodeAvailable
from atoma_proxy.core.node_limits import ImplausibleUsage, Overproduction, RequestLimits, StreamCap, check_usage
from atoma_proxy.core.nodes.answers import answer_object, check_stream_error
from atoma_proxy.core.nodes.breaker import Dispatch
from atoma_proxy.core.nodes.failover import FailoverPolicy
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.scoring import latency_estimates, score_nodes
from atoma_proxy.core.nodes.selection import (
    STRATEGY_METADATA_KEY,
    NodeSelector,
    SelectionRequest,
    parse_strategy,
)
from atoma_proxy.core.nodes.transport import NodeTransport, NodeUnreachable, RequestContext
from atoma_proxy.core.ratelimit.context import extra_initial_metadata
from atoma_proxy.core.telemetry.requests import AttemptObservation, observe_stream
from atoma_proxy.generated.atoma.routing.v1 import common_pb2

log = logging.getLogger(__name__)

_DONE = b"[DONE]"
_USAGE_KEY = b'"usage"'
_NO_USAGE = (b'"usage":null', b'"usage": null')
# Chunks that carry no token: the role chunk (`"content":""`) vLLM and SGLang send first, and the
# finish chunks (`"delta":{}`, `"text":""`).
_NO_TOKEN = re.compile(rb'"(?:content|text)": ?""|"delta": ?\{\}')
_MAX_HELD = 16  # chunks held back before the first token; more means the node streams no tokens at all

RETRYABLE = (NodeFailed, NodeTimeout)
# Milliseconds the request waited on nodes (up to the metadata's sending): the facade subtracts it for the overhead.
NODE_TIME_KEY = "x-atoma-node-ms"


@dataclass
class InferenceCall:
    """What the relay learns while serving one request; the servicer reports it as metadata."""

    request_id: str
    node: Node | None = None
    attempts: int = 0
    usage: dict[str, Any] | None = None
    # Chunks with choices delivered to the client: one token each as vLLM and SGLang stream, so a
    # stream cut short (client gone, node failed) is metered by what was actually generated.
    chunks_received: int = 0
    metadata_sent: bool = field(default=False)
    # Asked by the caller: a strategy name (`x-atoma-routing-strategy`, checked when routing) and
    # the RPC's deadline as time.monotonic(); see `routing_options`.
    strategy: str | None = None
    deadline: float | None = None
    # Nodes tried so far, in order (the last one is `node`).
    tried: list[Node] = field(default_factory=list)
    # Set by the ledger when a stack pays for the request: only the stack's node may serve it.
    pinned_node_id: str | None = None
    # Who the request is for (the servicer: the user; the ledger: the stack paying), as Atoma-protocol
    # nodes are told; passed to the transport only when set.
    node_context: RequestContext | None = None
    # What the ledger reserved for: the node is held to it (node_limits); None when metering is off.
    limits: RequestLimits | None = None
    # Telemetry (core/telemetry): the RPC's kind, its span when traced, what the trace reports, and the
    # time spent waiting on nodes (for the overhead), as time.perf_counter() seconds.
    kind: str = "chat"
    span: Any = None
    response_id: str | None = None
    strategy_used: str | None = None
    score: float | None = None
    node_wait_seconds: float = 0.0
    node_wait_started: float | None = None

    def node_seconds(self) -> float:
        """Seconds waited on nodes so far, the attempt under way included."""
        if self.node_wait_started is None:
            return self.node_wait_seconds
        return self.node_wait_seconds + time.perf_counter() - self.node_wait_started

    def routing(self) -> common_pb2.RoutingInfo:
        return common_pb2.RoutingInfo(
            node_id=self.node.id if self.node else "", attempts=self.attempts, request_id=self.request_id
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        pairs = [("x-request-id", self.request_id), ("x-atoma-attempts", str(self.attempts))]
        if self.node is not None:
            pairs.append(("x-atoma-node", self.node.id))
            pairs.append((NODE_TIME_KEY, f"{self.node_seconds() * 1000:.2f}"))
        pairs.extend(extra_initial_metadata.get())  # e.g. x-ratelimit-* from the rate-limit interceptor
        return tuple(pairs)

    def end(self) -> common_pb2.StreamEnd:
        end = common_pb2.StreamEnd(routing=self.routing())
        if self.usage:
            end.usage.CopyFrom(usage_proto(self.usage))
        return end


def new_request_id(supplied: str | None) -> str:
    if supplied and len(supplied) <= 128 and supplied.isprintable():
        return supplied
    return uuid.uuid4().hex


def routing_options(context: grpc.aio.ServicerContext) -> dict[str, Any]:
    """The `strategy` and `deadline` of an RPC, as InferenceCall keyword arguments."""
    strategy = None
    for key, value in context.invocation_metadata() or ():
        if key == STRATEGY_METADATA_KEY:
            strategy = value if isinstance(value, str) else value.decode("ascii", "replace")
    remaining = context.time_remaining()
    deadline = time.monotonic() + remaining if remaining is not None else None
    return {"strategy": strategy, "deadline": deadline}


def usage_proto(usage: dict[str, Any]) -> common_pb2.Usage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return common_pb2.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(usage.get("total_tokens") or prompt + completion),
    )


class _Attempt:
    """One try of one node: in-flight counts while it runs, then its outcome, recorded once."""

    def __init__(self, node: Node, model: str, clock: Callable[[], float], call: InferenceCall | None = None) -> None:
        self.node = node
        self.observation = AttemptObservation(call, node, model)
        self.stats = node.model_stats(model)
        self.clock = clock
        self.dispatch = node.breaker.dispatch()
        self.started = clock()
        node.in_flight += 1
        self.stats.in_flight += 1
        self.stats.begin_wait(id(self), self.started)
        self._open = True

    def first_token(self) -> None:
        """The node started answering: it no longer counts as waiting (see ModelStats.longest_wait)."""
        self.stats.end_wait(id(self))

    def _close(self, outcome: str) -> bool:
        if not self._open:
            return False
        self.observation.end(outcome)
        self._open = False
        self.node.in_flight -= 1
        self.stats.in_flight -= 1
        self.stats.end_wait(id(self))
        return True

    def succeeded(self, *, ttft: float | None, tpot: float | None, output_tokens: int | None) -> None:
        if self._close("ok"):
            self.node.breaker.record_success(self.dispatch)
            if self.dispatch is Dispatch.TRIAL:  # back from an ejection: its old errors are history
                for stats in self.node.stats.values():
                    stats.forget_errors()
            self.stats.record_success(self.clock(), ttft=ttft, tpot=tpot, output_tokens=output_tokens)

    def rejected(self) -> None:
        """The node answered, refusing the request itself: the node is fine."""
        if self._close("rejected"):
            self.node.breaker.record_success(self.dispatch)

    def failed(self, error: Exception) -> None:
        if self._close("failed"):
            self.node.breaker.record_failure(self.dispatch)
            self.stats.record_failure(self.clock())
            if isinstance(error, NodeUnreachable):
                self.node.healthy = False  # nothing listens there; the health poller says when it is back

    def abandoned(self) -> None:
        """No verdict on the node: the client left, the deadline passed, or the proxy failed."""
        if self._close("abandoned"):
            self.node.breaker.record_abandoned(self.dispatch)


class InferenceRelay:
    def __init__(
        self,
        registry: NodeRegistry,
        selector: NodeSelector,
        transport: NodeTransport,
        *,
        policy: FailoverPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._selector = selector
        self._transport = transport
        self._policy = policy or FailoverPolicy()
        self._clock = clock

    def _choose(self, call: InferenceCall, model: str, failure: Exception | None) -> Node:
        """The node for the next attempt. On a retry, the failure is re-raised when none is left."""
        request = SelectionRequest(
            strategy=parse_strategy(call.strategy),
            tried=tuple(call.tried),
            pinned_node_id=call.pinned_node_id,
        )
        try:
            node = self._selector.select(model, self._registry.candidates(model), request)
        except (NoNodeAvailable, ModelNotFound, NodeFailed):
            if failure is not None:  # nowhere left to retry: the client gets the real failure
                raise failure from None
            raise
        call.node = node
        call.attempts += 1
        call.tried.append(node)
        if call.span is not None:  # traced: the decision goes on the span
            self._describe_decision(call, model, node, request.strategy)
        return node

    def _describe_decision(self, call: InferenceCall, model: str, node: Node, strategy: str | None) -> None:
        call.strategy_used = strategy or getattr(self._selector, "default", None)
        weight = getattr(self._selector, "price_weight", 0.5)
        for score in score_nodes(model, self._peers(node, model), price_weight=weight, now=self._clock()):
            if score.node is node:
                call.score = score.score

    def _check_retry(self, call: InferenceCall, error: Exception) -> None:
        """Re-raises `error` when the request is out of attempts or out of time."""
        if call.attempts >= self._policy.max_attempts:
            raise error
        if call.deadline is not None and self._clock() >= call.deadline:
            raise error

    async def _pause_if_same_node(self, call: InferenceCall) -> None:
        """A node tried again at once (it is the only one) gets a short, growing breather first."""
        if len(call.tried) >= 2 and call.tried[-1] is call.tried[-2]:
            await asyncio.sleep(self._policy.same_node_pause * (call.attempts - 1))

    async def unary(
        self,
        call: InferenceCall,
        model: str,
        path: str,
        body: dict[str, Any],
        check_answer: Callable[[Node, dict[str, Any]], None] | None = None,
    ) -> bytes:
        """The node's whole JSON answer; its usage is recorded on `call`. `check_answer` may refuse
        the parsed answer with NodeFailed, which fails the node like garbage would."""
        payload = orjson.dumps(body)
        failure: Exception | None = None
        while True:
            node = self._choose(call, model, failure)
            await self._pause_if_same_node(call)
            attempt = _Attempt(node, model, self._clock, call)
            try:
                options = _transport_options(call, attempt)
                raw = await self._transport.post(node, path, payload, request_id=call.request_id, **options)
                parsed = answer_object(node, raw)  # garbage is a node failure
                if check_answer is not None:
                    check_answer(node, parsed)
                call.usage = _checked_usage(attempt, call.limits, parsed.get("usage"))
                if call.span is not None and isinstance(parsed.get("id"), str):
                    call.response_id = parsed["id"]
                self._record_unary(attempt, model, call.usage)
                return raw
            except NodeRejectedRequest:
                attempt.rejected()
                raise
            except RETRYABLE as error:
                attempt.failed(error)
                self._check_retry(call, error)
                failure = error
            finally:
                attempt.abandoned()  # no-op once an outcome was recorded: a cancellation or a bug

    def _record_unary(self, attempt: _Attempt, model: str, usage: dict[str, Any] | None) -> None:
        """A non-streamed answer only tells its total time: it scales the node's TTFT and TPOT
        estimates in proportion, keeping their shape."""
        node, now = attempt.node, self._clock()
        duration = now - attempt.started
        tokens = int((usage or {}).get("completion_tokens") or 0)
        ttft, tpot = latency_estimates(node, model, self._peers(node, model), now)
        expected = ttft + max(tokens - 1, 0) * tpot
        scale = duration / expected if expected > 0 else 1.0
        attempt.succeeded(ttft=ttft * scale, tpot=tpot * scale if tokens >= 2 else None, output_tokens=tokens or None)

    def _peers(self, node: Node, model: str) -> list[Node]:
        try:
            return self._registry.candidates(model)
        except ModelNotFound:
            return [node]

    async def stream(
        self, call: InferenceCall, model: str, path: str, body: dict[str, Any], *, client_wants_usage: bool
    ) -> AsyncIterator[list[bytes]]:
        """The node's SSE chunks as it wrote them, until [DONE], in batches of those that arrived together.

        Usage is always requested from the node (the proxy meters every stream); the usage-only
        chunk is dropped again when the client did not ask for it. A stream that stops before
        [DONE] is a node failure, never a silent success.
        """
        body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        payload = orjson.dumps(body)
        failure: Exception | None = None
        while True:
            node = self._choose(call, model, failure)
            await self._pause_if_same_node(call)
            delivered = False
            attempt = self._stream_attempt(call, node, model, path, payload, client_wants_usage)
            try:
                async with aclosing(attempt):
                    async for batch in attempt:
                        delivered = True
                        yield batch
                return
            except RETRYABLE as error:
                if delivered:
                    raise
                self._check_retry(call, error)
                failure = error

    async def _stream_attempt(
        self, call: InferenceCall, node: Node, model: str, path: str, payload: bytes, client_wants_usage: bool
    ) -> AsyncGenerator[list[bytes], None]:
        attempt = _Attempt(node, model, self._clock, call)
        held: list[bytes] = []
        first_token_at: float | None = None
        last_token_at = 0.0
        tokens = 0
        done = False
        cap = StreamCap(call.limits) if call.limits is not None else None
        overproduced = False
        try:
            options = _transport_options(call, attempt)
            batches = self._transport.stream(node, path, payload, request_id=call.request_id, **options)
            async with aclosing(batches):
                while not done:
                    if first_token_at is None:
                        batch = await self._first_chunks(node, batches, call)
                    else:
                        batch = await anext(batches, None)
                    if batch is None:
                        raise NodeFailed(f"Node {node.id} ended the stream before [DONE].")
                    out: list[bytes] = []
                    for data in batch:
                        if data == _DONE:
                            done = True
                            break
                        chunk = answer_object(node, data, "a chunk")  # garbage is a node failure
                        check_stream_error(node, chunk)
                        if call.response_id is None and call.span is not None and isinstance(chunk.get("id"), str):
                            call.response_id = chunk["id"]
                        usage_only = _carries_usage(data) and self._take_usage(call, attempt, chunk)
                        if usage_only and not client_wants_usage:
                            continue
                        if cap is not None and not usage_only and cap.exceeded_by(data):
                            # Past the cap the node was told: the client gets a clean end instead.
                            overproduced = done = True
                            call.usage = cap.usage()
                            chat = path.endswith("/chat/completions")
                            out += held + cap.closing(data, chat=chat, with_usage=client_wants_usage)
                            held.clear()
                            break
                        if not usage_only and not _carries_no_token(data):
                            last_token_at = self._clock()
                            tokens += 1
                            if first_token_at is None:
                                first_token_at = last_token_at
                                attempt.first_token()
                        if first_token_at is None:
                            if len(held) < _MAX_HELD:
                                held.append(data)
                                continue
                            first_token_at = self._clock()  # no tokens come as we expect them: stop holding
                        if held:
                            out += held
                            held.clear()
                        out.append(data)
                    if out:
                        yield self._delivered(call, out)
            if held:  # a reply without any token
                yield self._delivered(call, held)
            ttft = first_token_at - attempt.started if first_token_at is not None else None
            tpot = None
            if first_token_at is not None and tokens > 1:
                tpot = (last_token_at - first_token_at) / (tokens - 1)
            completion = int((call.usage or {}).get("completion_tokens") or 0) or tokens or None
            if overproduced:  # a clean end for the client, a failure of the node
                attempt.stats.overproduced += 1
                attempt.failed(NodeFailed(f"Node {node.id} generated past the output cap it was told."))
                log.warning("node %s generated past the output cap of request %s", node.id, call.request_id)
            else:
                observe_stream(model, ttft, tpot)
                attempt.succeeded(ttft=ttft, tpot=tpot, output_tokens=completion)
        except NodeRejectedRequest:
            attempt.rejected()
            raise
        except RETRYABLE as error:
            attempt.failed(error)
            call.usage = None  # a failed node's claim is not what was delivered: the delivered chunks are
            raise
        finally:
            attempt.abandoned()  # no-op once an outcome was recorded: the client left, or a bug

    @staticmethod
    def _delivered(call: InferenceCall, batch: list[bytes]) -> list[bytes]:
        """Count the chunks of `batch` that carry choices (the usage-only chunk does not) as delivered."""
        call.chunks_received += sum(1 for chunk in batch if not _is_usage_only(chunk))
        return batch

    async def _first_chunks(
        self, node: Node, batches: AsyncIterator[list[bytes]], call: InferenceCall
    ) -> list[bytes] | None:
        """The next batch while no token has come yet, within the first-token timeout and the deadline."""
        budget = self._policy.first_token_timeout
        if call.deadline is not None:
            budget = min(budget, call.deadline - self._clock())
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                return await anext(batches, None)
        except TimeoutError:
            raise NodeTimeout(f"Node {node.id} sent no token within {budget:.1f} s.") from None

    @staticmethod
    def _take_usage(call: InferenceCall, attempt: _Attempt, chunk: dict[str, Any]) -> bool:
        """Record usage from a chunk; True when the chunk is the usage-only chunk."""
        usage = _checked_usage(attempt, call.limits, chunk.get("usage"))
        if usage is None:
            return False
        call.usage = usage
        return not chunk.get("choices")


def _transport_options(call: InferenceCall, attempt: _Attempt) -> dict[str, Any]:
    """The transport's optional keywords for this attempt: its traceparent when traced, the call's context when set."""
    options: dict[str, Any] = dict(attempt.observation.traceparent())
    if call.node_context is not None:
        options["context"] = call.node_context
    return options


def _checked_usage(attempt: _Attempt, limits: RequestLimits | None, usage: Any) -> dict[str, Any] | None:
    """The node's usage when the request could have produced it; otherwise the node failed (node_limits)."""
    try:
        return check_usage(usage, limits)
    except ImplausibleUsage as error:
        if isinstance(error, Overproduction):
            attempt.stats.overproduced += 1
        else:
            attempt.stats.implausible_usage += 1
        raise NodeFailed(f"Node {attempt.node.id} reported implausible usage: {error}.") from None


def _carries_usage(data: bytes) -> bool:
    """Cheap byte test before any parsing: most chunks say `"usage":null` or nothing."""
    return _USAGE_KEY in data and _NO_USAGE[0] not in data and _NO_USAGE[1] not in data


def _is_usage_only(data: bytes) -> bool:
    return _carries_usage(data) and (b'"choices":[]' in data or b'"choices": []' in data)


def _carries_no_token(data: bytes) -> bool:
    return _NO_TOKEN.search(data) is not None
