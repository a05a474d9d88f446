"""The relay over a scripted NodeTransport: usage handling, stream integrity, in-flight accounting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest

from atoma_proxy.core.errors import NodeFailed
from atoma_proxy.core.images import check_node_answer, client_answer
from atoma_proxy.core.node_limits import RequestLimits
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.selection import SelectionRequest, StrategySelector
from atoma_proxy.core.pipeline.call import InferenceCall
from atoma_proxy.core.pipeline.relay import InferenceRelay
from tests.core.nodes.support import relay_stream, relay_unary

CONTENT = b'{"choices":[{"index":0,"delta":{"content":" hi"}}],"usage":null}'
USAGE = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'


class ScriptedTransport:
    def __init__(self, events: list[bytes], hang: bool = False, *, together: bool = False) -> None:
        self.events = events
        self.hang = hang
        self.together = together  # all events in one network read
        self.bodies: list[dict] = []
        self.closed = False
        self.hanging = asyncio.Event()

    async def post(self, node: Node, path: str, body: bytes, *, request_id: str) -> bytes:
        self.bodies.append(orjson.loads(body))
        return b'{"usage":{"prompt_tokens":2,"completion_tokens":5,"total_tokens":7}}'

    async def stream(self, node: Node, path: str, body: bytes, *, request_id: str) -> AsyncIterator[list[bytes]]:
        self.bodies.append(orjson.loads(body))
        try:
            if self.together:
                yield list(self.events)
            for event in [] if self.together else self.events:
                yield [event]
            if self.hang:
                self.hanging.set()
                await asyncio.Event().wait()
        finally:
            self.closed = True

    async def probe(self, node: Node) -> bool:
        return True

    async def aclose(self) -> None:
        pass


def _relay(transport: ScriptedTransport) -> tuple[InferenceRelay, Node]:
    node = Node("n", "http://n", frozenset({"m"}), 1, 1)
    return InferenceRelay(NodeRegistry([node]), StrategySelector(), transport), node


async def _run(relay: InferenceRelay, call: InferenceCall, wants_usage: bool) -> list[bytes]:
    return [
        chunk
        async for batch in relay_stream(
            relay, call, "m", "/v1/chat/completions", {"stream": True}, client_wants_usage=wants_usage
        )
        for chunk in batch
    ]


@pytest.mark.parametrize("wants_usage", [True, False])
async def test_usage_is_always_requested_and_relayed_only_when_asked(wants_usage: bool) -> None:
    transport = ScriptedTransport([CONTENT, USAGE, b"[DONE]"])
    relay, node = _relay(transport)
    call = InferenceCall(request_id="r")
    chunks = await _run(relay, call, wants_usage)
    assert transport.bodies[0]["stream_options"] == {"include_usage": True}
    assert chunks == ([CONTENT, USAGE] if wants_usage else [CONTENT])
    assert call.usage == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert call.end().usage.total_tokens == 4
    assert node.in_flight == 0


async def test_chunks_read_together_are_relayed_as_one_batch() -> None:
    role = b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'
    transport = ScriptedTransport([role, CONTENT, CONTENT, USAGE, b"[DONE]", b"ignored"], together=True)
    relay, node = _relay(transport)
    call = InferenceCall(request_id="r")
    batches = [b async for b in relay_stream(relay, call, "m", "/v1/chat/completions", {}, client_wants_usage=True)]
    assert batches == [[role, CONTENT, CONTENT], [USAGE]]  # the usage chunk goes last, once settled (with the cost)
    assert call.delivered == 2  # tokens: the role and usage-only chunks carry none
    assert node.in_flight == 0


async def test_a_stream_cut_before_done_is_a_node_failure() -> None:
    relay, node = _relay(ScriptedTransport([CONTENT]))
    with pytest.raises(NodeFailed, match="before \\[DONE\\]"):
        await _run(relay, InferenceCall(request_id="r"), False)
    assert node.in_flight == 0


async def test_cancellation_closes_the_node_stream_and_frees_the_slot() -> None:
    transport = ScriptedTransport([CONTENT], hang=True)
    relay, node = _relay(transport)
    task = asyncio.create_task(_run(relay, InferenceCall(request_id="r"), False))
    await transport.hanging.wait()
    assert node.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transport.closed
    assert node.in_flight == 0


async def test_unary_records_usage() -> None:
    relay, node = _relay(ScriptedTransport([]))
    call = InferenceCall(request_id="r")
    await relay_unary(relay, call, "m", "/v1/embeddings", {"input": ["x"]})
    assert call.usage == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert call.node is node and call.attempts == 1


def _limits(cap: int) -> RequestLimits:
    return RequestLimits(output_cap=cap, choices=1, prompt_tokens=3)


async def test_a_stream_past_the_output_cap_is_cut_cleanly_and_counts_as_a_node_failure() -> None:
    """Issue 10.2: a node streaming 1,000 tokens for a cap of 5 delivers 5, then a clean `length` end."""
    transport = ScriptedTransport([CONTENT] * 1000 + [USAGE, b"[DONE]"])
    relay, node = _relay(transport)
    call = InferenceCall(request_id="r", limits=_limits(5))
    chunks = await _run(relay, call, True)
    assert chunks[:5] == [CONTENT] * 5 and len(chunks) == 7
    finish, usage = orjson.loads(chunks[5]), orjson.loads(chunks[6])
    assert finish["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]
    assert usage["usage"] == call.usage == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert transport.closed and node.in_flight == 0  # the node's stream was released
    stats = node.model_stats("m")
    assert (stats.overproduced, stats.failures, stats.successes) == (1, 1, 0)


async def test_a_stream_within_its_cap_is_relayed_whole() -> None:
    relay, node = _relay(ScriptedTransport([CONTENT] * 5 + [USAGE, b"[DONE]"]))
    call = InferenceCall(request_id="r", limits=_limits(5))
    assert await _run(relay, call, False) == [CONTENT] * 5
    assert (node.model_stats("m").successes, node.model_stats("m").overproduced) == (1, 0)


class PerNodeAnswers(ScriptedTransport):
    """A transport that answers each node with its own body."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        super().__init__([])
        self.answers = answers

    async def post(self, node: Node, path: str, body: bytes, *, request_id: str) -> bytes:
        return self.answers[node.id]


