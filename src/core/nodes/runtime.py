"""The node machinery of one running core, built from the settings: registry, health poller,
metrics scraper, selector, failover policy, and the configuration reload on SIGHUP.

SIGHUP calls the owner's `load_nodes` (the core server's re-reads `ATOMA_CONFIG` and the environment;
the runtime reads nothing itself) and applies the `[[nodes]]` it returns to the live registry
(`NodeRegistry.reload`): new nodes are added, known ones get their new prices, models and URL, and
nodes gone from the file are drained, then removed once idle. Nodes the core was given that the
configuration never named (the demo's built-in simulators) are "static": a reload leaves them alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Sequence

from atoma_proxy.config import NodeConfig, Settings
from atoma_proxy.core.nodes.breaker import BreakerPolicy
from atoma_proxy.core.nodes.failover import FailoverPolicy
from atoma_proxy.core.nodes.health import HealthPoller
from atoma_proxy.core.nodes.load import MetricsScraper
from atoma_proxy.core.nodes.registry import NodeRegistry, ReloadReport
from atoma_proxy.core.nodes.selection import StrategySelector
from atoma_proxy.core.nodes.transport import NodeTransport

__all__ = ["NodeRuntime"]

log = logging.getLogger(__name__)

STATIC = "static"


def _configured_node_ids(load_nodes: Callable[[], Sequence[NodeConfig]]) -> set[str] | None:
    try:
        return {n.id for n in load_nodes()}
    except Exception:  # an unreadable file: every given node counts as configured
        return None


class NodeRuntime:
    def __init__(
        self,
        settings: Settings,
        transport: NodeTransport,
        *,
        clock: Callable[[], float] = time.monotonic,
        load_nodes: Callable[[], Sequence[NodeConfig]] | None = None,
    ) -> None:
        """`load_nodes`: the configuration's `[[nodes]]` as they read now, called here (the nodes of `settings`
        it does not name are static) and on every reload; None: this runtime never reloads its nodes."""
        routing = settings.routing
        policy = BreakerPolicy(
            consecutive_failures=routing.eject_after_failures,
            error_rate=routing.eject_error_rate,
            min_requests=routing.eject_min_requests,
            window=routing.error_window,
            base_ejection=routing.ejection_time,
            max_ejection=routing.max_ejection_time,
        )
        self.clock = clock
        self.registry = NodeRegistry.from_config(settings.nodes, breaker_policy=policy, clock=clock)
        configured = _configured_node_ids(load_nodes) if load_nodes is not None else None
        if configured is not None:
            for node in self.registry.nodes():
                if node.id not in configured:
                    node.source = STATIC
        self.poller = HealthPoller(
            self.registry, transport, settings.core.health_interval, max_backoff=routing.health_max_backoff, clock=clock
        )
        fetch = getattr(transport, "fetch_metrics", None)
        self.scraper = MetricsScraper(self.registry, fetch, routing.metrics_interval) if fetch is not None else None
        self.selector = StrategySelector(
            routing.strategy, price_weight=routing.price_weight, rng=random.Random(routing.seed), clock=clock
        )
        self.failover = FailoverPolicy(
            max_attempts=routing.max_attempts, first_token_timeout=routing.first_token_timeout
        )
        self._load_nodes = load_nodes
        self._sighup = False

    async def start(self) -> None:
        """Probes every node once, then polls health and scrapes metrics in the background."""
        await self.poller.probe_all()
        self.poller.start()
        if self.scraper is not None:
            await self.scraper.scrape_all()
            self.scraper.start()

    def reload(self) -> ReloadReport:
        """Applies the configuration's current `[[nodes]]` to the registry."""
        if self._load_nodes is None:
            raise RuntimeError("this node runtime was given no configuration to reload")
        report = self.registry.reload(self._load_nodes())
        log.warning(
            "node configuration reloaded: added %s, updated %s, draining %s",
            report.added or "none",
            report.updated or "none",
            report.drained or "none",
        )
        return report

    def reload_on_sighup(self) -> None:
        """Installs the SIGHUP handler (main thread with a running loop only; elsewhere, or without
        `load_nodes`, a no-op)."""
        if self._load_nodes is None:
            return
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._reload_logged)
            self._sighup = True

    def _reload_logged(self) -> None:
        try:
            self.reload()
        except Exception:  # a bad file must not take the core down: keep the registry as it is
            log.exception("node configuration reload failed; the registry is unchanged")

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        await self.poller.stop()
        if self.scraper is not None:
            await self.scraper.stop()
