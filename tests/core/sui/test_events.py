"""Atoma's chain events through pysui into the tables and the node registry: across a restart, a
replayed page, events out of order."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.persistence.sui_models import (
    SuiAppliedEvent,
    SuiCursor,
    SuiKeyRotation,
    SuiNode,
    SuiNodePublicKey,
    SuiNodeSubscription,
    SuiStack,
    SuiTask,
)
from atoma_proxy.core.sui.chain import GraphQLChainClient
from atoma_proxy.core.sui.chain_registry import ChainNodeSync
from atoma_proxy.core.sui.ingest import EventIngestor
from atoma_proxy.sui.crypto import SuiKeypair
from tests.core.sui.conftest import NODE1_KEY, NODE2_KEY, PACKAGE, PROXY_KEY
from tests.support.sui_chain import LocalChain, RunningChain, start_chain

Sessions = async_sessionmaker[AsyncSession]
ATOMA_EVENTS = 14  # in the recorded transactions


async def _snapshot(sessions: Sessions) -> dict[str, Any]:
    """Every chain-state row, comparable."""
    out: dict[str, Any] = {}
    async with sessions() as session:
        for model in (SuiNode, SuiTask, SuiNodeSubscription, SuiStack, SuiKeyRotation, SuiNodePublicKey):
            rows = (await session.execute(select(model.__table__))).all()
            out[model.__tablename__] = sorted(tuple(r) for r in rows)
        out["applied"] = (await session.execute(select(func.count()).select_from(SuiAppliedEvent))).scalar()
    return out


async def _drain(ingestor: EventIngestor) -> int:
    applied = 0
    while True:
        result = await ingestor.poll_once()
        applied += result.applied
        if not result.has_more:
            return applied


async def test_events_build_the_chain_state(sessions: Sessions, chain: GraphQLChainClient) -> None:
    ingestor = EventIngestor(chain, sessions, PACKAGE, page_size=4)
    assert await _drain(ingestor) == ATOMA_EVENTS
    state = await _snapshot(sessions)
    node1, node2 = SuiKeypair.from_keystring(NODE1_KEY).address, SuiKeypair.from_keystring(NODE2_KEY).address
    assert [(r[0], r[1]) for r in state["sui_nodes"]] == [(1, node1), (2, node2)]
    tasks = {r[0]: r for r in state["sui_tasks"]}
    assert tasks[1][2] == "meta-llama/Llama-3.3-70B-Instruct" and tasks[1][6] is False
    assert tasks[2][6] is True and tasks[2][7] == 850  # deprecated at epoch 850
    subs = {(r[0], r[1]): (r[2], r[4]) for r in state["sui_node_subscriptions"]}
    assert subs == {(1, 1): (500000, False), (2, 1): (400000, True), (2, 2): (900000, True)}
    (stack,) = state["sui_stacks"]
    proxy = SuiKeypair.from_keystring(PROXY_KEY).address
    assert stack[:7] == (7, stack[1], proxy, 1, 2, 1_000_000, 400_000)
    assert stack[8:] == (False, 700_000, True, 120_000)  # settled and claimed, refund recorded
    assert state["sui_key_rotations"] == [(3, 842, "12345678901234567890")]
    assert [(r[0], r[1], r[3]) for r in state["sui_node_public_keys"]] == [(2, 300, 3)]


async def test_a_restart_resumes_at_the_saved_cursor(sessions: Sessions, running_chain: RunningChain) -> None:
    first = GraphQLChainClient(running_chain.url)
    assert (await EventIngestor(first, sessions, PACKAGE, page_size=5).poll_once()).applied == 5
    await first.aclose()
    # A new process: a new client and ingestor, the same database.
    second = GraphQLChainClient(running_chain.url)
    ingestor = EventIngestor(second, sessions, PACKAGE, page_size=5)
    assert await ingestor.cursor() is not None
    assert (await ingestor.poll_once()).applied == 5  # the next five, not the first five again
    assert await _drain(ingestor) == ATOMA_EVENTS - 10
    assert (await _snapshot(sessions))["applied"] == ATOMA_EVENTS
    await second.aclose()


async def test_a_replayed_page_changes_nothing(sessions: Sessions, chain: GraphQLChainClient) -> None:
    ingestor = EventIngestor(chain, sessions, PACKAGE, page_size=50)
    await _drain(ingestor)
    before = await _snapshot(sessions)
    # The cursor is lost (or another instance lags behind): the whole stream is read again.
    async with sessions() as session, session.begin():
        await session.execute(SuiCursor.__table__.delete())
    assert await _drain(ingestor) == 0
    assert await _snapshot(sessions) == before


async def test_events_out_of_order_within_a_page_give_the_same_state(sessions: Sessions) -> None:
    recorded = LocalChain.recorded()
    shuffled = LocalChain.recorded()
    # The same events listed in reverse order (each keeps its own timestamp and digest).
    shuffled.events = list(reversed(copy.deepcopy(recorded.events)))
    running = await start_chain(shuffled)
    client = GraphQLChainClient(running.url)
    try:
        assert await _drain(EventIngestor(client, sessions, PACKAGE, page_size=50)) == ATOMA_EVENTS
        state = await _snapshot(sessions)
    finally:
        await client.aclose()
        await running.stop()
    subs = {(r[0], r[1]): r[4] for r in state["sui_node_subscriptions"]}
    assert subs[(1, 1)] is False  # the unsubscription is later on chain, whatever the listing order
    stack = state["sui_stacks"][0]
    assert (stack[8], stack[10]) == (False, True)  # claimed, so not settling, though listed before the settle
    assert [r[0] for r in state["sui_tasks"] if r[6]] == [2]


async def test_the_registry_follows_the_chain(sessions: Sessions, chain: GraphQLChainClient) -> None:
    registry = NodeRegistry()
    sync = ChainNodeSync(registry, sessions)
    ingestor = EventIngestor(chain, sessions, PACKAGE, on_change=sync)
    await _drain(ingestor)
    assert registry.nodes() == []  # registered on chain, but no node told the proxy its URL yet
    async with sessions() as session, session.begin():
        for small_id in (1, 2):
            await session.execute(
                SuiNode.__table__.update()
                .where(SuiNode.node_small_id == small_id)
                .values(public_address=f"https://node{small_id}.example:3000/")
            )
    await sync()
    (node,) = registry.nodes()  # node 1 unsubscribed; node 2's confidential task is deprecated anyway
    assert (node.id, node.url, node.protocol) == ("sui-2", "https://node2.example:3000", "atoma")
    assert node.models == {"meta-llama/Llama-3.3-70B-Instruct"}
    assert node.sui_address == SuiKeypair.from_keystring(NODE2_KEY).address
    assert node.input_price_per_million == node.output_price_per_million == 400_000