async def test_implausible_usage_fails_over_before_anything_is_delivered() -> None:
    """Issue 10.4: usage beyond what the request could produce is the node's failure, and another node answers."""
    liar, honest = Node("liar", "http://l", frozenset({"m"}), 1, 1), Node("honest", "http://h", frozenset({"m"}), 9, 9)
    answers = {
        "liar": b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4611686018427387904}}',
        "honest": b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}',
    }
    relay = InferenceRelay(NodeRegistry([liar, honest]), CheapestFirst(), PerNodeAnswers(answers))
    call = InferenceCall(request_id="r", limits=_limits(5))
    assert await relay_unary(relay, call, "m", "/v1/chat/completions", {}) == answers["honest"]
    assert call.node is honest and call.attempts == 2
    assert call.usage == {"prompt_tokens": 3, "completion_tokens": 5}
    stats = liar.model_stats("m")
    assert (stats.failures, stats.overproduced) == (1, 1)


@pytest.mark.parametrize(
    "usage", [b'"many"', b'{"prompt_tokens":-1}', b'{"completion_tokens":2.5}', b'{"total_tokens":true}']
)
async def test_garbage_usage_values_are_a_node_failure_never_believed(usage: bytes) -> None:
    body = b'{"choices":[],"usage":' + usage + b"}"
    relay, node = _relay(PerNodeAnswers({"n": body}))
    with pytest.raises(NodeFailed, match="implausible usage"):
        await relay_unary(relay, InferenceCall(request_id="r", limits=_limits(5)), "m", "/v1/chat/completions", {})
    assert node.model_stats("m").implausible_usage == 3  # each of the three attempts on the only node
    streamed = ScriptedTransport([CONTENT, b'{"choices":[],"usage":' + usage + b"}", b"[DONE]"])
    relay, node = _relay(streamed)
    with pytest.raises(NodeFailed, match="implausible usage"):
        await _run(relay, InferenceCall(request_id="r", limits=_limits(5)), True)
    assert node.model_stats("m").failures >= 1 and node.in_flight == 0


class CheapestFirst:
    def select(self, model: str, candidates: Sequence[Node], request: SelectionRequest | None = None) -> Node:
        tried = request.tried if request else ()
        return min((n for n in candidates if n not in tried), key=lambda n: n.price)


async def test_an_image_node_answering_with_its_own_url_fails_over() -> None:
    """Issue 14.5: a node that answers a URL where b64_json was asked fails; its URL never reaches the client."""
    leaky, honest = (
        Node("leaky", "http://l", frozenset({"m"}), 1, 1),
        Node("honest", "http://h", frozenset({"m"}), 9, 9),
    )
    answers = {
        "leaky": b'{"created":1,"data":[{"url":"http://10.0.0.7:8000/images/1.png"}]}',
        "honest": b'{"created":1,"data":[{"b64_json":"iVBORw0KGgoAAAA=","url":"http://10.0.0.8/x.png"}]}',
    }
    relay = InferenceRelay(NodeRegistry([leaky, honest]), CheapestFirst(), PerNodeAnswers(answers))
    call = InferenceCall(request_id="r")
    raw = await relay_unary(relay, call, "m", "/v1/images/generations", {}, check_node_answer)
    assert call.node is honest and call.attempts == 2 and leaky.model_stats("m").failures == 1
    assert orjson.loads(client_answer(raw, "url")) == {
        "created": 1,
        "data": [{"url": "data:image/png;base64,iVBORw0KGgoAAAA="}],
    }
    assert orjson.loads(client_answer(raw, "b64_json"))["data"] == [{"b64_json": "iVBORw0KGgoAAAA="}]
