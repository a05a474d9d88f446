"""Active health probes: each node's GET /health, never a billed completion.

A healthy node is probed every `interval` seconds. A failing one is marked unhealthy at its first
failed probe (selection skips it at once) and probed again with exponential backoff: interval,
2·interval, 4·interval ... up to `max_backoff`, so a dead node costs little while it is dead and
is noticed within `max_backoff` of coming back. A node that recovers has its old errors
forgotten (they described the outage, not the node now). New nodes are probed on the next tick;
nodes drained by a configuration reload are removed here once their last request has ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.transport import NodeTransport

__all__ = ["HealthPoller"]

log = logging.getLogger(__name__)

_TICK = 0.05  # finest scheduling step of the loop


class HealthPoller:
    """Marks nodes healthy or not from their /health answers."""

    def __init__(
        self,
        registry: NodeRegistry,
        transport: NodeTransport,
        interval: float,
        *,
        max_backoff: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._transport = transport
        self._interval = interval
        self._max_backoff = max(interval, max_backoff if max_backoff is not None else 30.0)
        self._clock = clock
        self._failures: dict[str, int] = {}  # consecutive failed probes per node id
        self._due: dict[str, float] = {}  # node id -> when its next probe is due
        self._task: asyncio.Task[None] | None = None

    def next_delay(self, node_id: str) -> float:
        """Seconds until the next probe of a node after its last result."""
        failures = self._failures.get(node_id, 0)
        if failures == 0:
            return self._interval
        return min(self._interval * 2 ** (failures - 1), self._max_backoff)

    async def probe(self, node: Node) -> bool:
        """Probes one node now and records the result."""
        healthy = await self._transport.probe(node)
        self._record(node, healthy)
        return healthy

    def unreachable(self, node: Node) -> None:
        """A request found nothing listening at `node`: down at once, until a probe finds it back."""
        self._record(node, False)

    async def probe_all(self) -> None:
        nodes = [n for n in self._registry.nodes() if not n.draining]
        results = await asyncio.gather(*(self._transport.probe(n) for n in nodes))
        for node, healthy in zip(nodes, results, strict=True):
            self._record(node, healthy)

    def _record(self, node: Node, healthy: bool) -> None:
        if node.healthy != healthy:
            log.warning("node %s is now %s", node.id, "healthy" if healthy else "unhealthy")
            if healthy:
                for stats in node.stats.values():
                    stats.forget_errors()
        node.healthy = healthy
        self._failures[node.id] = 0 if healthy else self._failures.get(node.id, 0) + 1
        self._due[node.id] = self._clock() + self.next_delay(node.id)

    async def probe_due(self) -> None:
        """Probes the nodes whose turn has come, forgets removed ones, prunes idle drained ones."""
        self._registry.prune_idle()
        now = self._clock()
        nodes = self._registry.nodes()
        due = [n for n in nodes if not n.draining and self._due.get(n.id, now) <= now]
        results = await asyncio.gather(*(self._transport.probe(n) for n in due))
        for node, healthy in zip(due, results, strict=True):
            if self._registry.get(node.id) is node:  # not removed or replaced meanwhile
                self._record(node, healthy)
        known = {n.id for n in nodes}
        for table in (self._failures, self._due):
            for node_id in [k for k in table if k not in known]:
                del table[node_id]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(_TICK, min(self._interval, self._until_next())))
            try:
                await self.probe_due()
            except Exception:  # a probe round must never kill the poller
                log.exception("health probe round failed")

    def _until_next(self) -> float:
        now = self._clock()
        pending = [self._due.get(n.id, now) - now for n in self._registry.nodes() if not n.draining]
        return min(pending, default=self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="node-health-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
