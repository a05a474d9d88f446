"""Active health probes: each node's /health polled at an interval, never a billed completion."""

from __future__ import annotations

import asyncio
import logging

from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.transport import NodeTransport

log = logging.getLogger(__name__)


class HealthPoller:
    """Marks nodes healthy or not from their /health answers, every `interval` seconds."""

    def __init__(self, registry: NodeRegistry, transport: NodeTransport, interval: float) -> None:
        self._registry = registry
        self._transport = transport
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def probe_all(self) -> None:
        nodes = self._registry.nodes()
        results = await asyncio.gather(*(self._transport.probe(n) for n in nodes))
        for node, healthy in zip(nodes, results, strict=True):
            self._set(node, healthy)

    @staticmethod
    def _set(node: Node, healthy: bool) -> None:
        if node.healthy != healthy:
            log.warning("node %s is now %s", node.id, "healthy" if healthy else "unhealthy")
        node.healthy = healthy

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.probe_all()
            except Exception:  # a probe round must never kill the poller
                log.exception("health probe round failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="node-health-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
