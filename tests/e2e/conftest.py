"""A real running proxy for black-box tests: node simulators, core and facade as subprocesses.

`stack` is the shared one, started once per topology in `TOPOLOGIES` (tests/support/stack.py) and used
by most e2e tests. `stack_factory` starts a stack of a test's own (its nodes, faults and settings) on the
topologies it names:

    @pytest.fixture(scope="module", params=[Topology(IN_PROCESS, "sqlite")], ids=lambda t: t.id)
    def hostile(request, stack_factory) -> Iterator[Stack]:
        with stack_factory(request.param, nodes=[SimNode("liar", chat=(CHAT,), options=("--omit-usage",))]) as stack:
            yield stack
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.stack import TOPOLOGIES, SimNode, Stack, StackFactory, Topology, start_stack

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

NODES = [
    SimNode(
        "fast",
        chat=(CHAT,),
        embeddings=(EMBED,),
        images=(IMAGE,),
        prices=(600_000, 2_000_000),
        # A smaller context than the model's: the model reports the smallest.
        entry={"price_per_image": 30_000, "context_lengths": {CHAT: 1024}},
    ),
    SimNode("steady", chat=(CHAT,), embeddings=(EMBED,), prices=(100_000, 400_000)),
    SimNode(
        "slow",
        chat=(SLOW_CHAT,),
        options=("--tokens-per-second", "20", "--reply-tokens", "2000"),
        prices=(100_000, 400_000),
    ),
    SimNode(
        "broken", chat=(BROKEN_CHAT,), options=("--error-rate", "1", "--error-status", "500"), prices=(100_000, 400_000)
    ),
]
MODELS = [
    {"id": model, "kind": kind, "created": CREATED} | ({"context_length": context} if context else {})
    for model, kind, context in (
        (CHAT, "chat", 4096),
        (SLOW_CHAT, "chat", 2048),
        (EMBED, "embeddings", 512),
        (IMAGE, "images", 0),
    )
]


@pytest.fixture(scope="session")
def stack_factory(tmp_path_factory: pytest.TempPathFactory) -> StackFactory:
    """`stack_factory(topology, nodes=..., settings=..., ...)`: `start_stack` with its logs in a fresh directory."""

    def factory(topology: Topology, **options: Any) -> contextlib.AbstractContextManager[Stack]:
        return start_stack(tmp_path_factory.mktemp(f"stack-{topology.id}"), topology, **options)

    return factory


@pytest.fixture(scope="session", params=TOPOLOGIES, ids=[t.id for t in TOPOLOGIES])
def stack(request: pytest.FixtureRequest, stack_factory: StackFactory) -> Iterator[Stack]:
    with stack_factory(
        request.param,  # a Topology: tests that narrow it (indirect parametrization) pass one too, so it is shared
        nodes=NODES,
        settings={"facade": {"cors_origins": [CORS_ORIGIN]}},
        models=MODELS,
        sim_words=(CHAT, SLOW_CHAT, EMBED),  # exact estimates and charges
        env={"ATOMA_ACCOUNTS__JWT_SECRET": JWT_SECRET, "ATOMA_ACCOUNTS__ADMIN_TOKEN": ADMIN_TOKEN},
        funds=10**12,  # generous: the tests that are not about the ledger must never meet INSUFFICIENT_FUNDS
    ) as started:
        yield started
