"""The core server with a [sui] section: it follows the chain's events, serves the Sui RPCs, and refuses
Atoma-protocol nodes without a key."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from atoma_proxy.config import CoreSettings, DatabaseSettings, NodeConfig, Settings, SuiSettings
from atoma_proxy.core.nodes.transport import HttpNodeTransport
from atoma_proxy.core.persistence import session_factory
from atoma_proxy.core.persistence.sui_models import SuiAppliedEvent
from atoma_proxy.core.server import CoreServer
from atoma_proxy.core.sui.atoma_transport import ATOMA, AtomaProtocol
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2 as reg_pb
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2_grpc as reg_grpc
from tests.core.sui.conftest import PACKAGE, PROXY_KEY, USDC_PACKAGE
from tests.support.databases import temporary_database
from tests.support.sui_chain import RunningChain


async def test_the_core_follows_the_chain_and_serves_registrations(tmp_path: Path, running_chain: RunningChain) -> None:
    keystore = tmp_path / "sui.keystore"
    keystore.write_text(json.dumps([PROXY_KEY]))
    async with temporary_database("sqlite") as url:
        settings = Settings(
            database=DatabaseSettings(url=url),
            core=CoreSettings(listen="127.0.0.1:0"),
            sui=SuiSettings(
                http_rpc_node_addr=running_chain.url,
                sui_keystore_path=str(keystore),
                atoma_package_id=PACKAGE,
                usdc_package_id=USDC_PACKAGE,
            ),
            nodes=[NodeConfig(id="a", url="http://127.0.0.1:9", models=["m"], protocol="atoma")],
        )
        server = CoreServer(settings)
        assert isinstance(server.transport, HttpNodeTransport)
        assert isinstance(server.transport.protocols[ATOMA], AtomaProtocol)
        port = await server.start()
        try:
            sessions = session_factory(server.engine)
            for _ in range(500):  # the follower runs in the background: wait for it to catch up
                async with sessions() as session:
                    applied = (await session.execute(select(func.count()).select_from(SuiAppliedEvent))).scalar()
                if applied == 14:
                    break
                await asyncio.sleep(0.02)
            assert applied == 14
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await reg_grpc.NodeRegistrationServiceStub(channel).RegisterNode(
                        reg_pb.RegisterNodeRequest(data=reg_pb.NodeRegistration(node_small_id=2), signature="x")
                    )
                assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await server.stop(0)


def test_atoma_nodes_need_the_proxys_key() -> None:
    settings = Settings(nodes=[NodeConfig(id="a", url="http://127.0.0.1:9", models=["m"], protocol="atoma")])
    with pytest.raises(ValueError, match="sui_keystore_path"):
        CoreServer(settings)


def test_atomas_sui_section_reads_as_ours() -> None:
    """Atoma's `[atoma_sui]` section (its README's example), pasted under `[sui]`."""
    section = tomllib.loads(
        """
http_rpc_node_addr = "https://fullnode.testnet.sui.io:443"
atoma_db = "0x741693fc00dd8a46b6509c0c3dc6a095f325b8766e96f01ba73b668df218f859"
atoma_package_id = "0x0c4a52c2c74f9361deb1a1b8496698c7e25847f7ad9abfbd6f8c511e508c62a0"
usdc_package_id = "0xa1ec7fc00a6f40db9693ad1415d0c193ad3906494428cf252621037bd7117e29"
request_timeout = { secs = 300, nanos = 0 }
max_concurrent_requests = 10
limit = 100
sui_config_path = "/root/.sui/sui_config/client.yaml"
sui_keystore_path = "/root/.sui/sui_config/sui.keystore"
cursor_path = "./cursor.toml"
"""
    )
    settings = SuiSettings(**section)
    assert (settings.request_timeout, settings.limit, settings.atoma_package_id) == (300.0, 100, PACKAGE)
