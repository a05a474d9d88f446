"""`atoma-proxy demo`: the proxy on embedded defaults with three simulated nodes.

The nodes differ the way real operators do: one fast and expensive, one balanced, one slow,
cheap and small. They run in the proxy's own process so one command gives a working gateway.
Accounts and the admin API are on; the JWT secret, the admin token and the API key (when not
configured) are kept in `demo-secrets.json` of the data directory (`paths.py`), so a restart keeps
logins and prints the same key.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import SecretStr

from atoma_proxy.config import DatabaseSettings, ModelConfig, NodeConfig, Settings, TokenizerConfig
from atoma_proxy.core.ledger.admin import credit_user
from atoma_proxy.core.persistence import ApiKeyRepository, create_api_key, create_engine, session_factory
from atoma_proxy.core.server import CoreServer
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.server import RunningNodeSim, start_node_sim
from atoma_proxy.paths import data_dir
from atoma_proxy.runner import FacadeServer, run_until_stopped

__all__ = [
    "CHAT_MODEL",
    "DEMO_CREATED",
    "DEMO_CREDIT",
    "DEMO_EMAIL",
    "DEMO_MODELS",
    "DEMO_NODES",
    "EMBEDDING_MODEL",
    "IMAGE_MODEL",
    "SECRETS_FILE",
    "DemoSecrets",
    "banner",
    "command_name",
    "demo_api_key",
    "run_demo",
    "start_demo_nodes",
    "with_demo_accounts",
    "with_demo_nodes",
]

CHAT_MODEL = "atoma/sim-chat"
EMBEDDING_MODEL = "atoma/sim-embed"
IMAGE_MODEL = "atoma/sim-image"
DEMO_EMAIL = "demo@atoma.proxy"
DEMO_CREDIT = 10_000_000  # micro-USD: 10 USD, credited once per database

SECRETS_FILE = "demo-secrets.json"
# (node id, time to first token ms, tokens/s, concurrency, input and output micro-USD per million, per image)
DEMO_NODES = (
    ("sim-fast", 40.0, 200.0, 0, 600_000, 2_000_000, 40_000),
    ("sim-balanced", 120.0, 80.0, 0, 300_000, 1_000_000, 20_000),
    ("sim-cheap", 350.0, 30.0, 4, 100_000, 400_000, 10_000),
)
DEMO_CREATED = 1_764_547_200  # 2025-12-01: the demo models' fixed `created`
DEMO_MODELS = (
    ModelConfig(id=CHAT_MODEL, kind="chat", context_length=8192, created=DEMO_CREATED),
    ModelConfig(id=EMBEDDING_MODEL, kind="embeddings", context_length=512, created=DEMO_CREATED),
    ModelConfig(id=IMAGE_MODEL, kind="images", created=DEMO_CREATED),
)


@dataclass
class DemoSecrets:
    """What a restart of the demo keeps (`demo-secrets.json`, mode 0600)."""

    jwt_secret: str
    admin_token: str
    api_key: str = ""

    @classmethod
    def load(cls, path: Path) -> DemoSecrets:
        try:
            saved = json.loads(path.read_text())
            return cls(str(saved["jwt_secret"]), str(saved["admin_token"]), str(saved.get("api_key", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return cls(secrets.token_urlsafe(48), "adm-" + secrets.token_urlsafe(24))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(asdict(self), file)


async def start_demo_nodes() -> list[RunningNodeSim]:
    sims = []
    for node_id, ttft, tps, capacity, _, _, _ in DEMO_NODES:
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
            price_per_image=per_image,
        )
        for (node_id, _, _, _, price_in, price_out, per_image), sim in zip(DEMO_NODES, sims, strict=True)
    ]
    # The simulator's own tokenizer: the demo's estimates and charges are exact.
    tokenizers = [TokenizerConfig(model=m, kind="sim-words") for m in (CHAT_MODEL, EMBEDDING_MODEL)]
    configured = {m.id for m in settings.models}
    models = [*settings.models, *(m for m in DEMO_MODELS if m.id not in configured)]
    ledger = settings.ledger.model_copy(update={"image_models": [*settings.ledger.image_models, IMAGE_MODEL]})
    update = {"nodes": [*settings.nodes, *nodes], "tokenizers": [*settings.tokenizers, *tokenizers]}
    return settings.model_copy(update={**update, "ledger": ledger, "models": models})


def with_demo_accounts(settings: Settings, saved: DemoSecrets) -> Settings:
    """Accounts and the admin API on: the configured JWT secret and admin token, else the saved ones."""
    accounts = settings.accounts.model_copy(
        update={
            "jwt_secret": settings.accounts.jwt_secret or SecretStr(saved.jwt_secret),
            "admin_token": settings.accounts.admin_token or SecretStr(saved.admin_token),
        }
    )
    return settings.model_copy(update={"accounts": accounts})


async def demo_api_key(database_url: str, saved: DemoSecrets) -> str:
    """The saved key while it is still valid in this database, else a new one."""
    if saved.api_key:
        engine = create_engine(DatabaseSettings(url=database_url, pool_size=1))
        try:
            async with session_factory(engine)() as session:
                if await ApiKeyRepository(session).find_active(saved.api_key) is not None:
                    return saved.api_key
        finally:
            await engine.dispose()
    return await create_api_key(database_url, email=DEMO_EMAIL, name="demo")


def command_name() -> str:
    """How to run `atoma-proxy` from here: its name when it is on PATH, else the path of this script."""
    if shutil.which("atoma-proxy"):
        return "atoma-proxy"
    script = Path(sys.argv[0])
    if script.name == "atoma-proxy":
        try:
            return str(script.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(script.resolve())
    return f"{sys.executable} -m atoma_proxy.cli"


def banner(settings: Settings, facade_port: int, core_port: int, api_key: str, secrets_path: Path) -> str:
    host = settings.facade.host
    base = f"http://{host}:{facade_port}/v1"
    core_host = settings.core.listen.rpartition(":")[0]
    admin = settings.accounts.admin_token.get_secret_value() if settings.accounts.admin_token else ""
    command = command_name()
    return f"""
