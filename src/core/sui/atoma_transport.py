"""The Atoma node protocol on the node transport (README "Sui").

`AtomaProtocolTransport` wraps the HTTP node transport. Nodes configured `protocol = "atoma"`
get the body re-serialized as serde_json does, `X-Signature` (the proxy's Sui signature over
blake2b-256 of those bytes) and the protocol's other headers; their JSON answer, and every chunk
of a stream, must carry a valid `response_hash` and `signature` — by the node's registered Sui
address when one is known — before it goes any further. An answer that fails is a node failure
(`NodeFailed`, reason NODE_FAILED, `node_signature` in metadata): it counts against the node's
health like a 5xx, and an unsent request is retried on another node. Other nodes pass through.

This is one seam around the transport, so the relay above it needs to know nothing of Sui.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from atoma_proxy.config import Settings
from atoma_proxy.core.errors import NodeFailed
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.nodes.transport import HttpNodeTransport, RequestContext
from atoma_proxy.core.sui.identity import check_atoma_nodes, proxy_keypair
from atoma_proxy.sui.crypto import InvalidSignature, SuiKeypair
from atoma_proxy.sui.node_protocol import sign_request, verify_response

__all__ = ["ATOMA", "AtomaProtocolTransport", "RequestContext", "build_node_transport"]

ATOMA = "atoma"
_DONE = b"[DONE]"


class AtomaProtocolTransport:
    """A NodeTransport: Atoma-protocol nodes signed and verified, others as the inner transport does."""

    def __init__(self, inner: HttpNodeTransport, keypair: SuiKeypair) -> None:
        self._inner = inner
        self.keypair = keypair

    def _signed(self, body: bytes, context: RequestContext | None) -> tuple[bytes, bytes]:
        data, signature = sign_request(self.keypair, orjson.loads(body))
        headers = f"x-signature: {signature}\r\n"
        if context is not None:
            if context.user_id:
                headers += f"x-user-id: {context.user_id}\r\n"
            if context.stack_small_id is not None:
                headers += f"x-stack-small-id: {context.stack_small_id}\r\n"
            if context.tx_digest:
                headers += f"x-tx-digest: {context.tx_digest}\r\n"
        return data, headers.encode("latin-1")

    async def post(
        self,
        node: Node,
        path: str,
        body: bytes,
        *,
        request_id: str,
        traceparent: str = "",
        context: RequestContext | None = None,
    ) -> bytes:
        if node.protocol != ATOMA:
            return await self._inner.post(node, path, body, request_id=request_id, traceparent=traceparent)
        data, headers = self._signed(body, context)
        raw = await self._inner.post(
            node, path, data, request_id=request_id, traceparent=traceparent, extra_headers=headers
        )
        _check(node, raw)
        return raw

    def stream(
        self,
        node: Node,
        path: str,
        body: bytes,
        *,
        request_id: str,
        traceparent: str = "",
        context: RequestContext | None = None,
    ) -> AsyncIterator[list[bytes]]:
        if node.protocol != ATOMA:
            return self._inner.stream(node, path, body, request_id=request_id, traceparent=traceparent)
        return self._verified_stream(node, path, body, request_id, traceparent, context)

    async def _verified_stream(
        self, node: Node, path: str, body: bytes, request_id: str, traceparent: str, context: RequestContext | None
    ) -> AsyncIterator[list[bytes]]:
        data, headers = self._signed(body, context)
        batches = self._inner.stream(
            node, path, data, request_id=request_id, traceparent=traceparent, extra_headers=headers
        )
        try:
            async for batch in batches:
                for index, chunk in enumerate(batch):
                    if chunk == _DONE:
                        continue
                    try:
                        _check(node, chunk)
                    except NodeFailed:
                        if index:
                            yield batch[:index]  # the verified chunks before it still go out
                        raise
                yield batch
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    async def probe(self, node: Node) -> bool:
        return await self._inner.probe(node)

    async def fetch_metrics(self, node: Node) -> str | None:
        return await self._inner.fetch_metrics(node)

    def open_connections(self) -> int:
        return self._inner.open_connections()

    async def aclose(self) -> None:
        await self._inner.aclose()


def _check(node: Node, answer: bytes) -> None:
    try:
        verify_response(answer, signer=node.sui_address)
    except InvalidSignature as error:
        raise NodeFailed(
            f"Node {node.id} sent an answer that fails verification: {error}.",
            metadata={"node_signature": str(error)},
        ) from None


def build_node_transport(settings: Settings) -> HttpNodeTransport | AtomaProtocolTransport:
    """The core's node transport: Atoma-protocol capable when the proxy has a Sui key."""
    keypair = proxy_keypair(settings.sui)
    check_atoma_nodes(settings, keypair)
    inner = HttpNodeTransport(settings.core)
    return inner if keypair is None else AtomaProtocolTransport(inner, keypair)
