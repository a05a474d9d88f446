"""The node registry: which nodes exist, what they serve, their price, health and load.

Today it is built from configuration; the routing issue makes it live (add, drain, remove at
runtime). Selection reads it through `candidates(model)`, so strategies never see how nodes
got here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from atoma_proxy.config import NodeConfig
from atoma_proxy.core.errors import ModelNotFound


@dataclass(eq=False)
class Node:
    """One inference node and what this proxy instance knows of it right now."""

    id: str
    url: str
    models: frozenset[str]
    input_price_per_million: int
    output_price_per_million: int
    api_key: str | None = None
    healthy: bool = True
    in_flight: int = 0
    added_at: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def from_config(cls, config: NodeConfig) -> Node:
        return cls(
            id=config.id,
            url=config.url.rstrip("/"),
            models=frozenset(config.models),
            input_price_per_million=config.input_price_per_million,
            output_price_per_million=config.output_price_per_million,
            api_key=config.api_key,
        )


class NodeRegistry:
    """Nodes by id and by model."""

    def __init__(self, nodes: Iterable[Node] = ()) -> None:
        self._nodes: dict[str, Node] = {}
        self._by_model: dict[str, list[Node]] = {}
        for node in nodes:
            self.add(node)

    @classmethod
    def from_config(cls, configs: Iterable[NodeConfig]) -> NodeRegistry:
        return cls(Node.from_config(c) for c in configs)

    def add(self, node: Node) -> None:
        if node.id in self._nodes:
            raise ValueError(f"duplicate node id {node.id!r}")
        self._nodes[node.id] = node
        for model in node.models:
            self._by_model.setdefault(model, []).append(node)

    def nodes(self) -> list[Node]:
        return sorted(self._nodes.values(), key=lambda n: n.id)

    def candidates(self, model: str) -> list[Node]:
        """Every node serving `model`, healthy or not; ModelNotFound when none does."""
        nodes = self._by_model.get(model)
        if not nodes:
            raise ModelNotFound(model)
        return nodes

    def models(self) -> dict[str, int]:
        """Model name -> unix time it was first offered."""
        return {model: min(n.added_at for n in nodes) for model, nodes in self._by_model.items()}
