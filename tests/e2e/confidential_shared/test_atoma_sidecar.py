"""A confidential node speaking the Atoma protocol (`confidential-node --protocol atoma`): the core signs the
envelope's plaintext_body_hash with its Sui key (X-Signature) and the sidecar verifies it before decrypting;
a request not signed by an allowed proxy is refused by the sidecar, a node failure that charges nothing.
Plain requests to the node are signed both ways, as with any Atoma-protocol node."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nacl.signing import SigningKey

from atoma_proxy.confidential import envelope, wire
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from atoma_proxy.sui.crypto import SignatureScheme, SuiKeypair
from atoma_proxy.sui.node_protocol import verify_response
from tests.e2e._ledger import funded_key, stored_ledger
from tests.e2e.confidential.stack import _seed_file, _sidecar, _wait_for_key, _wait_until_core_sees_it_healthy
from tests.support.databases import temporary_database
from tests.support.processes import free_port, running, spawn, stop, wait_grpc_serving

CHAT = "conf/atoma-chat"
FOREIGN = "conf/atoma-foreign"  # served by a sidecar that accepts another proxy only
PROXY = SuiKeypair.generate(SignatureScheme.SECP256K1)
OTHER_PROXY = SuiKeypair.generate()


def _sui(identity: SigningKey) -> SuiKeypair:
    """The sidecar's default Sui key: its Ed25519 signing key."""
    return SuiKeypair(SignatureScheme.ED25519, bytes(identity), bytes(identity.verify_key))


def _node(node_id: str, url: str, model: str, identity: SigningKey) -> str:
    key = base64.b64encode(bytes(identity.verify_key)).decode()
    return (
        f"\n[[nodes]]\nid = '{node_id}'\nurl = '{url}'\nmodels = ['{model}']\nprotocol = 'atoma'\n"
        f"sui_address = '{_sui(identity).address}'\n"
        f"input_price_per_million = 1000\noutput_price_per_million = 1000\nconfidential_signing_key = '{key}'\n"
    )


def _seal(lock: cpb.LockNodeResponse, model: str) -> envelope.ClientSession:
    body = {"model": model, "messages": [{"role": "user", "content": "hi, atoma"}], "max_tokens": 3}
    return envelope.seal_request(
        orjson.dumps(body),
        lock.public_key,
        stack_small_id=lock.stack_small_id,
        model_name=model,
        stream=False,
        node_signing_key=lock.node_signing_key,
    )


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None, error
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason


