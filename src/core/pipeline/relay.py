"""The route-and-relay stage: choose a node, call it, fail over, relay its answer, measure it.

    route = relay.same_for_every_node("/v1/chat/completions", body)   # or a Route choosing per node
    raw = await relay.unary(call, model, route)
    async for batch in relay.stream(call, model, route, client_wants_usage=True): ...

A `Route` says what one attempt sends to the node it chose (`NodeRequest`: path, payload, an answer
check, and for streams the reader of the node's events); the Responses API pass-through routes per
node this way (responses/passthrough.py). Chunks pass through as the node wrote them; each is parsed
once and judged by the one classifier (chunks.py).

Failover. A connection error, a 5xx or 429, or a timeout before anything reached the client is
retried on another node, up to `FailoverPolicy.max_attempts` nodes and never past the request's
deadline; a node answering 4xx (other than 408/429) refused the request itself, which no other
node would take either, so that is not retried. Streams hold back the chunks that carry no token
yet (the role chunk vLLM sends on admission) until the first token, so a node that fails while
prefilling is still retried invisibly; from the first token on, nothing is retried: a failure
ends the client's stream with a clean error and `call.delivered` says how many tokens were delivered.

Every attempt updates what the proxy knows of its node (`NodeAttempt`): in-flight counts, the
circuit breaker (breaker.py) and the passive measurements the score uses (stats.py); a node
nothing listens on is reported to the health poller, which owns `Node.healthy`.

Limits. `call.limits` is what was estimated and reserved (node_limits.py): a node's usage is
checked before it is recorded (implausible usage is a node failure, retried like one), and a
stream is cut at the output cap, ending cleanly for the client and as a failure for the node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from atoma_proxy.core.errors import ModelNotFound, NodeFailed, NodeRejectedRequest, NodeTimeout, NoNodeAvailable
from atoma_proxy.core.node_limits import ImplausibleUsage, Overproduction, RequestLimits, StreamCap, check_usage
from atoma_proxy.core.nodes.answers import answer_object, check_stream_error
from atoma_proxy.core.nodes.breaker import Dispatch
from atoma_proxy.core.nodes.failover import FailoverPolicy
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.scoring import latency_estimates, score_nodes
from atoma_proxy.core.nodes.selection import NodeSelector, SelectionRequest, parse_strategy
from atoma_proxy.core.nodes.transport import NodeTransport, NodeUnreachable
from atoma_proxy.core.pipeline.call import InferenceCall
from atoma_proxy.core.pipeline.chunks import ChunkKind, classify
from atoma_proxy.core.telemetry.requests import AttemptObservation, observe_stream

__all__ = [
    "RETRYABLE",
    "InferenceRelay",
    "NodeAttempt",
    "NodeRequest",
    "Route",
    "StreamReader",
    "checked_usage",
]

log = logging.getLogger(__name__)

_DONE = b"[DONE]"
MAX_HELD = 16  # chunks held back before the first token; more means the node streams no tokens at all

RETRYABLE = (NodeFailed, NodeTimeout)


class StreamReader(Protocol):
    """Reads one streaming attempt's events from its node, in batches (the default: OpenAI SSE chunks)."""

    def __call__(
        self, relay: InferenceRelay, call: InferenceCall, attempt: NodeAttempt, request: NodeRequest
    ) -> AsyncGenerator[list[bytes], None]: ...


@dataclass(frozen=True, slots=True)
class NodeRequest:
    """What one attempt sends to the node it chose."""

    path: str
    payload: bytes
    # Unary: may refuse the parsed answer with NodeFailed (a node failure, like garbage).
    check_answer: Callable[[Node, dict[str, Any]], None] | None = None
    # Streams: how the node's events are read; None for OpenAI SSE chunks ending with [DONE].
    reader: StreamReader | None = None
    # Streams: whether the client asked for the usage-only chunk (the node is always asked for it).
    client_wants_usage: bool = True


Route = Callable[[Node], NodeRequest]


