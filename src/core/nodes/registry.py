"""The node registry: which nodes exist, what they serve, their price, health and load.

It is live: nodes are added, drained and removed while requests run (NodeAdminService, and the
configuration reload on SIGHUP). A request holds its `Node` object from selection to the end,
so draining or removing a node never disturbs the requests already on it: they finish, while
selection, which reads `candidates(model)`, never sees a draining node again. Indexes are
rebuilt on each change rather than mutated, so a selection in progress sees one consistent view.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from atoma_proxy.config import NodeConfig
from atoma_proxy.core.errors import ModelNotFound
from atoma_proxy.core.nodes.breaker import BreakerPolicy, CircuitBreaker
from atoma_proxy.core.nodes.stats import ModelLoad, ModelStats

__all__ = ["Node", "NodeRegistry", "ReloadReport"]

CONFIG, ADMIN = "config", "admin"


@dataclass(eq=False)
class Node:
    """One inference node and what this proxy instance knows of it right now."""

    id: str
    url: str
    models: frozenset[str]
    input_price_per_million: int
    output_price_per_million: int
    api_key: str | None = None
    price_per_image: int = 0  # micro-USD per generated image
    healthy: bool = True
    in_flight: int = 0
    added_at: int = field(default_factory=lambda: int(time.time()))
    draining: bool = False
    # Where the node came from: the configuration file ("config") or NodeAdminService ("admin");
    # a configuration reload only ever drains nodes of the file.
    source: str = CONFIG
    # Drained by a configuration reload: removed from the registry once its last request ends.
    remove_when_idle: bool = False
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    stats: dict[str, ModelStats] = field(default_factory=dict)  # measured by this proxy, per model
    load: dict[str, ModelLoad] = field(default_factory=dict)  # reported by the node's /metrics, per model
    load_scraped_at: float = 0.0
    # Atoma protocol (README "Sui"): "atoma" signs requests and verifies the node's signed answers.
    protocol: str = "openai"
    sui_address: str | None = None
    # Serves OpenAI's Responses API itself (`apis = ["chat", "responses"]`): passed through, not translated.
    serves_responses: bool = False

    @classmethod
    def from_config(cls, config: NodeConfig, source: str = CONFIG) -> Node:
        return cls(
            id=config.id,
            url=config.url.rstrip("/"),
            models=frozenset(config.models),
            input_price_per_million=config.input_price_per_million,
            output_price_per_million=config.output_price_per_million,
            price_per_image=config.price_per_image,
            api_key=config.api_key,
            source=source,
            protocol=config.protocol,
            sui_address=config.sui_address,
            serves_responses="responses" in config.apis,
        )

    @property
    def price(self) -> int:
        """Input plus output price per million tokens: the price used to compare nodes."""
        return self.input_price_per_million + self.output_price_per_million

    def model_stats(self, model: str) -> ModelStats:
        stats = self.stats.get(model)
        if stats is None:
            stats = self.stats[model] = ModelStats()
        return stats


@dataclass
class ReloadReport:
    """What a configuration reload changed, by node id."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)


class NodeRegistry:
    """Nodes by id and by model."""

    def __init__(
        self,
        nodes: Iterable[Node] = (),
        *,
        breaker_policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = breaker_policy or BreakerPolicy()
        self.clock = clock
        self._nodes: dict[str, Node] = {}
        self._by_model: dict[str, list[Node]] = {}
        for node in nodes:
            self.add(node)

    @classmethod
    def from_config(cls, configs: Iterable[NodeConfig], **kwargs: object) -> NodeRegistry:
        return cls((Node.from_config(c) for c in configs), **kwargs)  # type: ignore[arg-type]

    def _reindex(self) -> None:
        by_model: dict[str, list[Node]] = {}
        for node in sorted(self._nodes.values(), key=lambda n: n.id):
            if not node.draining:
                for model in node.models:
                    by_model.setdefault(model, []).append(node)
        self._by_model = by_model

    def reindex(self) -> None:
        """Rebuild the model index after nodes' models were changed in place (the chain's node sync)."""
        self._reindex()

    def add(self, node: Node) -> Node:
        """Adds a node; a draining node of the same id is replaced (its requests still finish)."""
        existing = self._nodes.get(node.id)
        if existing is not None and not existing.draining:
            raise ValueError(f"duplicate node id {node.id!r}")
        node.breaker = CircuitBreaker(self._policy, self.clock)
        self._nodes[node.id] = node
        self._reindex()
        return node

    def get(self, node_id: str) -> Node | None:
        return self._nodes.get(node_id)

    def drain(self, node_id: str, *, remove_when_idle: bool = False) -> Node:
        """No new requests go to the node; those in flight finish. KeyError when unknown."""
        node = self._nodes[node_id]
        node.draining = True
        node.remove_when_idle = node.remove_when_idle or remove_when_idle
        self._reindex()
        return node

    def remove(self, node_id: str) -> Node:
        """Forgets the node at once; requests in flight on it still finish. KeyError when unknown."""
        node = self._nodes.pop(node_id)
        node.draining = True
        self._reindex()
        return node

    def prune_idle(self) -> list[str]:
        """Removes the nodes drained by a reload whose last request has ended; returns their ids."""
        idle = [n.id for n in self._nodes.values() if n.draining and n.remove_when_idle and n.in_flight == 0]
        for node_id in idle:
            self.remove(node_id)
        return idle

    def reload(self, configs: Iterable[NodeConfig]) -> ReloadReport:
        """Makes the file's nodes the configured ones: new ids are added, known ones updated in place
        (url, models, prices, key), and configured nodes missing from the file drained and removed
        once idle. Nodes added through the admin API are left alone unless the file names them; a
        node an operator drained stays drained."""
        report = ReloadReport()
        wanted = {c.id: c for c in configs}
        for node_id, config in wanted.items():
            node = self._nodes.get(node_id)
            if node is None:
                self.add(Node.from_config(config))
                report.added.append(node_id)
                continue
            node.url = config.url.rstrip("/")
            node.models = frozenset(config.models)
            node.input_price_per_million = config.input_price_per_million
            node.output_price_per_million = config.output_price_per_million
            node.api_key = config.api_key
            node.protocol, node.sui_address = config.protocol, config.sui_address
            node.serves_responses = "responses" in config.apis
            node.source = CONFIG
            if node.remove_when_idle:  # drained by an earlier reload, back in the file (an admin drain stays)
                node.draining = node.remove_when_idle = False
            report.updated.append(node_id)
        for node in list(self._nodes.values()):
            if node.source == CONFIG and node.id not in wanted and not node.draining:
                self.drain(node.id, remove_when_idle=True)
                report.drained.append(node.id)
        self._reindex()
        self.prune_idle()
        return report

    def nodes(self) -> list[Node]:
        """Every node, draining ones included, by id."""
        return sorted(self._nodes.values(), key=lambda n: n.id)

    def candidates(self, model: str) -> list[Node]:
        """Every node serving `model` that is not draining, healthy or not; ModelNotFound when none does."""
        nodes = self._by_model.get(model)
        if not nodes:
            raise ModelNotFound(model)
        return nodes

    def models(self) -> dict[str, int]:
        """Model name -> unix time it was first offered (draining nodes do not count)."""
        return {model: min(n.added_at for n in nodes) for model, nodes in self._by_model.items()}