async def test_the_sidecar_verifies_the_proxys_signature_over_the_body_hash(tmp_path: Path) -> None:
    authority, good, foreign = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    engine_port, good_port, foreign_port, core_port = (free_port() for _ in range(4))
    engine, core = f"http://127.0.0.1:{engine_port}", f"127.0.0.1:{core_port}"
    good_url, foreign_url = f"http://127.0.0.1:{good_port}", f"http://127.0.0.1:{foreign_port}"
    keystore = tmp_path / "sui.keystore"
    keystore.write_text(json.dumps([PROXY.keystring()]))
    config = tmp_path / "config.toml"
    config.write_text(
        f"[core]\nhealth_interval = 0.2\n[sui]\nsui_keystore_path = '{keystore}'\n"
        f"[confidential]\nattestation_authority_key = '{base64.b64encode(bytes(authority.verify_key)).decode()}'\n"
        + _node("good", good_url, CHAT, good)
        + _node("foreign", foreign_url, FOREIGN, foreign)
    )
    authority_file = _seed_file(tmp_path / "authority.key", authority)
    sidecars = []
    for name, port, key, allowed in (("good", good_port, good, PROXY), ("foreign", foreign_port, foreign, OTHER_PROXY)):
        args = _sidecar(name, engine, core, port, _seed_file(tmp_path / f"{name}.key", key), authority_file)
        sidecars.append([*args, "--protocol", "atoma", "--proxy-address", allowed.address])
    async with temporary_database("sqlite") as database_url:
        env = {**os.environ, "ATOMA_CONFIG": str(config), "ATOMA_DATABASE__URL": database_url}
        email, api_key = await funded_key(database_url, 10**9)
        metadata = (("authorization", f"Bearer {api_key}"),)
        sim = ["node-sim", "--port", str(engine_port), "--chat-model", CHAT, "--chat-model", FOREIGN]
        process = spawn(["core"], tmp_path / "core.log", {**env, "ATOMA_CORE__LISTEN": core})
        try:
            wait_grpc_serving(core, process, tmp_path / "core.log")
            with (
                running(sim, ready_url=f"{engine}/health", log=tmp_path / "engine.log"),
                running(sidecars[0], ready_url=None, log=tmp_path / "sidecar-good.log"),
                running(sidecars[1], ready_url=None, log=tmp_path / "sidecar-foreign.log"),
            ):
                for url, node in ((good_url, "good"), (foreign_url, "foreign")):
                    _wait_for_key(url)
                    _wait_until_core_sees_it_healthy(core, api_key, node)
                async with grpc.aio.insecure_channel(core) as channel:
                    routing = pb_grpc.RoutingServiceStub(channel)
                    # Plain requests to the same node: signed by the proxy, answered signed by the node's Sui key.
                    for stream in (False, True):
                        chat = pb.ChatCompletionRequest(
                            model=CHAT,
                            messages=[chat_pb2.ChatMessage(role="user", text="plain")],
                            max_tokens=3,
                            stream=stream,
                        )
                        events = [e async for e in routing.ChatCompletion(chat, metadata=metadata)]
                        assert events[-1].end.routing.node_id == "good"
                        payloads = [e.completion or e.chunk for e in events[:-1]]
                        payloads += [c for e in events[:-1] for c in e.chunks.chunks]
                        assert any(payloads)
                        for payload in filter(None, payloads):
                            verify_response(payload, signer=_sui(good).address)
                    # Signed by the proxy, verified by the sidecar: the round trip works.
                    lock = await routing.LockNode(cpb.LockNodeRequest(model=CHAT, max_num_tokens=32), metadata=metadata)
                    session = _seal(lock, CHAT)
                    message = cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(session.request))
                    events = [e async for e in routing.ConfidentialChatCompletion(message, metadata=metadata)]
                    answer = wire.sealed_from_proto(events[0].answer, chunk=False)
                    assert orjson.loads(session.open_response(answer))["object"] == "chat.completion"
                    assert events[-1].end.cost_micro_usd > 0
                    charged = await stored_ledger(database_url, email)

                    # The same envelope without the proxy's signature, straight to the sidecar: refused.
                    async with httpx.AsyncClient() as client:
                        unsigned = await client.post(
                            f"{good_url}/v1/confidential/chat/completions",
                            content=orjson.dumps(session.request.to_json()),
                        )
                        forged = await client.post(
                            f"{good_url}/v1/confidential/chat/completions",
                            content=orjson.dumps(session.request.to_json()),
                            headers={"x-signature": OTHER_PROXY.sign_hashed(session.request.plaintext_body_hash)},
                        )
                    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "INVALID_SIGNATURE"
                    assert forged.status_code == 401 and "not an allowed proxy" in forged.json()["error"]["message"]

                    # A sidecar that accepts another proxy only refuses ours: a node failure, nothing charged.
                    lock = await routing.LockNode(
                        cpb.LockNodeRequest(model=FOREIGN, max_num_tokens=32), metadata=metadata
                    )
                    message = cpb.ConfidentialChatCompletionRequest(
                        envelope=wire.envelope_to_proto(_seal(lock, FOREIGN).request)
                    )
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        _ = [e async for e in routing.ConfidentialChatCompletion(message, metadata=metadata)]
                    assert _reason(refused.value) == "NODE_FAILED"
                    after = await stored_ledger(database_url, email)
                    assert (after.debited, after.charged) == (charged.debited, charged.charged)
        finally:
            stop(process)
