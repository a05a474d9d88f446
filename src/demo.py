"""`atoma-proxy demo`: the proxy on embedded defaults with three simulated nodes.

The nodes differ the way real operators do: one fast and expensive, one balanced, one slow,
cheap and small. They run in the proxy's own process so one command gives a working gateway.
"""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from atoma_proxy.config import NodeConfig, Settings, TokenizerConfig
from atoma_proxy.core.ledger.admin import credit_user
from atoma_proxy.core.persistence import create_api_key
from atoma_proxy.core.server import CoreServer
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.server import RunningNodeSim, start_node_sim
from atoma_proxy.runner import FacadeServer, run_until_stopped

CHAT_MODEL = "atoma/sim-chat"
EMBEDDING_MODEL = "atoma/sim-embed"
IMAGE_MODEL = "atoma/sim-image"
DEMO_EMAIL = "demo@atoma.proxy"
DEMO_CREDIT = 10_000_000  # micro-USD: 10 USD, credited once per database

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
    # The simulator's own tokenizer: the demo's estimates and charges are exact.
    tokenizers = [TokenizerConfig(model=m, kind="sim-words") for m in (CHAT_MODEL, EMBEDDING_MODEL)]
    ledger = settings.ledger.model_copy(update={"image_models": [*settings.ledger.image_models, IMAGE_MODEL]})
    return settings.model_copy(
        update={"nodes": [*settings.nodes, *nodes], "tokenizers": [*settings.tokenizers, *tokenizers], "ledger": ledger}
    )


def with_demo_accounts(settings: Settings) -> Settings:
    """Accounts on: a random JWT secret for this run unless one is configured (logins end with the demo)."""
    if settings.accounts.jwt_secret is not None:
        return settings
    accounts = settings.accounts.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(48))})
    return settings.model_copy(update={"accounts": accounts})


def banner(settings: Settings, facade_port: int, core_port: int, api_key: str) -> str:
    host = settings.facade.host
    base = f"http://{host}:{facade_port}/v1"
    core_host = settings.core.listen.rpartition(":")[0]
    return f"""
atoma-proxy is running (demo: three simulated nodes, database {settings.database.url})
  OpenAI facade: {base}
  gRPC core:     {core_host}:{core_port}
API key: {api_key}
Balance: 10 USD credited once to {DEMO_EMAIL} (`atoma-proxy balance show --email {DEMO_EMAIL}`)

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
        settings = with_demo_accounts(with_demo_nodes(settings, sims))

        async def on_ready(core: CoreServer | None, facade: FacadeServer | None) -> None:
            assert core is not None and facade is not None
            key = await create_api_key(settings.database.url, email=DEMO_EMAIL, name="demo")
            await credit_user(
                settings.database.url, email=DEMO_EMAIL, amount=DEMO_CREDIT, idempotency_key="demo:initial-credit"
            )
            print(banner(settings, facade.port, core.port, key), flush=True)

        await run_until_stopped(settings, core=True, facade=True, migrate=True, on_ready=on_ready)
    finally:
        for sim in sims:
            await sim.stop()
