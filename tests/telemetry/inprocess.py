"""The whole proxy in the test's event loop: a node simulator, the core and the facade, on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from atoma_proxy.config import CoreSettings, DatabaseSettings, FacadeSettings, NodeConfig, Settings, TokenizerConfig
from atoma_proxy.core.ledger.admin import credit_user
from atoma_proxy.core.persistence import create_api_key
from atoma_proxy.core.server import CoreServer
from atoma_proxy.nodesim import RunningNodeSim, SimConfig, start_node_sim
from atoma_proxy.runner import FacadeServer
from tests.support.databases import temporary_database
from tests.support.processes import free_port

MODEL = "atoma/sim-chat"
EMAIL = "telemetry@atoma.test"


@dataclass
class InProcessStack:
    facade_url: str
    core_target: str
    metrics_url: str
    api_key: str
    node: RunningNodeSim
    core: CoreServer


@asynccontextmanager
async def in_process_stack(
    *, database: str = "sqlite", local: bool = False, settings: dict[str, Any] | None = None, **core: Any
) -> AsyncIterator[InProcessStack]:
    """`core`: CoreSettings fields to set; the node simulator answers 5 tokens at its default speed.

    `database`: "sqlite" or "postgresql"; `local`: the facade calls the core in-process (as `serve` does)
    instead of over gRPC; `settings`: other Settings sections (`{"rate_limits": RateLimitSettings(...)}`).
    """
    async with temporary_database(database) as database_url:
        node = await start_node_sim(SimConfig(node_id="sim-1", chat_models=[MODEL], reply_tokens=5))
        try:
            metrics_port = free_port()
            core_port = free_port()
            settings = Settings(
                database=DatabaseSettings(url=database_url),
                core=CoreSettings(listen=f"127.0.0.1:{core_port}", metrics_listen=f"127.0.0.1:{metrics_port}", **core),
                facade=FacadeSettings(port=0, core_target=f"127.0.0.1:{core_port}"),
                nodes=[
                    NodeConfig(
                        id="sim-1",
                        url=node.url,
                        models=[MODEL],
                        input_price_per_million=1_000_000,
                        output_price_per_million=2_000_000,
                    )
                ],
                tokenizers=[TokenizerConfig(model=MODEL, kind="sim-words")],
                **(settings or {}),
            )
            key = await create_api_key(database_url, email=EMAIL, name="telemetry")
            await credit_user(database_url, email=EMAIL, amount=10**9, idempotency_key="telemetry")
            core = CoreServer(settings)
            await core.start()
            facade = FacadeServer(settings, core_channel=core.local_channel if local else None)
            port = await facade.start()
            try:
                yield InProcessStack(
                    f"http://127.0.0.1:{port}",
                    f"127.0.0.1:{core_port}",
                    f"http://127.0.0.1:{metrics_port}/metrics",
                    key,
                    node,
                    core,
                )
            finally:
                await facade.stop()
                await core.stop(0)
        finally:
            await node.stop()
