"""Test doubles for the node machinery: a settable clock and a transport scripted per node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.pipeline.call import InferenceCall
from atoma_proxy.core.pipeline.relay import InferenceRelay, stream_body

ROLE = b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}'
TOKEN = b'{"choices":[{"index":0,"delta":{"content":" hi"}}],"usage":null}'
FINISH = b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}'
USAGE = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
DONE = b"[DONE]"
REPLY = b'{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":2,"completion_tokens":5,"total_tokens":7}}'


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_node(node_id: str, price: int = 100, models: tuple[str, ...] = ("m",), **kwargs: object) -> Node:
    return Node(node_id, f"http://{node_id}", frozenset(models), price, price, **kwargs)  # type: ignore[arg-type]


class Hang:
    """A script step that blocks until released (or cancelled)."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()


@dataclass
class ScriptedTransport:
    """Per node id, a list of steps; each call takes the next (the last one repeats).

    post steps: bytes (the answer), an Exception (raised) or a Hang.
    stream steps: a list of items, each bytes (yielded), an Exception (raised there) or a Hang.
    """

    posts: dict[str, list[object]] = field(default_factory=dict)
    streams: dict[str, list[list[object]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    healthy: dict[str, bool] = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)

    @staticmethod
    def _next(steps: list, node_id: str):  # type: ignore[no-untyped-def]
        if not steps:
            raise AssertionError(f"no script for node {node_id}")
        return steps.pop(0) if len(steps) > 1 else steps[0]

    async def post(self, node: Node, path: str, body: bytes, *, request_id: str, **options: object) -> bytes:
        self.calls.append(node.id)
        orjson.loads(body)
        step = self._next(self.posts.get(node.id, []), node.id)
        if isinstance(step, Hang):
            step.reached.set()
            await step.release.wait()
            return REPLY
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, bytes)
        return step

    async def stream(
        self, node: Node, path: str, body: bytes, *, request_id: str, **options: object
    ) -> AsyncIterator[list[bytes]]:
        self.calls.append(node.id)
        items = self._next(self.streams.get(node.id, []), node.id)
        try:
            for item in items:
                if isinstance(item, Hang):
                    item.reached.set()
                    await item.release.wait()
                elif isinstance(item, Exception):
                    raise item
                else:
                    yield [item]  # one network read per chunk, as a node streaming in real time
        finally:
            self.closed.append(node.id)

    async def probe(self, node: Node) -> bool:
        self.probes.append(node.id)
        return self.healthy.get(node.id, True)

    async def aclose(self) -> None:
        pass


async def relay_unary(
    relay: InferenceRelay,
    call: InferenceCall,
    model: str,
    path: str,
    body: dict[str, Any],
    check_answer: Callable[[Node, dict[str, Any]], None] | None = None,
) -> bytes:
    """The relay's unary call with every node sent the same body, as the servicer makes it."""
    return await relay.unary(call, model, relay.same_for_every_node(path, body, check_answer=check_answer))


async def relay_stream(
    relay: InferenceRelay, call: InferenceCall, model: str, path: str, body: dict[str, Any], *, client_wants_usage: bool
) -> AsyncIterator[list[bytes]]:
    """The batches a client gets of a stream: the relay's, then the usage chunk when it was asked for."""
    route = relay.same_for_every_node(path, stream_body(body), client_wants_usage=client_wants_usage)
    async for batch in relay.stream(call, model, route):
        yield batch
    if call.usage_chunk is not None:
        yield [call.usage_chunk]
