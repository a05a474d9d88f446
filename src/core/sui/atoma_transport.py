"""The Atoma node protocol on the node transport (README "Sui").

`AtomaProtocol` is the `NodeProtocol` the HTTP node transport uses for nodes configured
`protocol = "atoma"`: their body is re-serialized as serde_json does and sent with `X-Signature` (the
proxy's Sui signature over blake2b-256 of those bytes) and the protocol's other headers; their JSON
answer, and every chunk of a stream, must carry a valid `response_hash` and `signature` — by the node's
registered Sui address when one is known — before it goes any further. An answer that fails is a node
failure (`NodeFailed`, reason NODE_FAILED, `node_signature` in metadata): it counts against the node's
health like a 5xx, and an unsent request is retried on another node. Other nodes are plain HTTP.

This is one hook in the transport, so the relay above it needs to know nothing of Sui.
"""

from __future__ import annotations

import orjson

from atoma_proxy.config import Settings
from atoma_proxy.core.errors import NodeFailed
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.nodes.transport import HttpNodeTransport, RequestContext
from atoma_proxy.core.sui.identity import check_atoma_nodes, proxy_keypair
from atoma_proxy.sui.crypto import InvalidSignature, SuiKeypair
from atoma_proxy.sui.node_protocol import sign_request, verify_response

__all__ = ["ATOMA", "AtomaProtocol", "RequestContext", "build_node_transport"]

ATOMA = "atoma"


class AtomaProtocol:
    """A NodeProtocol: requests signed with the proxy's key and told who they are for, answers verified."""

    def __init__(self, keypair: SuiKeypair) -> None:
        self.keypair = keypair

    def request(self, node: Node, body: bytes, context: RequestContext | None) -> tuple[bytes, bytes]:
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

    def check(self, node: Node, answer: bytes) -> None:
        try:
            verify_response(answer, signer=node.sui_address)
        except InvalidSignature as error:
            raise NodeFailed(
                f"Node {node.id} sent an answer that fails verification: {error}.",
                metadata={"node_signature": str(error)},
            ) from None


def build_node_transport(settings: Settings) -> HttpNodeTransport:
    """The core's node transport: Atoma-protocol capable when the proxy has a Sui key."""
    keypair = proxy_keypair(settings.sui)
    check_atoma_nodes(settings, keypair)
    return HttpNodeTransport(settings.core, {ATOMA: AtomaProtocol(keypair)} if keypair is not None else None)
