"""Routing a Responses request per chosen node: passed through to a node that serves the Responses
API (`apis = ["chat", "responses"]`), translated to chat completions for one that does not.

The node is chosen as for chat (every node of the model is a candidate); each attempt then sends
what that node speaks, so failover before the first byte crosses between the two kinds. A node
that serves Responses gets the client's accepted request with the proxy's output cap in
`max_output_tokens` and `store: false`; its `usage` (input/output tokens) is checked like a chat
node's (node_limits.check_usage). In streams, each `response.output_text.delta` event is a token:
past the cap the node was told, relaying stops and the stream ends with `response.incomplete`.
A Responses stream ends with its `response.completed`/`.incomplete`/`.failed` event (no [DONE]).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson

from atoma_proxy.core.errors import NodeFailed, NodeRejectedRequest
from atoma_proxy.core.inference import RETRYABLE, InferenceCall, InferenceRelay, _Attempt, _checked_usage
from atoma_proxy.core.nodes.answers import answer_object, check_stream_error
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.responses.request import ResponsesRequest

__all__ = ["CHAT_PATH", "RESPONSES_PATH", "Relayed", "is_text_delta", "responses_body", "stream", "unary"]

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
_DELTA = re.compile(rb'"type": ?"response\.output_text\.delta"')
_MAX_HELD = 16  # framing events held before the first token, as for chat
_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@dataclass
class Relayed:
    """One batch (or the whole answer) from the node, and whether it is the Responses API's own."""

    passed_through: bool
    data: list[bytes]


def is_text_delta(data: bytes) -> bool:
    """Whether a Responses stream event is a `response.output_text.delta` (one generated token)."""
    return _DELTA.search(data) is not None


def responses_body(wanted: ResponsesRequest) -> dict[str, Any]:
    """The node's Responses request: the client's, with the cap the chat body got (after reserving)."""
    body = {**wanted.body, "store": False}
    cap = wanted.chat.get("max_completion_tokens")
    if cap is not None:
        body["max_output_tokens"] = cap
    return body


def _route(node: Node, wanted: ResponsesRequest) -> tuple[str, bytes]:
    if node.serves_responses:
        return RESPONSES_PATH, orjson.dumps(responses_body(wanted))
    return CHAT_PATH, orjson.dumps(wanted.chat)


async def unary(relay: InferenceRelay, call: InferenceCall, wanted: ResponsesRequest) -> Relayed:
    """The node's whole answer (a `response` object, or a chat completion to translate)."""
    failure: Exception | None = None
    while True:
        node = relay._choose(call, wanted.model, failure)
        await relay._pause_if_same_node(call)
        attempt = _Attempt(node, wanted.model, relay._clock, call)
        path, payload = _route(node, wanted)
        try:
            trace = attempt.observation.traceparent()
            raw = await relay._transport.post(node, path, payload, request_id=call.request_id, **trace)
            parsed = answer_object(node, raw)
            if node.serves_responses and parsed.get("object") != "response":
                raise NodeFailed(f"Node {node.id} answered /v1/responses with something other than a response.")
            call.usage = _checked_usage(attempt, call.limits, parsed.get("usage"))
            relay._record_unary(attempt, wanted.model, call.usage)
            return Relayed(node.serves_responses, [raw])
        except NodeRejectedRequest:
            attempt.rejected()
            raise
        except RETRYABLE as error:
            attempt.failed(error)
            relay._check_retry(call, error)
            failure = error
        finally:
            attempt.abandoned()


async def stream(relay: InferenceRelay, call: InferenceCall, wanted: ResponsesRequest) -> AsyncIterator[Relayed]:
    """The node's events or chat chunks, in batches; failover (to either kind) until the first one."""
    wanted.chat["stream_options"] = {**wanted.chat.get("stream_options", {}), "include_usage": True}
    failure: Exception | None = None
    while True:
        node = relay._choose(call, wanted.model, failure)
        await relay._pause_if_same_node(call)
        path, payload = _route(node, wanted)
        if node.serves_responses:
            attempt = _responses_attempt(relay, call, node, wanted.model, payload)
        else:
            attempt = relay._stream_attempt(call, node, wanted.model, path, payload, True)
        delivered = False
        try:
            async with aclosing(attempt):
                async for batch in attempt:
                    delivered = True
                    yield Relayed(node.serves_responses, batch)
            return
        except RETRYABLE as error:
            if delivered:
                raise
            relay._check_retry(call, error)
            failure = error


