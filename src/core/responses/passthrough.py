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

from atoma_proxy.core.errors import NodeFailed
from atoma_proxy.core.nodes.answers import answer_object, check_stream_error
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.pipeline.call import InferenceCall
from atoma_proxy.core.pipeline.relay import (
    MAX_HELD,
    InferenceRelay,
    NodeAttempt,
    NodeRequest,
    checked_usage,
    stream_body,
)
from atoma_proxy.core.responses.request import ResponsesRequest

__all__ = ["CHAT_PATH", "RESPONSES_PATH", "Relayed", "is_text_delta", "responses_body", "stream", "unary"]

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
_DELTA = re.compile(rb'"type": ?"response\.output_text\.delta"')
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


def _check_response(node: Node, parsed: dict[str, Any]) -> None:
    if parsed.get("object") != "response":
        raise NodeFailed(f"Node {node.id} answered /v1/responses with something other than a response.")


class _Routes:
    """What each node is sent: the Responses request to a node that serves it, else the chat request.
    Each form is serialized once, when a node first needs it."""

    def __init__(self, wanted: ResponsesRequest, *, stream: bool) -> None:
        self._wanted = wanted
        self._stream = stream
        self._responses: NodeRequest | None = None
        self._chat: NodeRequest | None = None

    def __call__(self, node: Node) -> NodeRequest:
        if node.serves_responses:
            if self._responses is None:
                payload = orjson.dumps(responses_body(self._wanted))
                reader = _read_responses_events if self._stream else None
                self._responses = NodeRequest(RESPONSES_PATH, payload, _check_response, reader)
            return self._responses
        if self._chat is None:
            chat = stream_body(self._wanted.chat) if self._stream else self._wanted.chat
            self._chat = NodeRequest(CHAT_PATH, orjson.dumps(chat))
        return self._chat


async def unary(relay: InferenceRelay, call: InferenceCall, wanted: ResponsesRequest) -> Relayed:
    """The node's whole answer (a `response` object, or a chat completion to translate)."""
    raw = await relay.unary(call, wanted.model, _Routes(wanted, stream=False))
    assert call.node is not None
    return Relayed(call.node.serves_responses, [raw])


async def stream(relay: InferenceRelay, call: InferenceCall, wanted: ResponsesRequest) -> AsyncIterator[Relayed]:
    """The node's events or chat chunks, in batches; failover (to either kind) until the first one."""
    batches = relay.stream(call, wanted.model, _Routes(wanted, stream=True))
    async with aclosing(batches):  # type: ignore[type-var]
        async for batch in batches:
            assert call.node is not None
            yield Relayed(call.node.serves_responses, batch)


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


async def _read_responses_events(
    relay: InferenceRelay, call: InferenceCall, attempt: NodeAttempt, request: NodeRequest
) -> AsyncGenerator[list[bytes], None]:
    """One attempt's Responses API events, until the terminal one: each text delta is one token."""
    node = attempt.node
    held: list[bytes] = []
    sequence: int | None = None  # the node's sequence_number of the latest event
    opening: dict[str, Any] | None = None  # response.created: the head of a cut stream's last event
    tokens, first_at, last_at, done, overproduced = 0, None, 0.0, False, False
    cap = call.limits.max_completion_tokens if call.limits is not None else None
    with attempt.judged(call):
        batches = relay.open_stream(call, attempt, request)
        async with aclosing(batches):  # type: ignore[type-var]
            while not done:
                batch = await relay.next_batch(call, attempt, batches, first=first_at is None)
                if batch is None:
                    raise NodeFailed(f"Node {node.id} ended the Responses stream before its last event.")
                out: list[bytes] = []
                out_tokens = 0  # delivered once `out` is relayed: a failure later in the batch withholds them
                for data in batch:
                    event = answer_object(node, data, "an event")
                    check_stream_error(node, event)
                    kind = event.get("type")
                    if type(event.get("sequence_number")) is int:
                        sequence = event["sequence_number"]
                    if kind == "response.created":
                        opening = event
                    if kind == "response.output_text.delta":
                        previous = sequence - 1 if type(sequence) is int else None  # the last relayed event's
                        if cap is not None and tokens >= cap:
                            overproduced = done = True
                            out += [*held, _cut(opening, call, tokens, previous)]
                            held.clear()
                            break
                        tokens += 1
                        out_tokens += 1
                        last_at = relay.clock()
                        if first_at is None:
                            first_at = last_at
                            attempt.first_token()
                    if kind in _TERMINAL:
                        response = event.get("response")
                        usage = response.get("usage") if isinstance(response, dict) else None
                        call.usage = checked_usage(attempt, call.limits, usage)
                        done = True
                    if first_at is None and not done and len(held) < MAX_HELD:
                        held.append(data)  # framing before the first token: held, so failover stays possible
                        continue
                    out += [*held, data]
                    held.clear()
                    if done:
                        break
                if out:
                    call.delivered += out_tokens
                    yield out
        if held:
            yield held
        attempt.streamed(first_at, last_at, tokens, output_tokens=tokens or None, overproduced=overproduced)
