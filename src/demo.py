"""`atoma-proxy demo`: the proxy on embedded defaults with three simulated nodes.

The nodes differ the way real operators do: one fast and expensive, one balanced, one slow,
cheap and small. They run in the proxy's own process so one command gives a working gateway.
"""

from __future__ import annotations

from atoma_proxy.config import NodeConfig, Settings
from atoma_proxy.core.persistence import create_api_key
from atoma_proxy.core.server import CoreServer
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.server import RunningNodeSim, start_node_sim
from atoma_proxy.runner import FacadeServer, run_until_stopped

CHAT_MODEL = "atoma/sim-chat"
EMBEDDING_MODEL = "atoma/sim-embed"
IMAGE_MODEL = "atoma/sim-image"

# (node id, time to first token ms, tokens/s, concurrency, input and output micro-USD per million)
DEMO_NODES = (
    ("sim-fast", 40.0, 200.0, 0, 600_000, 2_000_000),
    ("sim-balanced", 120.0, 80.0, 0, 300_000, 1_000_000),
    ("sim-cheap", 350.0, 30.0, 4, 100_000, 400_000),
)


async def start_demo_nodes() -> list[RunningNodeSim]:
    sims = []
    for node_id, ttft, tps, capacity, _, _ in DEMO_NODES:
        config = SimConfig(
            node_id=node_id,
            chat_models=[CHAT_MODEL],
            embedding_models=[EMBEDDING_MODEL],
            image_models=[IMAGE_MODEL],
            ttft_ms=ttft,
            tokens_per_second=tps,
            max_concurrency=capacity,
        )
        sims.append(await start_node_sim(config))
    return sims


def with_demo_nodes(settings: Settings, sims: list[RunningNodeSim]) -> Settings:
    nodes = [
        NodeConfig(
            id=node_id,
            url=sim.url,
            models=[CHAT_MODEL, EMBEDDING_MODEL, IMAGE_MODEL],
            input_price_per_million=price_in,
            output_price_per_million=price_out,
        )
        for (node_id, _, _, _, price_in, price_out), sim in zip(DEMO_NODES, sims, strict=True)
    ]
    return settings.model_copy(update={"nodes": [*settings.nodes, *nodes]})


def banner(settings: Settings, facade_port: int, core_port: int, api_key: str) -> str:
    host = settings.facade.host
    base = f"http://{host}:{facade_port}/v1"
    core_host = settings.core.listen.rpartition(":")[0]
    return f"""
atoma-proxy is running (demo: three simulated nodes, database {settings.database.url})
  OpenAI facade: {base}
  gRPC core:     {core_host}:{core_port}
API key: {api_key}

Try it:
  curl {base}/chat/completions \\
    -H "Authorization: Bearer {api_key}" -H "Content-Type: application/json" \\
    -d '{{"model": "{CHAT_MODEL}", "messages": [{{"role": "user", "content": "Hello"}}], "stream": true}}'
  grpcurl -plaintext {core_host}:{core_port} list
Press Ctrl+C to stop.
""".strip("\n")


async def run_demo(settings: Settings) -> None:
    sims = await start_demo_nodes()
    try:
        settings = with_demo_nodes(settings, sims)

        async def on_ready(core: CoreServer | None, facade: FacadeServer | None) -> None:
            assert core is not None and facade is not None
            key = await create_api_key(settings.database.url, email="demo@atoma.proxy", name="demo")
            print(banner(settings, facade.port, core.port, key), flush=True)

        await run_until_stopped(settings, core=True, facade=True, migrate=True, on_ready=on_ready)
    finally:
        for sim in sims:
            await sim.stop()