class NodeAttempt:
    """One try of one node: in-flight counts while it runs, then its outcome, recorded once."""

    def __init__(
        self,
        node: Node,
        model: str,
        clock: Callable[[], float],
        call: InferenceCall | None = None,
        on_unreachable: Callable[[Node], None] | None = None,
    ) -> None:
        self.node = node
        self.model = model
        self.observation = AttemptObservation(call, node, model)
        self.stats = node.model_stats(model)
        self.clock = clock
        self.dispatch = node.breaker.dispatch()
        self.started = clock()
        self._on_unreachable = on_unreachable
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
            if isinstance(error, NodeUnreachable) and self._on_unreachable is not None:
                self._on_unreachable(self.node)  # nothing listens there; the health poller says when it is back

    def overproduced(self) -> None:
        """The node generated past the cap it was told: a clean end for the client, a failure of the node."""
        self.stats.overproduced += 1
        self.failed(NodeFailed(f"Node {self.node.id} generated past the output cap it was told."))

    def abandoned(self) -> None:
        """No verdict on the node: the client left, the deadline passed, or the proxy failed."""
        if self._close("abandoned"):
            self.node.breaker.record_abandoned(self.dispatch)

    def streamed(
        self, first_at: float | None, last_at: float, tokens: int, *, output_tokens: int | None, overproduced: bool
    ) -> tuple[float | None, float | None]:
        """The verdict of a stream that ended: a success measured by its token times, or over-production.
        Returns the stream's (TTFT, TPOT) in seconds."""
        ttft = first_at - self.started if first_at is not None else None
        tpot = (last_at - first_at) / (tokens - 1) if first_at is not None and tokens > 1 else None
        if overproduced:
            self.overproduced()
        else:
            self.succeeded(ttft=ttft, tpot=tpot, output_tokens=output_tokens)
        return ttft, tpot

    @contextmanager
    def judged(self, call: InferenceCall) -> Iterator[None]:
        """Around one streaming attempt: a refusal, a failure, or (on any other way out) no verdict."""
        try:
            yield
        except NodeRejectedRequest:
            self.rejected()
            raise
        except RETRYABLE as error:
            self.failed(error)
            call.usage = None  # a failed node's claim is not what was delivered: the delivered tokens are
            raise
        finally:
            self.abandoned()  # no-op once an outcome was recorded: the client left, or a bug


def checked_usage(attempt: NodeAttempt, limits: RequestLimits | None, usage: Any) -> dict[str, Any] | None:
    """The node's usage when the request could have produced it; otherwise the node failed (node_limits)."""
    try:
        return check_usage(usage, limits)
    except ImplausibleUsage as error:
        if isinstance(error, Overproduction):
            attempt.stats.overproduced += 1
        else:
            attempt.stats.implausible_usage += 1
        raise NodeFailed(f"Node {attempt.node.id} reported implausible usage: {error}.") from None


