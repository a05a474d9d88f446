"""End to end: the core server (gRPC) talking the Atoma protocol to node simulators. Requests are
signed and accepted; a node whose answers or chunks stop verifying fails, and the client never sees them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atoma_proxy.config import CoreSettings, DatabaseSettings, LedgerSettings, NodeConfig, Settings, SuiSettings
from atoma_proxy.core.persistence import create_api_key
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
    def __init__(self, server: CoreServer, sim: RunningNodeSim, stub: pb_grpc.RoutingServiceStub, key: str) -> None:
        self.server, self.sim, self.stub = server, sim, stub
        self.metadata = (("authorization", f"Bearer {key}"),)

    async def sim_config(self, **fields: float) -> None:
        async with httpx.AsyncClient() as client:
            (await client.post(f"{self.sim.url}/sim/config", json=fields)).raise_for_status()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
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
            ledger=LedgerSettings(enabled=False),
            sui=SuiSettings(sui_keystore_path=str(keystore)),
            nodes=[NodeConfig(id="n", url=sim.url, models=[MODEL], protocol="atoma", sui_address=NODE.address)],
        )
        server = CoreServer(settings)
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield Running(server, sim, pb_grpc.RoutingServiceStub(channel), key)
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
    for record in sent:
        assert verify_request(orjson.dumps(record["body"]), record["headers"]["x-signature"], signer=PROXY.address)


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
