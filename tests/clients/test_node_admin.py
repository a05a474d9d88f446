"""NodeAdminClient against a running core: every RPC wrapped, typed node states, errors as the RoutingError family."""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from atoma_proxy.clients import (
    AuthenticationError,
    InvalidRequestError,
    NodeAdminClient,
    NodeModelState,
    NodeState,
    NotFoundError,
    RoutingError,
)
from atoma_proxy.config import NodeConfig
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2 as pb
from atoma_proxy.nodesim import RunningNodeSim, SimConfig, start_node_sim
from tests.support.cores import in_process_core

ADMIN_TOKEN = "node-admin-token-for-tests"
MODEL = "atoma/sim-chat"
SERVICE = pb.DESCRIPTOR.services_by_name["NodeAdminService"]


@dataclass
class Core:
    target: str
    spare: RunningNodeSim  # a node the core does not know yet


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[RunningNodeSim, RunningNodeSim]]:
    configured = await start_node_sim(SimConfig(node_id="sim-1", chat_models=[MODEL]))
    spare = await start_node_sim(SimConfig(node_id="sim-2", chat_models=[MODEL]))
    try:
        yield configured, spare
    finally:
        await spare.stop()
        await configured.stop()


@pytest.fixture
async def core(nodes: tuple[RunningNodeSim, RunningNodeSim]) -> AsyncIterator[Core]:
    configured, spare = nodes
    node = NodeConfig(
        id="sim-1", url=configured.url, models=[MODEL], input_price_per_million=100, output_price_per_million=200
    )
    async with in_process_core(nodes=[node], admin_token=ADMIN_TOKEN) as server:
        yield Core(f"127.0.0.1:{server.port}", spare)


@pytest.fixture
async def admin(core: Core) -> AsyncIterator[NodeAdminClient]:
    async with await NodeAdminClient.connect(core.target, admin_token=ADMIN_TOKEN) as client:
        yield client


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("rpc", [method.name for method in SERVICE.methods])
def test_every_rpc_has_a_method_with_keyword_only_timeout_and_metadata(rpc: str) -> None:
    method = getattr(NodeAdminClient, _snake_case(rpc), None)

    assert callable(method), f"NodeAdminClient does not wrap {rpc}"
    parameters = inspect.signature(method).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for name, p in parameters.items() if name != "self")
    assert {"timeout", "metadata"} <= set(parameters)


async def test_list_node_states_types_the_configured_node(admin: NodeAdminClient) -> None:
    [node] = await admin.list_node_states()

    assert isinstance(node, NodeState) and isinstance(node.raw, pb.NodeState)
    assert (node.node_id, node.models) == ("sim-1", (MODEL,))
    assert node.source == "static"  # given to the core, not read from a configuration file (nodes/runtime.py)
    assert (node.input_price_per_million, node.output_price_per_million) == (100, 200)
    assert (node.serving_state, node.draining, node.healthy, node.circuit_state) == ("active", False, True, "closed")
    assert (node.in_flight, node.ejected_for_seconds) == (0, 0.0)
    [model] = node.model_states
    assert isinstance(model, NodeModelState) and model.model == MODEL and model.raw == node.raw.model_states[0]


async def test_add_drain_and_remove_a_node(admin: NodeAdminClient, core: Core) -> None:
    added = await admin.add_node(
        node_id="sim-2",
        url=core.spare.url,
        models=[MODEL],
        input_price_per_million=7,
        price_per_image=40,
        apis=["chat"],
    )
    listed = [node.node_id for node in await admin.list_node_states()]
    drained = await admin.drain_node(node_id="sim-2")
    removed = await admin.remove_node(node_id="sim-2")
    left = [node.node_id for node in await admin.list_node_states()]

    assert (added.node_id, added.source, added.healthy, added.input_price_per_million) == ("sim-2", "admin", True, 7)
    assert added.url == core.spare.url.rstrip("/") and added.price_per_image == 40
    assert listed == ["sim-1", "sim-2"]
    assert drained.draining and drained.serving_state == "draining"
    assert removed.node_id == "sim-2"
    assert left == ["sim-1"]


@pytest.mark.parametrize(
    ("call", "kwargs", "cls", "code", "reason", "message", "param"),
    [
        (
            "add_node",
            {"node_id": "sim-1", "url": "http://127.0.0.1:9", "models": [MODEL]},
            RoutingError,
            grpc.StatusCode.ALREADY_EXISTS,
            "NODE_ALREADY_EXISTS",
            "Node `sim-1` exists already: drain it first to replace it.",
            "node_id",
        ),
        (
            "add_node",
            {"node_id": "n", "url": "ftp://x", "models": [MODEL]},
            InvalidRequestError,
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "`url` must be an http(s) URL such as http://10.0.0.7:8000.",
            "url",
        ),
        (
            "drain_node",
            {"node_id": "ghost"},
            NotFoundError,
            grpc.StatusCode.NOT_FOUND,
            "NODE_NOT_FOUND",
            "No node `ghost` in the registry.",
            "node_id",
        ),
        (
            "remove_node",
            {"node_id": "ghost"},
            NotFoundError,
            grpc.StatusCode.NOT_FOUND,
            "NODE_NOT_FOUND",
            "No node `ghost` in the registry.",
            "node_id",
        ),
        (
            "list_node_states",
            {"metadata": {"Authorization": "Bearer not-the-admin-token"}},
            AuthenticationError,
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
            "This call needs the admin token.",
            None,
        ),
    ],
)
async def test_errors_are_the_routing_error_family(
    admin: NodeAdminClient,
    call: str,
    kwargs: dict[str, object],
    cls: type[RoutingError],
    code: grpc.StatusCode,
    reason: str,
    message: str,
    param: str | None,
) -> None:
    with pytest.raises(RoutingError) as raised:
        await getattr(admin, call)(**kwargs)

    error = raised.value
    assert type(error) is cls
    assert (error.code, error.reason, error.domain, error.message) == (code, reason, "atoma.network", message)
    assert error.metadata.get("param") == param


async def test_without_a_token_the_caller_is_told_to_send_one(core: Core) -> None:
    async with await NodeAdminClient.connect(core.target) as anonymous:
        with pytest.raises(AuthenticationError) as raised:
            await anonymous.list_node_states()

    assert (raised.value.code, raised.value.reason) == (grpc.StatusCode.UNAUTHENTICATED, "MISSING_CREDENTIALS")


async def test_a_core_without_an_admin_token_refuses_with_admin_disabled() -> None:
    async with (
        in_process_core() as server,
        await NodeAdminClient.connect(f"127.0.0.1:{server.port}", admin_token=ADMIN_TOKEN) as admin,
    ):
        with pytest.raises(RoutingError) as raised:
            await admin.list_node_states()

    assert (raised.value.code, raised.value.reason) == (grpc.StatusCode.UNIMPLEMENTED, "ADMIN_DISABLED")


async def test_a_closed_client_refuses_calls(core: Core) -> None:
    admin = await NodeAdminClient.connect(core.target, admin_token=ADMIN_TOKEN)
    await admin.close()

    with pytest.raises(RuntimeError, match="this NodeAdminClient is closed"):
        await admin.list_node_states()
