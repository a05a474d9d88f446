"""Stacks are sold only when a request could spend them: never for an image model, never from a node that is
down, ejected or draining; a refused purchase charges nothing (both databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.config import AccountsSettings, NodeConfig
from atoma_proxy.core.accounts import build_account_services
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.error_edge import ErrorEdgeInterceptor
from atoma_proxy.core.nodes.breaker import BreakerPolicy
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2_grpc as admin_grpc
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as pb_grpc
from tests.core.accounts.conftest import JWT_SECRET, FakeClock, cheap_hasher
from tests.core.accounts.test_services import ADMIN, ADMIN_TOKEN, Core, _account, _failure

CHAT, IMAGE = "m-chat", "m-image"


def _node(node_id: str) -> NodeConfig:
    return NodeConfig(
        id=node_id,
        url="http://127.0.0.1:9",
        models=[CHAT, IMAGE],
        input_price_per_million=100,
        output_price_per_million=300,
        price_per_image=1_000,
    )


@dataclass
class Pool:
    core: Core
    registry: NodeRegistry


@pytest.fixture
async def pool(sessions: async_sessionmaker[AsyncSession], clock: FakeClock) -> AsyncIterator[Pool]:
    registry = NodeRegistry.from_config(
        [_node(n) for n in ("up", "down", "ejected", "draining")], breaker_policy=BreakerPolicy()
    )
    registry.get("down").healthy = False  # type: ignore[union-attr]
    ejected = registry.get("ejected").breaker  # type: ignore[union-attr]
    for _ in range(BreakerPolicy().consecutive_failures):
        ejected.record_failure(ejected.dispatch())
    registry.drain("draining")
    api_keys = ApiKeyAuthenticator(sessions, 1.0)
    settings = AccountsSettings(jwt_secret=JWT_SECRET, admin_token=ADMIN_TOKEN)
    services = build_account_services(
        settings, sessions, api_keys, registry, hasher=cheap_hasher(), clock=clock, image_models=[IMAGE]
    )
    server = grpc.aio.server(interceptors=[ErrorEdgeInterceptor()])
    pb_grpc.add_AccountServiceServicer_to_server(services[0], server)
    admin_grpc.add_AccountAdminServiceServicer_to_server(services[1], server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            core = Core(pb_grpc.AccountServiceStub(channel), admin_grpc.AccountAdminServiceStub(channel))
            yield Pool(core, registry)
    finally:
        await server.stop(None)
        await api_keys.aclose()


async def test_no_stack_is_sold_for_an_image_model_or_from_a_node_that_is_down_ejected_or_draining(
    pool: Pool,
) -> None:
    core = pool.core
    account = await _account(core)
    await core.admin.CreditBalance(
        admin_pb.CreditBalanceRequest(user_id=account.user_id, amount_micro_usd=10**6, idempotency_key=account.email),
        metadata=ADMIN,
    )

    def buy(node_id: str, model: str) -> object:
        request = pb.BuyStackRequest(node_id=node_id, model=model, compute_units=1_000_000)
        return core.accounts.BuyStack(request, metadata=account.token)

    image = await _failure(buy("up", IMAGE))
    unusable = {node_id: await _failure(buy(node_id, CHAT)) for node_id in ("down", "ejected", "draining")}
    bought = await buy("up", CHAT)
    balance = await core.accounts.GetBalance(pb.GetBalanceRequest(), metadata=account.token)

    assert (image[0], image[1].reason, image[1].metadata["param"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        "model",
    )
    assert {node_id: (code, info.reason) for node_id, (code, info) in unusable.items()} == {
        node_id: (grpc.StatusCode.UNAVAILABLE, "NO_NODE_AVAILABLE") for node_id in ("down", "ejected", "draining")
    }
    assert bought.stack.node_id == "up"  # type: ignore[attr-defined]
    # Only the stack that was sold was paid: 1M units at 300 micro-USD per million.
    assert balance.balance.debited_micro_usd == 300
