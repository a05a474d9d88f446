"""A node added at run time through NodeAdminService.AddNode with its confidential signing key: its sidecar's
key registration, refused until then, is accepted, and the node serves confidential requests."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import grpc
import orjson
from nacl.signing import SigningKey

from atoma_proxy.confidential import envelope, wire
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2_grpc as admin_grpc
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e._ledger import funded_key
from tests.e2e.confidential.stack import CHAT, _seed_file, _sidecar, _wait_for_key, _wait_until_core_sees_it_healthy
from tests.support.databases import temporary_database
from tests.support.processes import free_port, running, spawn, stop, wait_grpc_serving

ADMIN_TOKEN = "node-admin-token-0123456789abcdef"
NODE = "added-at-runtime"


async def test_a_node_added_with_its_signing_key_serves_confidential_requests(tmp_path: Path) -> None:
    authority, identity = SigningKey.generate(), SigningKey.generate()
    engine_port, sidecar_port, core_port = free_port(), free_port(), free_port()
    engine, core, sidecar_url = (
        f"http://127.0.0.1:{engine_port}",
        f"127.0.0.1:{core_port}",
        f"http://127.0.0.1:{sidecar_port}",
    )
    config = tmp_path / "config.toml"
    config.write_text(  # no [[nodes]]: the only node is added through the admin API
        f"[core]\nhealth_interval = 0.2\n[accounts]\nadmin_token = '{ADMIN_TOKEN}'\n"
        f"[confidential]\nattestation_authority_key = '{base64.b64encode(bytes(authority.verify_key)).decode()}'\n"
    )
    async with temporary_database("sqlite") as database_url:
        env = {**os.environ, "ATOMA_CONFIG": str(config), "ATOMA_DATABASE__URL": database_url}
        _, api_key = await funded_key(database_url, 10**9)
        metadata = (("authorization", f"Bearer {api_key}"),)
        admin = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
        sim = ["node-sim", "--port", str(engine_port), "--chat-model", CHAT]
        sidecar = _sidecar(
            NODE,
            engine,
            core,
            sidecar_port,
            _seed_file(tmp_path / "node.key", identity),
            _seed_file(tmp_path / "authority.key", authority),
        )
        process = spawn(["core"], tmp_path / "core.log", {**env, "ATOMA_CORE__LISTEN": core})
        try:
            wait_grpc_serving(core, process, tmp_path / "core.log")
            with (
                running(sim, ready_url=f"{engine}/health", log=tmp_path / "engine.log"),
                running(sidecar, ready_url=None, log=tmp_path / "sidecar.log"),
            ):
                async with grpc.aio.insecure_channel(core) as channel:
                    nodes, routing = admin_grpc.NodeAdminServiceStub(channel), pb_grpc.RoutingServiceStub(channel)
                    request = admin_pb.AddNodeRequest(node_id=NODE, url=sidecar_url, models=[CHAT])
                    bad = admin_pb.AddNodeRequest()
                    bad.CopyFrom(request)
                    bad.confidential_signing_key = bytes(31)
                    try:
                        await nodes.AddNode(bad, metadata=admin)
                        raise AssertionError("a 31-byte signing key was accepted")
                    except grpc.aio.AioRpcError as error:
                        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert (await nodes.ListNodeStates(admin_pb.ListNodeStatesRequest(), metadata=admin)).nodes == []
                    request.confidential_signing_key = bytes(identity.verify_key)
                    await nodes.AddNode(request, metadata=admin)
                    _wait_for_key(sidecar_url)  # the sidecar's registration, retried, is accepted now
                    _wait_until_core_sees_it_healthy(core, api_key, NODE)
                    lock = await routing.LockNode(cpb.LockNodeRequest(model=CHAT, max_num_tokens=32), metadata=metadata)
                    assert lock.node_id == NODE and lock.node_signing_key == bytes(identity.verify_key)
                    body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
                    session = envelope.seal_request(
                        orjson.dumps(body),
                        lock.public_key,
                        stack_small_id=lock.stack_small_id,
                        model_name=CHAT,
                        stream=False,
                        node_signing_key=lock.node_signing_key,
                    )
                    message = cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(session.request))
                    events = [e async for e in routing.ConfidentialChatCompletion(message, metadata=metadata)]
                    answer = wire.sealed_from_proto(events[0].answer, chunk=False)
                    assert orjson.loads(session.open_response(answer))["object"] == "chat.completion"
        finally:
            stop(process)
