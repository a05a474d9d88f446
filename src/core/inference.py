"""Running one inference request on a node: choose, call, relay, account for it.

The servicer hands over a node-ready JSON body; this module picks the node, keeps its
in-flight count, sends the body, and turns the node's answer into our stream events without
re-encoding what it does not need to look at (chunks pass through as the node wrote them; only
those that carry usage are parsed).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import orjson

from atoma_proxy.core.errors import NodeFailed
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.selection import NodeSelector
from atoma_proxy.core.nodes.transport import NodeTransport
from atoma_proxy.generated.atoma.routing.v1 import common_pb2

_DONE = b"[DONE]"
_USAGE_KEY = b'"usage"'
_NO_USAGE = (b'"usage":null', b'"usage": null')


@dataclass
class InferenceCall:
    """What the relay learns while serving one request; the servicer reports it as metadata."""

    request_id: str
    node: Node | None = None
    attempts: int = 0
    usage: dict[str, Any] | None = None
    # Chunks with choices received from the node: one token each as vLLM and SGLang stream, so a
    # stream cut short (client gone, node failed) is metered by what was actually generated.
    chunks_received: int = 0
    metadata_sent: bool = field(default=False)

    def routing(self) -> common_pb2.RoutingInfo:
        return common_pb2.RoutingInfo(
            node_id=self.node.id if self.node else "", attempts=self.attempts, request_id=self.request_id
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        pairs = [("x-request-id", self.request_id), ("x-atoma-attempts", str(self.attempts))]
        if self.node is not None:
            pairs.append(("x-atoma-node", self.node.id))
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


def usage_proto(usage: dict[str, Any]) -> common_pb2.Usage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return common_pb2.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(usage.get("total_tokens") or prompt + completion),
    )


class InferenceRelay:
    def __init__(self, registry: NodeRegistry, selector: NodeSelector, transport: NodeTransport) -> None:
        self._registry = registry
        self._selector = selector
        self._transport = transport

    def _choose(self, call: InferenceCall, model: str) -> Node:
        node = self._selector.select(model, self._registry.candidates(model))
        call.node = node
        call.attempts += 1
        return node

    async def unary(self, call: InferenceCall, model: str, path: str, body: dict[str, Any]) -> bytes:
        """The node's whole JSON answer; its usage is recorded on `call`."""
        node = self._choose(call, model)
        node.in_flight += 1
        try:
            raw = await self._transport.post(node, path, orjson.dumps(body), request_id=call.request_id)
        finally:
            node.in_flight -= 1
        if _USAGE_KEY in raw:
            parsed = orjson.loads(raw)
            usage = parsed.get("usage") if isinstance(parsed, dict) else None
            call.usage = usage if isinstance(usage, dict) else None
        return raw

    async def stream(
        self, call: InferenceCall, model: str, path: str, body: dict[str, Any], *, client_wants_usage: bool
    ) -> AsyncIterator[bytes]:
        """The node's SSE chunks as it wrote them, until [DONE].

        Usage is always requested from the node (the proxy meters every stream); the usage-only
        chunk is dropped again when the client did not ask for it. A stream that stops before
        [DONE] is a node failure, never a silent success.
        """
        body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        node = self._choose(call, model)
        node.in_flight += 1
        try:
            chunks = self._transport.stream(node, path, orjson.dumps(body), request_id=call.request_id)
            async with aclosing(chunks):
                async for data in chunks:
                    if data == _DONE:
                        return
                    if _carries_usage(data) and self._take_usage(call, data):
                        if not client_wants_usage:
                            continue
                    else:
                        call.chunks_received += 1
                    yield data
            raise NodeFailed(f"Node {node.id} ended the stream before [DONE].")
        finally:
            node.in_flight -= 1

    @staticmethod
    def _take_usage(call: InferenceCall, data: bytes) -> bool:
        """Record usage from a chunk; True when the chunk is the usage-only chunk."""
        parsed = orjson.loads(data)
        usage = parsed.get("usage") if isinstance(parsed, dict) else None
        if not isinstance(usage, dict):
            return False
        call.usage = usage
        return not parsed.get("choices")


def _carries_usage(data: bytes) -> bool:
    """Cheap byte test before any parsing: most chunks say `"usage":null` or nothing."""
    return _USAGE_KEY in data and _NO_USAGE[0] not in data and _NO_USAGE[1] not in data