class InferenceRelay:
    def __init__(
        self,
        registry: NodeRegistry,
        selector: NodeSelector,
        transport: NodeTransport,
        *,
        policy: FailoverPolicy | None = None,
        clock: Callable[[], float] | None = None,
        on_unreachable: Callable[[Node], None] | None = None,
    ) -> None:
        """`on_unreachable`: told of a node nothing listens on (the health poller marks it down)."""
        self._registry = registry
        self._selector = selector
        self._transport = transport
        self._policy = policy or FailoverPolicy()
        self.clock = clock or time.monotonic
        self._on_unreachable = on_unreachable

    @staticmethod
    def same_for_every_node(
        path: str,
        body: dict[str, Any],
        *,
        check_answer: Callable[[Node, dict[str, Any]], None] | None = None,
        client_wants_usage: bool = True,
    ) -> Route:
        """The route of a request every node is sent alike (serialized once)."""
        request = NodeRequest(path, orjson.dumps(body), check_answer, client_wants_usage=client_wants_usage)
        return lambda node: request

    # ---- choosing ------------------------------------------------------------------------------

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
        for score in score_nodes(model, self._peers(node, model), price_weight=weight, now=self.clock()):
            if score.node is node:
                call.score = score.score

    def _check_retry(self, call: InferenceCall, error: Exception) -> None:
        """Re-raises `error` when the request is out of attempts or out of time."""
        if call.attempts >= self._policy.max_attempts:
            raise error
        if call.deadline is not None and self.clock() >= call.deadline:
            raise error

    async def _pause_if_same_node(self, call: InferenceCall) -> None:
        """A node tried again at once (it is the only one) gets a short, growing breather first."""
        if len(call.tried) >= 2 and call.tried[-1] is call.tried[-2]:
            await asyncio.sleep(self._policy.same_node_pause * (call.attempts - 1))

    def _attempt(self, call: InferenceCall, node: Node, model: str) -> NodeAttempt:
        return NodeAttempt(node, model, self.clock, call, self._on_unreachable)

    def _peers(self, node: Node, model: str) -> list[Node]:
        try:
            return self._registry.candidates(model)
        except ModelNotFound:
            return [node]

    # ---- unary ---------------------------------------------------------------------------------

    async def unary(self, call: InferenceCall, model: str, route: Route) -> bytes:
        """The node's whole JSON answer; its checked usage is recorded on `call`."""
        failure: Exception | None = None
        while True:
            node = self._choose(call, model, failure)
            await self._pause_if_same_node(call)
            attempt = self._attempt(call, node, model)
            request = route(node)
            try:
                raw = await self._transport.post(node, request.path, request.payload, **self._options(call, attempt))
                parsed = answer_object(node, raw)  # garbage is a node failure
                if request.check_answer is not None:
                    request.check_answer(node, parsed)
                call.usage = checked_usage(attempt, call.limits, parsed.get("usage"))
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

    def _record_unary(self, attempt: NodeAttempt, model: str, usage: dict[str, Any] | None) -> None:
        """A non-streamed answer only tells its total time: it scales the node's TTFT and TPOT
        estimates in proportion, keeping their shape."""
        node, now = attempt.node, self.clock()
        duration = now - attempt.started
        tokens = int((usage or {}).get("completion_tokens") or 0)
        ttft, tpot = latency_estimates(node, model, self._peers(node, model), now)
        expected = ttft + max(tokens - 1, 0) * tpot
        scale = duration / expected if expected > 0 else 1.0
        attempt.succeeded(ttft=ttft * scale, tpot=tpot * scale if tokens >= 2 else None, output_tokens=tokens or None)

    # ---- streams -------------------------------------------------------------------------------

    async def stream(self, call: InferenceCall, model: str, route: Route) -> AsyncIterator[list[bytes]]:
        """The node's events as it wrote them, in batches of those that arrived together.

        Usage is always requested from the node (the proxy meters every stream, see
        `stream_body`); the usage-only chunk is not relayed: it is kept in `call.usage_chunk` when the
        client asked for it (it goes out last, with the cost), dropped otherwise.
        A stream that stops before its end ([DONE]) is a node failure, never a silent success.
        """
        failure: Exception | None = None
        while True:
            node = self._choose(call, model, failure)
            await self._pause_if_same_node(call)
            request = route(node)
            reader = request.reader or read_chunks
            delivered = False
            attempts = reader(self, call, self._attempt(call, node, model), request)
            try:
                async with aclosing(attempts):
                    async for batch in attempts:
                        delivered = True
                        yield batch
                return
            except RETRYABLE as error:
                if delivered:
                    raise
                self._check_retry(call, error)
                failure = error

    # What stream readers use (read_chunks below, responses/passthrough.py).

    def open_stream(
        self, call: InferenceCall, attempt: NodeAttempt, request: NodeRequest
    ) -> AsyncIterator[list[bytes]]:
        """The node's SSE `data:` payloads for this attempt, in batches."""
        return self._transport.stream(attempt.node, request.path, request.payload, **self._options(call, attempt))

    async def next_batch(
        self, call: InferenceCall, attempt: NodeAttempt, batches: AsyncIterator[list[bytes]], *, first: bool
    ) -> list[bytes] | None:
        """The next batch; while no token has come yet (`first`), within the first-token timeout and the deadline."""
        if not first:
            return await anext(batches, None)
        budget = self._policy.first_token_timeout
        if call.deadline is not None:
            budget = min(budget, call.deadline - self.clock())
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                return await anext(batches, None)
        except TimeoutError:
            raise NodeTimeout(f"Node {attempt.node.id} sent no token within {budget:.1f} s.") from None

    @staticmethod
    def _options(call: InferenceCall, attempt: NodeAttempt) -> dict[str, Any]:
        """The transport's keywords for this attempt: the request id, its traceparent when traced, the
        call's node context when set."""
        options: dict[str, Any] = {"request_id": call.request_id, **attempt.observation.traceparent()}
        if call.node_context is not None:
            options["context"] = call.node_context
        return options


