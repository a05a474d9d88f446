"""A real running proxy for black-box tests: node simulators, core and facade as subprocesses.

The stack runs once per topology and database kind, and is shared by the e2e tests:
- `in-process`: `atoma-proxy serve`, the facade calling the core in-process (src/core/local_channel.py);
- `grpc`: `atoma-proxy core` and `atoma-proxy facade`, two processes talking gRPC.
Every black-box test passes on both paths (the gRPC topology on PostgreSQL, what deployments run).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.databases import DATABASE_KINDS, temporary_database_sync
from tests.support.processes import free_port, run_command, running, wait_grpc_serving

CHAT = "atoma/sim-chat"
SLOW_CHAT = "atoma/sim-slow"
BROKEN_CHAT = "atoma/sim-broken"
EMBED = "atoma/sim-embed"
IMAGE = "atoma/sim-image"
# The stack's browser origin (CORS) and model facts (tests/e2e/test_surface.py).
CORS_ORIGIN = "https://app.example"
CREATED = 1_700_000_000
# The stack's accounts configuration (tests/e2e/test_accounts.py).
ADMIN_TOKEN = "e2e-admin-token-0123456789"
JWT_SECRET = "e2e-jwt-secret-0123456789abcdefghijklmnop"


@dataclass(frozen=True)
class Stack:
    facade_url: str
    core_target: str
    api_key: str
    nodes: dict[str, str]  # node id -> base URL
    database_url: str
    config_path: Path

    @property
    def base_url(self) -> str:
        return f"{self.facade_url}/v1"


def _node_sim(stack: ExitStack, tmp: Path, node_id: str, *extra: str) -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["node-sim", "--port", str(port), "--node-id", node_id, *extra]
    stack.enter_context(running(args, ready_url=f"{url}/health", log=tmp / f"{node_id}.log"))
    return url


def _config(nodes: dict[str, str]) -> str:
    sections = {
        "fast": (f"['{CHAT}', '{EMBED}', '{IMAGE}']", 600_000, 2_000_000),
        "steady": (f"['{CHAT}', '{EMBED}']", 100_000, 400_000),
        "slow": (f"['{SLOW_CHAT}']", 100_000, 400_000),
        "broken": (f"['{BROKEN_CHAT}']", 100_000, 400_000),
    }
    text = f"[core]\nhealth_interval = 0.5\n\n[facade]\ncors_origins = ['{CORS_ORIGIN}']\n"
    kinds = ((CHAT, "chat", 4096), (SLOW_CHAT, "chat", 2048), (EMBED, "embeddings", 512), (IMAGE, "images", 0))
    for model, kind, context in kinds:
        text += f"\n[[models]]\nid = '{model}'\nkind = '{kind}'\ncreated = {CREATED}\n"
        text += f"context_length = {context}\n" if context else ""
    # The simulator's own tokenizer: estimates and charges of the simulated models are exact.
    text += "".join(f"\n[[tokenizers]]\nmodel = '{m}'\nkind = 'sim-words'\n" for m in (CHAT, SLOW_CHAT, EMBED))
    for node_id, (models, price_in, price_out) in sections.items():
        text += (
            f"\n[[nodes]]\nid = '{node_id}'\nurl = '{nodes[node_id]}'\nmodels = {models}\n"
            f"input_price_per_million = {price_in}\noutput_price_per_million = {price_out}\n"
        )
        if node_id == "fast":  # a smaller context than the model's: the model reports the smallest
            text += f"price_per_image = 30000\ncontext_lengths = {{'{CHAT}' = 1024}}\n"
    return text


IN_PROCESS, OVER_GRPC = "in-process", "grpc"
TOPOLOGIES = [(IN_PROCESS, kind) for kind in DATABASE_KINDS] + [(OVER_GRPC, "postgresql")]


@pytest.fixture(scope="session", params=TOPOLOGIES, ids=[f"{t}-{k}" for t, k in TOPOLOGIES])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    topology, kind = request.param
    tmp = tmp_path_factory.mktemp(f"stack-{topology}-{kind}")
    with ExitStack() as stack, temporary_database_sync(kind) as database_url:
        nodes = {
            "fast": _node_sim(
                stack, tmp, "fast", "--chat-model", CHAT, "--embedding-model", EMBED, "--image-model", IMAGE
            ),
            "steady": _node_sim(stack, tmp, "steady", "--chat-model", CHAT, "--embedding-model", EMBED),
            "slow": _node_sim(
                stack, tmp, "slow", "--chat-model", SLOW_CHAT, "--tokens-per-second", "20", "--reply-tokens", "2000"
            ),
            "broken": _node_sim(
                stack, tmp, "broken", "--chat-model", BROKEN_CHAT, "--error-rate", "1", "--error-status", "500"
            ),
        }
        config = tmp / "config.toml"
        config.write_text(_config(nodes))
        facade_port, core_port = free_port(), free_port()
        env = {
            "ATOMA_CONFIG": str(config),
            "ATOMA_DATABASE__URL": database_url,
            "ATOMA_FACADE__PORT": str(facade_port),
            "ATOMA_CORE__LISTEN": f"127.0.0.1:{core_port}",
            "ATOMA_FACADE__CORE_TARGET": f"127.0.0.1:{core_port}",
            "ATOMA_ACCOUNTS__JWT_SECRET": JWT_SECRET,
            "ATOMA_ACCOUNTS__ADMIN_TOKEN": ADMIN_TOKEN,
        }
        api_key = run_command("keys", "create", "--email", "e2e@atoma.test", env=env).strip()
        # Generous: the tests that are not about the ledger must never meet INSUFFICIENT_FUNDS.
        run_command("balance", "credit", "--email", "e2e@atoma.test", "--micro-usd", str(10**12), env=env)
        facade = f"http://127.0.0.1:{facade_port}"
        if topology == IN_PROCESS:
            stack.enter_context(running(["serve"], ready_url=f"{facade}/health", log=tmp / "proxy.log", env=env))
        else:
            core = stack.enter_context(running(["core", "--migrate"], ready_url=None, log=tmp / "core.log", env=env))
            wait_grpc_serving(f"127.0.0.1:{core_port}", core, tmp / "core.log")
            stack.enter_context(running(["facade"], ready_url=f"{facade}/health", log=tmp / "facade.log", env=env))
        yield Stack(facade, f"127.0.0.1:{core_port}", api_key, nodes, database_url, config)