atoma-proxy is running (demo: three simulated nodes, database {settings.database.url})
  OpenAI facade: {base}
  gRPC core:     {core_host}:{core_port}
API key: {api_key}
Admin token: {admin}
Kept across restarts in {secrets_path} (JWT secret, admin token, API key)
Balance: 10 USD credited once to {DEMO_EMAIL} (`{command} balance show --email {DEMO_EMAIL}`)

Try it:
  curl {base}/chat/completions \\
    -H "Authorization: Bearer {api_key}" -H "Content-Type: application/json" \\
    -d '{{"model": "{CHAT_MODEL}", "messages": [{{"role": "user", "content": "Hello"}}], "stream": true}}'
  grpcurl -plaintext {core_host}:{core_port} list
  API docs: http://{host}:{facade_port}/docs
Press Ctrl+C to stop.
""".strip("\n")


async def run_demo(settings: Settings) -> None:
    secrets_path = data_dir() / SECRETS_FILE
    saved = DemoSecrets.load(secrets_path)
    sims = await start_demo_nodes()
    try:
        settings = with_demo_accounts(with_demo_nodes(settings, sims), saved)

        async def on_ready(core: CoreServer | None, facade: FacadeServer | None) -> None:
            assert core is not None and facade is not None
            saved.api_key = await demo_api_key(settings.database.url, saved)
            saved.save(secrets_path)
            await credit_user(
                settings.database.url, email=DEMO_EMAIL, amount=DEMO_CREDIT, idempotency_key="demo:initial-credit"
            )
            print(banner(settings, facade.port, core.port, saved.api_key, secrets_path), flush=True)

        await run_until_stopped(settings, core=True, facade=True, migrate=True, on_ready=on_ready)
    finally:
        for sim in sims:
            await sim.stop()
