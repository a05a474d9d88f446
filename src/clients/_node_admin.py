"""NodeAdminClient: an asyncio client of the core's NodeAdminService (the node registry changed at runtime).

    async with await NodeAdminClient.connect("127.0.0.1:50051", admin_token="adm-...") as admin:
        node = await admin.add_node(node_id="gpu-7", url="http://10.0.0.7:8000", models=["llama-3"])
        print(node.healthy, [n.node_id for n in await admin.list_node_states()])
        await admin.drain_node(node_id="gpu-7")      # no new requests; those in flight finish
        await admin.remove_node(node_id="gpu-7")

Every call sends `authorization: Bearer <admin_token>` (the core's `accounts.admin_token`). Changes apply to
the core instance called: with several cores, call each. Like the other clients, every call takes
keyword-only `timeout` (seconds; None uses `default_timeout`, `math.inf` means none) and `metadata` (an
`authorization` entry there wins), and failures raise the RoutingError family: NODE_ALREADY_EXISTS is a
RoutingError with code ALREADY_EXISTS, NODE_NOT_FOUND a NotFoundError, a wrong token an AuthenticationError
(PERMISSION_DENIED), a core without an admin token a RoutingError with reason ADMIN_DISABLED.
"""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline sent to the core, not a local wait to replace by asyncio.timeout.
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from atoma_proxy.clients._channel import ChannelOwner, Options, open_channel
from atoma_proxy.clients._node_admin_models import NodeState, node_state
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2_grpc as pb_grpc

__all__ = ["NodeAdminClient"]


class NodeAdminClient(ChannelOwner):
    """Client of NodeAdminService. Create it with `await NodeAdminClient.connect(...)` and close it when done."""

    def __init__(
        self, channel: grpc.aio.Channel, *, admin_token: str | None = None, default_timeout: float | None = 60
    ) -> None:
        """Wrap an open channel, which the client then owns and closes; `connect()` is the usual way in."""
        self._channel = channel
        self._stub = pb_grpc.NodeAdminServiceStub(channel)
        self.admin_token = admin_token
        self.default_timeout = default_timeout

    @classmethod
    async def connect(
        cls,
        target: str,
        *,
        admin_token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        default_timeout: float | None = 60,
        channel_options: Sequence[tuple[str, Any]] = (),
        connect_timeout: float | None = 10,
    ) -> NodeAdminClient:
        """Open a channel to the core at `target` ("host:port"); the options are RoutingClient.connect's.

        Args:
            admin_token: the core's `accounts.admin_token`, sent with every call.
        """
        channel = await open_channel(target, tls=tls, channel_options=channel_options, connect_timeout=connect_timeout)
        return cls(channel, admin_token=admin_token, default_timeout=default_timeout)

    async def add_node(
        self,
        *,
        node_id: str,
        url: str,
        models: Sequence[str],
        input_price_per_million: int = 0,
        output_price_per_million: int = 0,
        price_per_image: int = 0,
        api_key: str | None = None,
        confidential_signing_key: bytes = b"",
        apis: Sequence[str] = (),
        timeout: float | None = None,
        metadata: Options = None,
    ) -> NodeState:
        """Add a node (a draining one of the same id is replaced); it is probed once before this returns.

        Args:
            url: base URL of the node's OpenAI-compatible API, without /v1.
            models: the models it serves, at least one.
            input_price_per_million, output_price_per_million: micro-USD per million tokens.
            price_per_image: micro-USD per generated image (image models).
            api_key: the bearer key the node expects, if any (never returned).
            confidential_signing_key: the Ed25519 public key (32 bytes) of the node's confidential sidecar.
            apis: "chat" (always) and "responses" (the node serves POST /v1/responses).
        """
        request = pb.AddNodeRequest(
            node_id=node_id,
            url=url,
            models=models,
            input_price_per_million=input_price_per_million,
            output_price_per_million=output_price_per_million,
            price_per_image=price_per_image,
            api_key=api_key or "",
            confidential_signing_key=confidential_signing_key,
            apis=apis,
        )
        response = await self._call(self._stub.AddNode, request, self.admin_token, timeout, metadata)
        return node_state(response.node)

    async def drain_node(self, *, node_id: str, timeout: float | None = None, metadata: Options = None) -> NodeState:
        """Send no new request to the node; the requests in flight on it finish. Returns the node, draining."""
        request = pb.DrainNodeRequest(node_id=node_id)
        response = await self._call(self._stub.DrainNode, request, self.admin_token, timeout, metadata)
        return node_state(response.node)

    async def remove_node(self, *, node_id: str, timeout: float | None = None, metadata: Options = None) -> NodeState:
        """Remove the node at once (its requests in flight still finish). Returns its last state."""
        request = pb.RemoveNodeRequest(node_id=node_id)
        response = await self._call(self._stub.RemoveNode, request, self.admin_token, timeout, metadata)
        return node_state(response.node)

    async def list_node_states(self, *, timeout: float | None = None, metadata: Options = None) -> list[NodeState]:
        """Every node of the core's registry, draining ones included, sorted by id, with its routing state."""
        request = pb.ListNodeStatesRequest()
        response = await self._call(self._stub.ListNodeStates, request, self.admin_token, timeout, metadata)
        return [node_state(node) for node in response.nodes]
