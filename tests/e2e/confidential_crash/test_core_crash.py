"""A core killed with locks held: the restarted core's sweep releases their holds (charging nothing), and it
offers the node's key at once, from the database (the sidecar does not re-register meanwhile)."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import grpc
import pytest
from nacl.signing import SigningKey

from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e._ledger import funded_key, stored_ledger
from tests.e2e.confidential.stack import CHAT, NODE_ID, _node, _seed_file, _sidecar, _wait_for_key
from tests.support.databases import temporary_database
from tests.support.processes import free_port, running, spawn, stop, wait_grpc_serving

pytestmark = pytest.mark.slow


async def _lock_when_offered(target: str, api_key: str) -> cpb.LockNodeResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        for _ in range(200):
            try:
                return await stub.LockNode(
                    cpb.LockNodeRequest(model=CHAT, max_num_tokens=32, timeout=2),
                    metadata=(("authorization", f"Bearer {api_key}"),),
                )
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
    raise AssertionError("the core never offered the node's key")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_crashed_core_is_swept_and_relearns_the_key(tmp_path: Path, kind: str) -> None:
    authority, identity = SigningKey.generate(), SigningKey.generate()
    engine_port, sidecar_port, core_port = free_port(), free_port(), free_port()
    engine, core = f"http://127.0.0.1:{engine_port}", f"127.0.0.1:{core_port}"
    config = tmp_path / "config.toml"
    async with temporary_database(kind) as database_url:
        config.write_text(
            "[core]\nhealth_interval = 0.2\n"
            "[ledger]\nreservation_margin = 0.5\nsweep_interval = 0.2\n"
            "[confidential]\nmax_request_seconds = 0.5\n"
            f"attestation_authority_key = '{base64.b64encode(bytes(authority.verify_key)).decode()}'\n"
            + _node(NODE_ID, f"http://127.0.0.1:{sidecar_port}", [CHAT], identity)
        )
        env = {**os.environ, "ATOMA_CONFIG": str(config), "ATOMA_DATABASE__URL": database_url}
        env["ATOMA_CORE__LISTEN"] = core
        email, api_key = await funded_key(database_url, 10**9)
        sim = ["node-sim", "--port", str(engine_port), "--chat-model", CHAT]
        sidecar = _sidecar(
            NODE_ID,
            engine,
            core,
            sidecar_port,
            _seed_file(tmp_path / "node.key", identity),
            _seed_file(tmp_path / "authority.key", authority),
        )
        sidecar += ["--refresh-every", "600"]  # no re-registration during the test
        with (
            running(sim, ready_url=f"{engine}/health", log=tmp_path / "engine.log"),
            running(sidecar, ready_url=None, log=tmp_path / "sidecar.log"),
        ):
            first = spawn(["core"], tmp_path / "core-1.log", env)
            try:
                wait_grpc_serving(core, first, tmp_path / "core-1.log")
                _wait_for_key(f"http://127.0.0.1:{sidecar_port}")
                lock = await _lock_when_offered(core, api_key)
                assert (await stored_ledger(database_url, email)).held == 1
            finally:
                first.kill()  # a crash: no shutdown, the lock's hold stays in the database
                first.wait()
            second = spawn(["core"], tmp_path / "core-2.log", env)
            try:
                wait_grpc_serving(core, second, tmp_path / "core-2.log")
                for _ in range(200):  # the new core's sweeps free the dead core's hold once it expires
                    ledger = await stored_ledger(database_url, email)
                    if ledger.held == 0:
                        break
                    await asyncio.sleep(0.1)
                assert ledger.held == 0 and ledger.reserved == 0 and ledger.debited == 0
                # released by the lock sweep (or the ledger's, whichever came first), charging nothing
                assert [r.outcome for r in ledger.records] in (["lock_expired"], ["expired"])
                again = await _lock_when_offered(core, api_key)  # the key, as stored in the database
                assert again.public_key == lock.public_key and again.rotation_counter == lock.rotation_counter
            finally:
                stop(second)
