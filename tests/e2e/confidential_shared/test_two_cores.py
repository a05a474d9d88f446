"""Two `atoma-proxy core` processes on one database: the sidecar registers its key through core A only,
yet core B offers it; a lock granted through A is served through B, and only once (A then refuses the
same lock LOCK_ALREADY_USED); the request is charged once, exactly the usage the node signed."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import grpc
import orjson
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nacl.signing import SigningKey

from atoma_proxy.confidential import envelope, wire
from atoma_proxy.core.ledger import token_cost
from atoma_proxy.core.ledger.pricing import TokenPrice
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e._ledger import funded_key, stored_ledger
from tests.e2e.confidential.stack import (
    CHAT,
    NODE_ID,
    PRICE_IN,
    PRICE_OUT,
    _node,
    _seed_file,
    _sidecar,
    _wait_for_key,
    _wait_until_core_sees_it_healthy,
)
from tests.support.databases import temporary_database
from tests.support.processes import free_port, running, spawn, stop, wait_grpc_serving


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None, error
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason


async def _chat(stub: pb_grpc.RoutingServiceStub, request: envelope.ConfidentialRequest, api_key: str) -> list:  # type: ignore[type-arg]
    message = cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(request))
    return [
        e async for e in stub.ConfidentialChatCompletion(message, metadata=(("authorization", f"Bearer {api_key}"),))
    ]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_lock_made_through_one_core_is_used_once_through_another(tmp_path: Path, kind: str) -> None:
    authority, identity = SigningKey.generate(), SigningKey.generate()
    engine_port, sidecar_port, port_a, port_b = free_port(), free_port(), free_port(), free_port()
    engine, core_a, core_b = f"http://127.0.0.1:{engine_port}", f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"
    config = tmp_path / "config.toml"
    config.write_text(
        "[core]\nhealth_interval = 0.2\n"
        f"[confidential]\nattestation_authority_key = '{base64.b64encode(bytes(authority.verify_key)).decode()}'\n"
        + _node(NODE_ID, f"http://127.0.0.1:{sidecar_port}", [CHAT], identity)
    )
    async with temporary_database(kind) as database_url:
        env = {**os.environ, "ATOMA_CONFIG": str(config), "ATOMA_DATABASE__URL": database_url}
        email, api_key = await funded_key(database_url, 10**9)
        metadata = (("authorization", f"Bearer {api_key}"),)
        sim = ["node-sim", "--port", str(engine_port), "--chat-model", CHAT]
        sidecar = _sidecar(  # registers through core A only
            NODE_ID,
            engine,
            core_a,
            sidecar_port,
            _seed_file(tmp_path / "node.key", identity),
            _seed_file(tmp_path / "authority.key", authority),
        )
        first = spawn(["core"], tmp_path / "core-a.log", {**env, "ATOMA_CORE__LISTEN": core_a})
        second = spawn(["core"], tmp_path / "core-b.log", {**env, "ATOMA_CORE__LISTEN": core_b})
        try:
            wait_grpc_serving(core_a, first, tmp_path / "core-a.log")
            wait_grpc_serving(core_b, second, tmp_path / "core-b.log")
            with (
                running(sim, ready_url=f"{engine}/health", log=tmp_path / "engine.log"),
                running(sidecar, ready_url=None, log=tmp_path / "sidecar.log"),
            ):
                _wait_for_key(f"http://127.0.0.1:{sidecar_port}")  # registered through A
                for target in (core_a, core_b):
                    _wait_until_core_sees_it_healthy(target, api_key, NODE_ID)
                async with (
                    grpc.aio.insecure_channel(core_a) as channel_a,
                    grpc.aio.insecure_channel(core_b) as channel_b,
                ):
                    a, b = pb_grpc.RoutingServiceStub(channel_a), pb_grpc.RoutingServiceStub(channel_b)
                    # B never heard from the sidecar, yet offers the key A accepted
                    attested = await b.GetNodeAttestation(
                        cpb.GetNodeAttestationRequest(node_id=NODE_ID), metadata=metadata
                    )
                    offered = await b.LockNode(  # left unused: it expires and its hold is released
                        cpb.LockNodeRequest(model=CHAT, max_num_tokens=32, timeout=1), metadata=metadata
                    )
                    assert offered.public_key == attested.public_key and len(offered.public_key) == 32
                    assert offered.node_signing_key == bytes(identity.verify_key)

                    lock = await a.LockNode(cpb.LockNodeRequest(model=CHAT, max_num_tokens=32), metadata=metadata)
                    body = {"model": CHAT, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
                    session = envelope.seal_request(
                        orjson.dumps(body),
                        lock.public_key,
                        stack_small_id=lock.stack_small_id,
                        model_name=CHAT,
                        stream=False,
                        node_signing_key=lock.node_signing_key,
                    )
                    events = await _chat(b, session.request, api_key)  # served through B
                    assert [e.WhichOneof("event") for e in events] == ["answer", "end"]
                    answer = wire.sealed_from_proto(events[0].answer, chunk=False)
                    assert orjson.loads(session.open_response(answer))["object"] == "chat.completion"
                    usage = answer.usage
                    assert usage is not None
                    expected = token_cost(
                        usage["prompt_tokens"], usage["completion_tokens"], TokenPrice(PRICE_IN, PRICE_OUT)
                    )
                    assert events[1].end.cost_micro_usd == expected > 0

                    for stub in (a, b):  # the same lock again, through either core: refused, nothing charged
                        with pytest.raises(grpc.aio.AioRpcError) as refused:
                            await _chat(stub, session.request, api_key)
                        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                        assert _reason(refused.value) == "LOCK_ALREADY_USED"

                    for _ in range(300):
                        ledger = await stored_ledger(database_url, email)
                        if ledger.held == 0:
                            break
                        await asyncio.sleep(0.05)
                    assert ledger.debited == ledger.charged == expected  # charged once
                    assert ledger.held == 0 and ledger.reserved == 0
                    assert sorted(r.outcome for r in ledger.records) == ["lock_expired", "ok"]
        finally:
            stop(first)
            stop(second)
