"""The node registry driven by the chain (README "Sui").

A node known to the Atoma contract is routable when it is registered (a Sui address), has told the
proxy its public URL in a signed registration, and holds valid subscriptions to non-deprecated
non-confidential tasks naming a model. It enters the registry as `sui-<node_small_id>`, in Atoma
protocol (answers signed by its registered address), priced per million tokens at its highest
subscription price (the registry has one price per node; the highest never undercharges).
Nodes the chain no longer supports are drained and removed once idle.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.persistence.sui_models import SuiNode, SuiNodeSubscription, SuiTask

__all__ = ["CHAIN", "ChainNodeSync", "chain_nodes"]

CHAIN = "chain"
PUBLIC_TASK = 0  # security_level of non-confidential tasks


async def chain_nodes(session: AsyncSession) -> list[Node]:
    rows = (
        await session.execute(
            select(
                SuiNode.node_small_id,
                SuiNode.sui_address,
                SuiNode.public_address,
                SuiTask.model_name,
                SuiNodeSubscription.price_per_one_million_compute_units,
            )
            .join(SuiNodeSubscription, SuiNodeSubscription.node_small_id == SuiNode.node_small_id)
            .join(SuiTask, SuiTask.task_small_id == SuiNodeSubscription.task_small_id)
            .where(
                SuiNode.sui_address.is_not(None),
                SuiNode.public_address.is_not(None),
                SuiNodeSubscription.valid.is_(True),
                SuiTask.is_deprecated.is_(False),
                SuiTask.model_name.is_not(None),
                SuiTask.security_level == PUBLIC_TASK,
            )
            .order_by(SuiNode.node_small_id)
        )
    ).all()
    found: dict[int, Node] = {}
    for small_id, address, url, model, price in rows:
        node = found.get(small_id)
        if node is None:
            node = found[small_id] = Node(
                f"sui-{small_id}", url.rstrip("/"), frozenset(), price, price, source=CHAIN, protocol="atoma"
            )
            node.sui_address = address
        node.models = node.models | {model}
        node.input_price_per_million = node.output_price_per_million = max(node.input_price_per_million, price)
    return list(found.values())


class ChainNodeSync:
    """Makes the registry's chain nodes what the tables say."""

    def __init__(self, registry: NodeRegistry, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._registry = registry
        self._sessions = sessions

    async def __call__(self) -> None:
        async with self._sessions() as session:
            wanted = {node.id: node for node in await chain_nodes(session)}
        for node_id, fresh in wanted.items():
            current = self._registry.get(node_id)
            if current is None or current.draining:
                self._registry.add(fresh)
                continue
            current.url, current.models, current.sui_address = fresh.url, fresh.models, fresh.sui_address
            current.input_price_per_million = fresh.input_price_per_million
            current.output_price_per_million = fresh.output_price_per_million
        for node in self._registry.nodes():
            if node.source == CHAIN and node.id not in wanted and not node.draining:
                self._registry.drain(node.id, remove_when_idle=True)
        self._registry.reindex()
        self._registry.prune_idle()