def stream_body(body: dict[str, Any]) -> dict[str, Any]:
    """A chat/completions body as a stream is sent: the node is always asked for its usage."""
    return {**body, "stream_options": {**body.get("stream_options", {}), "include_usage": True}}


async def read_chunks(
    relay: InferenceRelay, call: InferenceCall, attempt: NodeAttempt, request: NodeRequest
) -> AsyncGenerator[list[bytes], None]:
    """One attempt's OpenAI SSE chunks until [DONE]: classified once each, counted, capped, measured."""
    node = attempt.node
    held: list[bytes] = []
    first_token_at: float | None = None
    last_token_at = 0.0
    tokens = 0
    done = overproduced = False
    cap = StreamCap(call.limits) if call.limits is not None else None
    wants_usage = request.client_wants_usage
    with attempt.judged(call):
        batches = relay.open_stream(call, attempt, request)
        async with aclosing(batches):  # type: ignore[type-var]
            while not done:
                batch = await relay.next_batch(call, attempt, batches, first=first_token_at is None)
                if batch is None:
                    raise NodeFailed(f"Node {node.id} ended the stream before [DONE].")
                out: list[bytes] = []
                out_tokens = 0  # delivered once `out` is relayed: a failure later in the batch withholds them
                for data in batch:
                    if data == _DONE:
                        done = True
                        break
                    parsed = answer_object(node, data, "a chunk")  # garbage is a node failure
                    seen = classify(parsed)
                    if seen.kind is ChunkKind.ERROR:
                        check_stream_error(node, parsed)
                    if call.response_id is None and call.span is not None and isinstance(parsed.get("id"), str):
                        call.response_id = parsed["id"]
                    if seen.usage is not None:
                        call.usage = checked_usage(attempt, call.limits, seen.usage)
                    if seen.kind is ChunkKind.USAGE:
                        if wants_usage:  # held until the request is settled: it will carry the cost
                            call.usage_chunk = data
                        continue
                    if seen.kind is ChunkKind.TOKEN:
                        if cap is not None and cap.exceeded_by(seen):
                            # Past the cap the node was told: the client gets a clean end instead.
                            overproduced = done = True
                            call.usage = cap.usage()
                            chat = request.path.endswith("/chat/completions")
                            closing = cap.closing(parsed, chat=chat, with_usage=wants_usage)
                            if wants_usage:
                                call.usage_chunk = closing.pop()
                            out += held + closing
                            held.clear()
                            break
                        last_token_at = relay.clock()
                        tokens += 1
                        out_tokens += 1
                        if first_token_at is None:
                            first_token_at = last_token_at
                            attempt.first_token()
                    if first_token_at is None:
                        if len(held) < MAX_HELD:
                            held.append(data)
                            continue
                        first_token_at = relay.clock()  # no tokens come as we expect them: stop holding
                    if held:
                        out += held
                        held.clear()
                    out.append(data)
                if out:
                    call.delivered += out_tokens
                    yield out
        if held:  # a reply without any token
            yield held
        completion = int((call.usage or {}).get("completion_tokens") or 0) or tokens or None
        ttft, tpot = attempt.streamed(
            first_token_at, last_token_at, tokens, output_tokens=completion, overproduced=overproduced
        )
        if overproduced:
            log.warning("node %s generated past the output cap of request %s", node.id, call.request_id)
        else:
            observe_stream(attempt.model, ttft, tpot)
