"""AddNode: prices bounded like every price (README "Limits"), INVALID_ARGUMENT naming the field; `apis`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atoma_proxy.core.accounts.callers import AdminGate
from atoma_proxy.core.error_edge import ErrorEdgeInterceptor
from atoma_proxy.core.limits import MAX_PRICE_MICRO_USD
from atoma_proxy.core.node_admin_service import NodeAdminService
from atoma_proxy.core.nodes.health import HealthPoller
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2_grpc as pb_grpc
from tests.core.nodes.support import ScriptedTransport

ADMIN_TOKEN = "admin-token-0123456789"


@pytest.fixture
async def admin() -> AsyncIterator[tuple[pb_grpc.NodeAdminServiceStub, NodeRegistry]]:
    registry = NodeRegistry()
    # The poller is never reached: validation refuses the node first.
    service = NodeAdminService(registry, None, AdminGate(ADMIN_TOKEN), time.monotonic)  # type: ignore[arg-type]
    server = grpc.aio.server(interceptors=[ErrorEdgeInterceptor()])
    pb_grpc.add_NodeAdminServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.NodeAdminServiceStub(channel), registry
    finally:
        await server.stop(None)


@pytest.mark.parametrize("field", ["input_price_per_million", "output_price_per_million"])
@pytest.mark.parametrize("price", [MAX_PRICE_MICRO_USD + 1, 2**63 - 1])
async def test_a_node_price_past_the_limit_is_invalid_and_adds_no_node(
    admin: tuple[pb_grpc.NodeAdminServiceStub, NodeRegistry], field: str, price: int
) -> None:
    stub, registry = admin
    request = pb.AddNodeRequest(node_id="n", url="http://127.0.0.1:9", models=["m"], **{field: price})

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.AddNode(request, metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),))

    status = rpc_status.from_call(raised.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (raised.value.code(), info.reason, info.metadata["param"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        field,
    )
    assert registry.nodes() == []


async def test_an_unknown_api_is_invalid_and_adds_no_node(
    admin: tuple[pb_grpc.NodeAdminServiceStub, NodeRegistry],
) -> None:
    stub, registry = admin
    request = pb.AddNodeRequest(node_id="n", url="http://127.0.0.1:9", models=["m"], apis=["chat", "assistants"])

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.AddNode(request, metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),))

    status = rpc_status.from_call(raised.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (raised.value.code(), info.metadata["param"]) == (grpc.StatusCode.INVALID_ARGUMENT, "apis")
    assert "assistants" in (raised.value.details() or "") and registry.nodes() == []


async def test_a_node_added_with_the_responses_api_serves_it_and_one_without_does_not() -> None:
    registry = NodeRegistry()
    poller = HealthPoller(registry, ScriptedTransport(), interval=1.0)
    service = NodeAdminService(registry, poller, AdminGate(ADMIN_TOKEN), time.monotonic)
    server = grpc.aio.server(interceptors=[ErrorEdgeInterceptor()])
    pb_grpc.add_NodeAdminServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.NodeAdminServiceStub(channel)
            metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
            await stub.AddNode(
                pb.AddNodeRequest(node_id="r", url="http://r", models=["m"], apis=["chat", "responses"]),
                metadata=metadata,
            )
            await stub.AddNode(pb.AddNodeRequest(node_id="c", url="http://c", models=["m"]), metadata=metadata)
    finally:
        await server.stop(None)
    served = {node.id: node.serves_responses for node in registry.nodes()}
    assert served == {"r": True, "c": False}