def _cut(opening: dict[str, Any] | None, call: InferenceCall, delivered: int, sequence: Any) -> bytes:
    """The `response.incomplete` event that ends a stream cut at the cap (after the last relayed event)."""
    response = dict((opening or {}).get("response") or {})
    response.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    assert call.limits is not None
    prompt = call.limits.prompt_tokens
    response["usage"] = {"input_tokens": prompt, "output_tokens": delivered, "total_tokens": prompt + delivered}
    call.usage = {"prompt_tokens": prompt, "completion_tokens": delivered, "total_tokens": prompt + delivered}
    event: dict[str, Any] = {"type": "response.incomplete", "response": response}
    if type(sequence) is int:
        event["sequence_number"] = sequence + 1
    return orjson.dumps(event)


async def _responses_attempt(
    relay: InferenceRelay, call: InferenceCall, node: Node, model: str, payload: bytes
) -> AsyncGenerator[list[bytes], None]:
    attempt = _Attempt(node, model, relay._clock, call)
    held: list[bytes] = []
    sequence: int | None = None  # the node's sequence_number of the latest event
    opening: dict[str, Any] | None = None  # response.created: the head of a cut stream's last event
    tokens, first_at, last_at, done, overproduced = 0, None, 0.0, False, False
    cap = call.limits.max_completion_tokens if call.limits is not None else None
    try:
        trace = attempt.observation.traceparent()
        batches = relay._transport.stream(node, RESPONSES_PATH, payload, request_id=call.request_id, **trace)
        async with aclosing(batches):
            while not done:
                batch = await (relay._first_chunks(node, batches, call) if first_at is None else anext(batches, None))
                if batch is None:
                    raise NodeFailed(f"Node {node.id} ended the Responses stream before its last event.")
                out: list[bytes] = []
                for data in batch:
                    event = answer_object(node, data, "an event")
                    check_stream_error(node, event)
                    kind = event.get("type")
                    if type(event.get("sequence_number")) is int:
                        sequence = event["sequence_number"]
                    if kind == "response.created":
                        opening = event
                    if is_text_delta(data):
                        previous = sequence - 1 if type(sequence) is int else None  # the last relayed event's
                        if cap is not None and tokens >= cap:
                            overproduced = done = True
                            out += [*held, _cut(opening, call, tokens, previous)]
                            held.clear()
                            break
                        tokens += 1
                        last_at = relay._clock()
                        if first_at is None:
                            first_at = last_at
                            attempt.first_token()
                    if kind in _TERMINAL:
                        response = event.get("response")
                        usage = response.get("usage") if isinstance(response, dict) else None
                        call.usage = _checked_usage(attempt, call.limits, usage)
                        done = True
                    if first_at is None and not done and len(held) < _MAX_HELD:
                        held.append(data)  # framing before the first token: held, so failover stays possible
                        continue
                    out += [*held, data]
                    held.clear()
                    if done:
                        break
                if out:
                    call.chunks_received += len(out)
                    yield out
        if held:
            call.chunks_received += len(held)
            yield held
        ttft = first_at - attempt.started if first_at is not None else None
        tpot = (last_at - first_at) / (tokens - 1) if first_at is not None and tokens > 1 else None
        if overproduced:
            attempt.stats.overproduced += 1
            attempt.failed(NodeFailed(f"Node {node.id} generated past the output cap it was told."))
        else:
            attempt.succeeded(ttft=ttft, tpot=tpot, output_tokens=tokens or None)
    except NodeRejectedRequest:
        attempt.rejected()
        raise
    except RETRYABLE as error:
        attempt.failed(error)
        call.usage = None
        raise
    finally:
        attempt.abandoned()
