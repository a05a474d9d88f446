"""The Sui RPCs over gRPC against a real database and the loopback chain: wallet proof, USDC deposit,
signed node registration (then the node routes), each failure as a status with its ErrorInfo reason."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.config import AccountsSettings, SuiSettings
from atoma_proxy.core import ledger
from atoma_proxy.core.accounts import build_account_services
from atoma_proxy.core.accounts.passwords import PasswordHasher
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.error_edge import ErrorEdgeInterceptor
from atoma_proxy.core.errors import REASONS
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.persistence.sui_models import SuiNode
from atoma_proxy.core.sui.chain import GraphQLChainClient
from atoma_proxy.core.sui.chain_registry import ChainNodeSync
from atoma_proxy.core.sui.ingest import EventIngestor
from atoma_proxy.core.sui.runtime import SuiRuntime
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as pb_grpc
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2 as reg_pb
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2_grpc as reg_grpc
from atoma_proxy.sui import serde_json
from atoma_proxy.sui.crypto import SuiKeypair, blake2b256
from tests.core.sui.conftest import NODE1_KEY, NODE2_KEY, PACKAGE, PROXY_KEY, USDC_PACKAGE, USER_KEY
from tests.core.sui.test_stacks import ATOMA_DB, MODEL, PRICE, _chain_answers
from tests.core.sui.test_wallets_and_deposits import _digest
from tests.support.sui_chain import RunningChain

Sessions = async_sessionmaker[AsyncSession]
JWT_SECRET = "sui-rpc-test-jwt-secret-0123456789abcdef0123456789"
PASSWORD = "password123"


@dataclass
class Core:
    accounts: pb_grpc.AccountServiceStub
    nodes: reg_grpc.NodeRegistrationServiceStub
    registry: NodeRegistry
    sessions: Sessions


@pytest.fixture
async def core(sessions: Sessions, running_chain: RunningChain) -> AsyncIterator[Core]:
    registry = NodeRegistry()
    settings = SuiSettings(
        http_rpc_node_addr=running_chain.url,
        atoma_package_id=PACKAGE,
        usdc_package_id=USDC_PACKAGE,
        atoma_db=ATOMA_DB,
        chain_stacks=True,
    )
    sui = SuiRuntime(settings, sessions, registry, keypair=SuiKeypair.from_keystring(PROXY_KEY))
    api_keys = ApiKeyAuthenticator(sessions, 1.0)
    accounts, _ = build_account_services(
        AccountsSettings(jwt_secret=JWT_SECRET),
        sessions,
        api_keys,
        registry,
        hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
        sui=sui.accounts,
    )
    server = grpc.aio.server(interceptors=[ErrorEdgeInterceptor()])
    pb_grpc.add_AccountServiceServicer_to_server(accounts, server)
    reg_grpc.add_NodeRegistrationServiceServicer_to_server(sui.registration, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Core(
                pb_grpc.AccountServiceStub(channel), reg_grpc.NodeRegistrationServiceStub(channel), registry, sessions
            )
    finally:
        await server.stop(None)
        await api_keys.aclose()
        await sui.stop()


async def _login(core: Core, email: str) -> tuple[tuple[str, str], ...]:
    await core.accounts.Register(pb.RegisterRequest(email=email, password=PASSWORD))
    login = await core.accounts.Login(pb.LoginRequest(email=email, password=PASSWORD))
    return (("authorization", f"Bearer {login.access_token}"),)


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert REASONS[info.reason] == error.code()
            return info.reason
    raise AssertionError("no ErrorInfo")


async def test_wallet_proof_then_deposit_over_grpc(core: Core) -> None:
    auth = await _login(core, "wallet@example.com")
    user_key = SuiKeypair.from_keystring(USER_KEY)
    challenge = await core.accounts.CreateWalletChallenge(pb.CreateWalletChallengeRequest(), metadata=auth)
    assert "Sign this message" in challenge.message
    bad = user_key.sign_personal_message(b"not the challenge")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await core.accounts.LinkWallet(pb.LinkWalletRequest(nonce=challenge.nonce, signature=bad), metadata=auth)
    assert _reason(caught.value) == "INVALID_WALLET_PROOF"
    signature = user_key.sign_personal_message(challenge.message.encode())
    linked = await core.accounts.LinkWallet(
        pb.LinkWalletRequest(nonce=challenge.nonce, signature=signature), metadata=auth
    )
    assert linked.address == user_key.address
    assert (await core.accounts.GetWallet(pb.GetWalletRequest(), metadata=auth)).address == user_key.address
    request = pb.DepositUsdcRequest(transaction_digest=_digest("deposit-ok"))
    first = await core.accounts.DepositUsdc(request, metadata=auth)
    again = await core.accounts.DepositUsdc(request, metadata=auth)
    assert (first.credited, first.amount, first.balance.credited_micro_usd) == (True, 5_000_000, 5_000_000)
    assert (again.credited, again.balance.credited_micro_usd) == (False, 5_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await core.accounts.DepositUsdc(
            pb.DepositUsdcRequest(transaction_digest=_digest("deposit-other")), metadata=auth
        )
    assert _reason(caught.value) == "DEPOSIT_SENDER_MISMATCH"


def _registration(key: str, small_id: int, url: str, timestamp: int) -> reg_pb.RegisterNodeRequest:
    data = {"node_small_id": small_id, "public_address": url, "country": "FR", "timestamp": timestamp}
    signature = SuiKeypair.from_keystring(key).sign_hashed(blake2b256(serde_json.dumps(data)))
    return reg_pb.RegisterNodeRequest(data=reg_pb.NodeRegistration(**data), signature=signature)


async def test_signed_registration_makes_a_chain_node_routable(core: Core, chain: GraphQLChainClient) -> None:
    sync = ChainNodeSync(core.registry, core.sessions)
    ingestor = EventIngestor(chain, core.sessions, PACKAGE, on_change=sync)
    while (await ingestor.poll_once()).has_more:
        pass
    now = int(time.time())
    url = "https://node2.example:3000"
    # Signed by another node's key: refused, nothing changes.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await core.nodes.RegisterNode(_registration(NODE1_KEY, 2, "https://evil.example", now))
    assert _reason(caught.value) == "INVALID_NODE_SIGNATURE"
    assert core.registry.nodes() == []
    accepted = await core.nodes.RegisterNode(_registration(NODE2_KEY, 2, url, now))
    assert accepted.sui_address == SuiKeypair.from_keystring(NODE2_KEY).address
    (node,) = core.registry.nodes()
    assert (node.id, node.url) == ("sui-2", url)
    # The same registration again, or an older one: a replay.
    for stale in (now, now - 10):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await core.nodes.RegisterNode(_registration(NODE2_KEY, 2, "https://old.example", stale))
        assert _reason(caught.value) == "NODE_REGISTRATION_REPLAYED"
    moved = await core.nodes.RegisterNode(_registration(NODE2_KEY, 2, "https://node2-new.example", now + 1))
    assert moved.data.public_address == "https://node2-new.example"
    assert core.registry.get("sui-2").url == "https://node2-new.example"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await core.nodes.RegisterNode(_registration(NODE2_KEY, 2, url, now + 3600))
    assert _reason(caught.value) == "INVALID_REQUEST"  # too far from the proxy's clock
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await core.nodes.RegisterNode(_registration(NODE2_KEY, 99, url, now + 2))
    assert _reason(caught.value) == "NODE_NOT_FOUND"  # not registered on chain
    async with core.sessions() as session:
        row = await session.get(SuiNode, 2)
        assert row is not None and row.registration_timestamp == now + 1


async def test_buy_stack_goes_on_chain(core: Core, chain: GraphQLChainClient, running_chain: RunningChain) -> None:
    ingestor = EventIngestor(chain, core.sessions, PACKAGE)
    while (await ingestor.poll_once()).has_more:
        pass
    auth = await _login(core, "stacks@example.com")
    profile = await core.accounts.GetProfile(pb.GetProfileRequest(), metadata=auth)
    async with core.sessions() as session, session.begin():
        await ledger.credit(session, user_id=profile.user.id, amount=PRICE, idempotency_key="seed")
    running_chain.chain.on_execute = _chain_answers("SUCCESS", [])
    bought = await core.accounts.BuyStack(pb.BuyStackRequest(model=MODEL), metadata=auth)
    assert (bought.stack.node_id, bought.stack.compute_units, bought.stack.cost_micro_usd) == (
        "sui-2",
        1_000_000,
        PRICE,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the balance is spent
        await core.accounts.BuyStack(pb.BuyStackRequest(model=MODEL), metadata=auth)
    assert _reason(caught.value) == "INSUFFICIENT_FUNDS"
    assert len(running_chain.chain.executed) == 1
