"""End to end: the core server (gRPC) talking the Atoma protocol to node simulators. Requests are
signed and accepted; a node whose answers or chunks stop verifying fails, and the client never sees them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atoma_proxy.config import CoreSettings, DatabaseSettings, LedgerSettings, NodeConfig, Settings, SuiSettings
from atoma_proxy.core.ledger.stacks import buy_stack
from atoma_proxy.core.persistence import UserRepository, create_api_key, create_engine, session_factory
from atoma_proxy.core.persistence.admin import DEFAULT_USER_EMAIL
from atoma_proxy.core.persistence.sui_models import SuiStackPurchase
from atoma_proxy.core.server import CoreServer
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from atoma_proxy.nodesim import RunningNodeSim, SimConfig, start_node_sim
from atoma_proxy.sui.crypto import SignatureScheme, SuiKeypair
from atoma_proxy.sui.node_protocol import verify_request, verify_response
from tests.support.databases import temporary_database

MODEL = "atoma/sim-chat"
PROXY = SuiKeypair.generate(SignatureScheme.SECP256R1)
NODE = SuiKeypair.generate(SignatureScheme.ED25519)


class Running:
    def __init__(
        self, server: CoreServer, sim: RunningNodeSim, stub: pb_grpc.RoutingServiceStub, key: str, url: str
    ) -> None:
        self.server, self.sim, self.stub, self.database_url = server, sim, stub, url
        self.metadata = (("authorization", f"Bearer {key}"),)

    async def sim_config(self, **fields: float) -> None:
        async with httpx.AsyncClient() as client:
            (await client.post(f"{self.sim.url}/sim/config", json=fields)).raise_for_status()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with _serve(tmp_path, metered=False) as running:
        yield running


@pytest.fixture
async def metered(tmp_path: Path) -> AsyncIterator[Running]:
    async with _serve(tmp_path, metered=True) as running:
        yield running


@asynccontextmanager
async def _serve(tmp_path: Path, *, metered: bool) -> AsyncIterator[Running]:
    keystore = tmp_path / "sui.keystore"
    keystore.write_text(json.dumps([PROXY.keystring()]))
    sim = await start_node_sim(
        SimConfig(
            chat_models=[MODEL], protocol="atoma", sui_keystring=NODE.keystring(), allowed_signers=[PROXY.address]
        )
    )
    async with temporary_database("sqlite") as url:
        key = await create_api_key(url, migrate=False)
        settings = Settings(
            database=DatabaseSettings(url=url),
            core=CoreSettings(listen="127.0.0.1:0"),
            ledger=LedgerSettings(enabled=metered),
            sui=SuiSettings(sui_keystore_path=str(keystore)),
            nodes=[NodeConfig(id="n", url=sim.url, models=[MODEL], protocol="atoma", sui_address=NODE.address)],
        )
        server = CoreServer(settings)
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield Running(server, sim, pb_grpc.RoutingServiceStub(channel), key, url)
        finally:
            await server.stop(0)
            await sim.stop()


def _chat(stream: bool) -> pb.ChatCompletionRequest:
    message = chat_pb2.ChatMessage(role="user", text="Hello, signed world")
    return pb.ChatCompletionRequest(model=MODEL, messages=[message], max_tokens=5, temperature=0.5, stream=stream)


def _payloads(events: list[pb.ChatCompletionResponse]) -> list[bytes]:
    out: list[bytes] = []
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "chunk":
            out.append(event.chunk)
        elif kind == "chunks":
            out.extend(event.chunks.chunks)
        elif kind == "completion":
            out.append(event.completion)
    return out


async def test_signed_requests_are_accepted_and_signed_answers_relayed(running: Running) -> None:
    for stream in (False, True):
        events = [e async for e in running.stub.ChatCompletion(_chat(stream), metadata=running.metadata)]
        assert events[-1].end.routing.node_id == "n"
        payloads = _payloads(events[:-1])
        assert payloads
        for payload in payloads:  # relayed with the node's signature, as Atoma's proxy does
            verify_response(payload, signer=NODE.address)
    async with httpx.AsyncClient() as client:
        sent = (await client.get(f"{running.sim.url}/sim/requests")).json()
    assert len(sent) == 2
    user_id = str(await _user_id(running.database_url, DEFAULT_USER_EMAIL))
    for record in sent:
        assert verify_request(orjson.dumps(record["body"]), record["headers"]["x-signature"], signer=PROXY.address)
        # No ledger, no stack: the user pays (fiat), and the node is told who that is.
        assert record["headers"]["x-user-id"] == user_id
        assert "x-stack-small-id" not in record["headers"] and "x-tx-digest" not in record["headers"]


async def _user_id(url: str, email: str) -> int:
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with session_factory(engine)() as session:
            user = await UserRepository(session).get_by_email(email)
            assert user is not None
            return user.id
    finally:
        await engine.dispose()


async def _give_stack(url: str, email: str, *, small_id: int | None = None, digest: str = "") -> int:
    """A free stack of the model on node `n` for the user; bought on chain (a confirmed purchase) with `small_id`."""
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with session_factory(engine)() as session, session.begin():
            user = await UserRepository(session).get_or_create_by_email(email)
            stack = await buy_stack(
                session, user_id=user.id, node_id="n", model=MODEL, compute_units=100_000, price_per_million=0
            )
            if small_id is not None:
                session.add(
                    SuiStackPurchase(
                        user_id=user.id,
                        task_small_id=1,
                        price_paid=0,
                        state="confirmed",
                        digest=digest,
                        stack_small_id=small_id,
                        ledger_stack_id=stack.id,
                    )
                )
            return stack.id
    finally:
        await engine.dispose()


async def test_a_stack_paid_request_tells_the_node_its_stack(metered: Running) -> None:
    """Atoma's headers name who pays: a chain-bought stack by its small id and transaction digest,
    a stack of the local ledger by its id; the user always."""
    digest = "4vJ9JU1bJJE96FWSJKvHsmmFADCg4gpZQff4P3bkLKi"
    await _give_stack(metered.database_url, DEFAULT_USER_EMAIL, small_id=77, digest=digest)
    local_key = await create_api_key(metered.database_url, email="local@example.com", migrate=False)
    local_stack = await _give_stack(metered.database_url, "local@example.com")
    for metadata in (metered.metadata, (("authorization", f"Bearer {local_key}"),)):
        for stream in (False, True):
            events = [e async for e in metered.stub.ChatCompletion(_chat(stream), metadata=metadata)]
            assert events[-1].end.routing.node_id == "n"
    async with httpx.AsyncClient() as client:
        sent = [r["headers"] for r in (await client.get(f"{metered.sim.url}/sim/requests")).json()]
    chain_user = str(await _user_id(metered.database_url, DEFAULT_USER_EMAIL))
    local_user = str(await _user_id(metered.database_url, "local@example.com"))
    assert [(h["x-user-id"], h["x-stack-small-id"], h.get("x-tx-digest")) for h in sent] == [
        (chain_user, "77", digest),
        (chain_user, "77", digest),
        (local_user, str(local_stack), None),
        (local_user, str(local_stack), None),
    ]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", ["bad_hash_rate", "bad_signature_rate"])
async def test_a_tampered_answer_or_chunk_fails_the_node(running: Running, stream: bool, fault: str) -> None:
    await running.sim_config(**{fault: 1.0, "tamper_from_chunk": 2 if stream else 0})
    received: list[pb.ChatCompletionResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in running.stub.ChatCompletion(_chat(stream), metadata=running.metadata):
            received.append(event)
    status = rpc_status.from_call(caught.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.reason == "NODE_FAILED"
    for payload in _payloads(received):  # whatever reached the client had verified
        verify_response(payload, signer=NODE.address)
    node = running.server.registry.get("n")
    assert node is not None and node.model_stats(MODEL).failures >= 1
